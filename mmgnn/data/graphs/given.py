"""``given``: the edges the dataset supplies (``edge_index`` / ``edge_ptr``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmgnn.data.dataset import ModalityData
from mmgnn.data.graphs.base import Edges, GraphSpec, node_layout


@dataclass(frozen=True)
class GivenGraph(GraphSpec):
    """The dataset's own edges: ``edge_index[0] -> edge_index[1]`` in local node ids, grouped
    by ``edge_ptr``. Checked: shapes, ranges and local ids inside their item."""

    name = "given"

    def edges(self, modality: ModalityData) -> Edges:
        if modality.edge_index is None or modality.edge_ptr is None:
            raise ValueError(
                f"modality {modality.name!r}: the given builder needs edge_index and edge_ptr, "
                "but this modality has none"
            )
        edge_index = torch.as_tensor(np.asarray(modality.edge_index), dtype=torch.int64)
        edge_ptr = torch.as_tensor(np.asarray(modality.edge_ptr), dtype=torch.int64)
        counts = node_layout(modality).counts
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise ValueError(
                f"modality {modality.name!r}: edge_index must have shape [2, total_edges], "
                f"got {list(edge_index.shape)}"
            )
        n_edges = edge_index.shape[1]
        if (
            edge_ptr.shape != (counts.shape[0] + 1,)
            or int(edge_ptr[0]) != 0
            or int(edge_ptr[-1]) != n_edges
            or bool((edge_ptr[1:] < edge_ptr[:-1]).any())
        ):
            raise ValueError(
                f"modality {modality.name!r}: edge_ptr must be non-decreasing, shape "
                f"[n_items + 1] = [{counts.shape[0] + 1}], start at 0 and end at {n_edges}"
            )
        edge_item = torch.repeat_interleave(torch.arange(counts.shape[0]), edge_ptr.diff())
        limit = counts[edge_item]
        bad = (edge_index < 0).any(0) | (edge_index >= limit[None, :]).any(0)
        if bool(bad.any()):
            first = int(edge_item[bad][0])
            raise ValueError(
                f"modality {modality.name!r}: item {first} has an edge whose local node id is "
                f"outside 0..{int(counts[first]) - 1}"
            )
        return edge_index[0].clone(), edge_index[1].clone(), edge_ptr.clone()
