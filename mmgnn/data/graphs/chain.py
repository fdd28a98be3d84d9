"""``chain``: sequence edges (tokens, audio frames)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mmgnn.data.dataset import ModalityData
from mmgnn.data.graphs.base import Edges, GraphSpec, fixed_slots, node_layout


@dataclass(frozen=True)
class ChainGraph(GraphSpec):
    """Nodes ``i`` and ``j`` of an item are joined, both directions, when
    ``1 <= |i - j| <= window`` in node order.

    Args:
        window: the largest node-order distance joined (>= 1).
    """

    name = "chain"
    window: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window < 1:
            raise ValueError(f"chain window must be an integer >= 1, got {self.window!r}")

    def edges(self, modality: ModalityData) -> Edges:
        """Destination-major within each item."""
        layout = node_layout(modality)
        offsets = torch.cat([torch.arange(-self.window, 0), torch.arange(1, self.window + 1)])
        src_local = layout.local[:, None] + offsets[None, :]
        valid = (src_local >= 0) & (src_local < layout.counts[layout.item][:, None])
        return fixed_slots(layout, src_local, valid)
