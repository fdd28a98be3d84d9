"""``full``: complete graphs (no structure prior)."""
from __future__ import annotations

from dataclasses import dataclass

from mmgnn.data.dataset import ModalityData
from mmgnn.data.graphs.base import Edges, GraphSpec, complete_edges, node_layout


@dataclass(frozen=True)
class FullGraph(GraphSpec):
    """Every ordered pair ``(j -> i)``, ``i != j``, within each item."""

    name = "full"

    def edges(self, modality: ModalityData) -> Edges:
        """Destination-major within each item."""
        return complete_edges(node_layout(modality).counts)
