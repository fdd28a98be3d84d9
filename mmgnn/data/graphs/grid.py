"""``grid``: 4- or 8-neighbour edges between nodes at 2-D integer positions (image patches)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmgnn.data.dataset import ModalityData
from mmgnn.data.graphs.base import Edges, GraphSpec, fixed_slots, node_layout

GRID_OFFSETS = {
    4: ((-1, 0), (0, -1), (0, 1), (1, 0)),
    8: ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)),
}
"""neighbours -> the (row, col) offsets of the cells a node receives edges from."""


def _integer_cells(modality: ModalityData) -> np.ndarray:
    """``pos`` as ``[total_nodes, 2]``, checked to be finite integer (row, col) cells."""
    if modality.pos is None:
        raise ValueError(
            f"modality {modality.name!r}: the grid builder needs 2-D integer node positions "
            "pos = (row, col), but this modality has no pos"
        )
    pos = np.asarray(modality.pos)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(
            f"modality {modality.name!r}: the grid builder needs pos of shape "
            f"[total_nodes, 2] (row, col), got {list(pos.shape)}"
        )
    if not np.all(np.isfinite(pos)) or not np.array_equal(pos, np.round(pos)):
        raise ValueError(
            f"modality {modality.name!r}: the grid builder needs integer (row, col) positions"
        )
    return pos


@dataclass(frozen=True)
class GridGraph(GraphSpec):
    """Each node receives an edge from every node of its item at a 4- (or 8-) neighbouring
    cell of ``pos = (row, col)``; positions need not fill a rectangle.

    Args:
        neighbours: 4 (up/down/left/right) or 8 (plus diagonals).
    """

    name = "grid"
    neighbours: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.neighbours not in GRID_OFFSETS:
            raise ValueError(
                f"grid neighbours must be one of {tuple(GRID_OFFSETS)}, got {self.neighbours!r}"
            )

    def edges(self, modality: ModalityData) -> Edges:
        """Cells are looked up by sorting one integer key per node, ``(item, row, col)``, and
        ``searchsorted``. Destination-major within each item."""
        pos_np = _integer_cells(modality)
        layout = node_layout(modality)
        n_nodes = layout.item.shape[0]
        offsets = torch.tensor(GRID_OFFSETS[self.neighbours], dtype=torch.int64)
        if n_nodes == 0:
            empty = torch.zeros(0, offsets.shape[0], dtype=torch.int64)
            return fixed_slots(layout, empty, empty.bool())
        pos = torch.as_tensor(pos_np).to(torch.int64)
        # Shift so rows/cols start at 1 and pad one cell each side: neighbours never wrap.
        rc = pos - pos.min(0).values + 1
        height, width = (rc.max(0).values + 2).tolist()
        if layout.counts.shape[0] * height * width >= 2**62:
            raise ValueError(
                f"modality {modality.name!r}: grid positions span too many cells to index"
            )
        key = (layout.item * height + rc[:, 0]) * width + rc[:, 1]
        sorted_key, order = torch.sort(key)
        repeated = sorted_key[1:] == sorted_key[:-1]
        if bool(repeated.any()):
            item = int(layout.item[order[1:][repeated][0]])
            raise ValueError(
                f"modality {modality.name!r}: item {item} has two nodes at the same grid position"
            )
        want = key[:, None] + offsets[:, 0][None, :] * width + offsets[:, 1][None, :]
        at = torch.searchsorted(sorted_key, want).clamp_(max=n_nodes - 1)
        valid = sorted_key[at] == want
        return fixed_slots(layout, layout.local[order[at]], valid)
