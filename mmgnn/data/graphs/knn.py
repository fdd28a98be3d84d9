"""``knn``: each node's k nearest nodes of its item, in position or feature space."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import dgl
import numpy as np
import torch

from mmgnn.data.dataset import ModalityData
from mmgnn.data.graphs.base import (
    Edges,
    GraphSpec,
    complete_edges,
    concat_grouped,
    exclusive_cumsum,
    node_layout,
)

KNN_SPACES = ("pos", "feature")

_KNN_PARALLEL_MIN_POINTS = 1024
"""DGL's CPU k-NN forks an OpenMP team once per segment; for segments smaller than this
(tokens, patches, frames) the fork/join costs more than the search, and on a busy CPU
(parallel sweep jobs) it made the search 5-50x slower, so such calls run on one thread."""


@contextmanager
def _dgl_threads(num_threads: int | None):
    """Run DGL's OpenMP kernels on ``num_threads`` threads (``None``: unchanged)."""
    if num_threads is None:
        yield
        return
    before = dgl.utils.get_num_threads()
    dgl.utils.set_num_threads(num_threads)
    try:
        yield
    finally:
        dgl.utils.set_num_threads(before)


def _knn_of_large_items(points: torch.Tensor, segs: torch.Tensor, k: int) -> torch.Tensor:
    """int64 ``[n_points, k]``: the ``k`` nearest other points of each point (row of
    ``points``, float32 ``[n_points, d]``) within its segment (``segs`` sizes, each ``> k``).

    One call of ``dgl.segmented_knn_graph`` (exact brute force in C++, all segments at once).
    DGL lowers ``k`` for *every* segment to the smallest segment's size and counts a point as
    its own neighbour, so it is asked for ``k + 1`` neighbours; per point the self-edge is
    dropped, or, when more than ``k`` points coincide with it and the self-edge was not chosen,
    one of those distance-0 neighbours (deterministic, unlike ``exclude_self=True``, which
    samples).
    """
    n_points = points.shape[0]
    threads = 1 if n_points < _KNN_PARALLEL_MIN_POINTS * segs.shape[0] else None
    with _dgl_threads(threads):
        graph = dgl.segmented_knn_graph(points, k + 1, segs.tolist(), algorithm="bruteforce")
    neighbour, centre = graph.edges()
    if not bool((centre[1:] >= centre[:-1]).all()):
        order = torch.argsort(centre, stable=True)
        neighbour = neighbour[order]
    candidates = neighbour.view(n_points, k + 1)
    is_self = candidates == torch.arange(n_points)[:, None]
    drop = is_self.clone()
    drop[:, k] |= ~is_self.any(1)
    return candidates[~drop].view(n_points, k)


@dataclass(frozen=True)
class KnnGraph(GraphSpec):
    """Each node receives edges from its ``k`` nearest other nodes of the same item
    (Euclidean distance); no self-edges. Items with ``2..k`` nodes get the full graph, items
    with 0 or 1 node no edges.

    Args:
        k: neighbours per node (>= 1).
        space: ``"pos"`` (node positions) or ``"feature"`` (node features ``x``).
    """

    name = "knn"
    k: int = 8
    space: str = "pos"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ValueError(f"knn k must be an integer >= 1, got {self.k!r}")
        if self.space not in KNN_SPACES:
            raise ValueError(f"knn space must be one of {KNN_SPACES}, got {self.space!r}")

    def edges(self, modality: ModalityData) -> Edges:
        """Neighbour -> centre; edges of each item: the full graphs of small items, then the
        k-NN edges of large ones, destination-major."""
        if self.space == "pos" and modality.pos is None:
            raise ValueError(
                f"modality {modality.name!r}: knn with space='pos' uses node positions (pos), "
                "but this modality has none; use space='feature' or give pos"
            )
        points = modality.x if self.space == "feature" else modality.pos
        layout = node_layout(modality)
        large = layout.counts > self.k
        parts = [complete_edges(torch.where(large, 0, layout.counts))]
        if bool(large.any()):
            node_mask = large[layout.item]
            sub = torch.as_tensor(np.asarray(points, dtype=np.float32))[node_mask]
            segs = layout.counts[large]
            neighbours = _knn_of_large_items(sub, segs, self.k)
            sub_local = layout.local[node_mask]
            # Rows of ``sub`` -> local ids: subtract each row's offset from its local id.
            src_local = neighbours - (torch.arange(sub.shape[0]) - sub_local)[:, None]
            per_item = torch.zeros_like(layout.counts)
            per_item[large] = segs * self.k
            parts.append((
                src_local.reshape(-1), sub_local.repeat_interleave(self.k),
                exclusive_cumsum(per_item),
            ))
        return concat_grouped(parts)
