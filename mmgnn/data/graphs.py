"""Modality graphs: per-item edge sets built from each modality's structure.

Every item's modality is one small graph whose nodes are the modality's units (tokens, image
patches, audio frames). A :class:`GraphSpec` names how its edges are built:

``chain``  edges between nodes at distance ``1..window`` in node order, both directions
           (sequences: tokens, frames).
``grid``   4- or 8-neighbour edges between nodes at integer 2-D positions ``pos = (row, col)``,
           both directions (image patches).
``knn``    each node receives edges from its ``k`` nearest nodes of the same item, in ``pos``
           or feature space (Euclidean distance).
``full``   every ordered pair of distinct nodes of an item.
``given``  the edges the dataset supplies (``edge_index`` / ``edge_ptr``).

Builders are vectorised over all items of a modality (no Python loop over items or edges) and
return edges in local node ids, grouped by item, as :class:`ModalityGraphs` stores them.
:func:`build_graphs` builds every modality once per (dataset content, specs, self_loops) and
caches the result in memory.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import NamedTuple


import dgl
import numpy as np
import pandas as pd
import torch

from mmgnn.data.dataset import ModalityData, MultimodalDataset

Edges = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""``(src, dst, edge_ptr)``: int64 ``[E]`` local source ids, int64 ``[E]`` local destination
ids (messages flow ``src -> dst``), int64 ``[n_items + 1]`` edge ranges per item."""


@dataclass
class ModalityGraphs:
    """Every item's graph of one modality, stored as CSR-like tensors (no DGLGraph per item).

    Args:
        name: modality name.
        x: float32 ``[total_nodes, d]`` node features (standardised if configured).
        ptr: int64 ``[n_items + 1]`` node ranges per item (empty range = modality missing).
        src, dst: int64 ``[total_edges]`` edge endpoints in LOCAL node ids of their item;
            messages flow ``src -> dst``.
        edge_ptr: int64 ``[n_items + 1]`` edge ranges per item.
        pos: optional float32 ``[total_nodes, k]`` node positions.
    """

    name: str
    x: torch.Tensor
    ptr: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    edge_ptr: torch.Tensor
    pos: torch.Tensor | None = None

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])


BUILDER_NAMES = ("chain", "grid", "knn", "full", "given")
KNN_SPACES = ("pos", "feature")
GRID_NEIGHBOURS = (4, 8)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class GraphSpec:
    """How one modality's graphs are built.

    Args:
        builder: one of ``chain``, ``grid``, ``knn``, ``full``, ``given``.
        window: ``chain``: connect nodes at distance ``1..window`` (>= 1).
        neighbours: ``grid``: 4 (up/down/left/right) or 8 (plus diagonals).
        k: ``knn``: neighbours per node (>= 1); items with ``<= k`` nodes get the full graph.
        space: ``knn``: ``"pos"`` (node positions) or ``"feature"`` (node features ``x``).
    """

    builder: str
    window: int = 1
    neighbours: int = 4
    k: int = 8
    space: str = "pos"

    def __post_init__(self) -> None:
        if self.builder not in BUILDER_NAMES:
            raise ValueError(
                f"unknown graph builder {self.builder!r}; expected one of {BUILDER_NAMES}"
            )
        if not _is_int(self.window) or self.window < 1:
            raise ValueError(f"chain window must be an integer >= 1, got {self.window!r}")
        if not _is_int(self.neighbours) or self.neighbours not in GRID_NEIGHBOURS:
            raise ValueError(
                f"grid neighbours must be one of {GRID_NEIGHBOURS}, got {self.neighbours!r}"
            )
        if not _is_int(self.k) or self.k < 1:
            raise ValueError(f"knn k must be an integer >= 1, got {self.k!r}")
        if self.space not in KNN_SPACES:
            raise ValueError(f"knn space must be one of {KNN_SPACES}, got {self.space!r}")

    def describe(self) -> str:
        """A short readable form, e.g. ``chain(window=2)`` or ``knn(k=8, space=pos)``."""
        options = {
            "chain": f"window={self.window}",
            "grid": f"neighbours={self.neighbours}",
            "knn": f"k={self.k}, space={self.space}",
        }
        if self.builder not in options:
            return self.builder
        return f"{self.builder}({options[self.builder]})"


# ----------------------------------------------------------------------------- helpers


class _Layout(NamedTuple):
    """Where each node sits: ``ptr`` int64 ``[n_items + 1]``, ``counts`` int64 ``[n_items]``,
    ``item`` int64 ``[N]`` (the item of each node), ``local`` int64 ``[N]`` (its local id)."""

    ptr: torch.Tensor
    counts: torch.Tensor
    item: torch.Tensor
    local: torch.Tensor


def _layout(counts: torch.Tensor) -> _Layout:
    ptr = _edge_ptr(counts)
    item = torch.repeat_interleave(torch.arange(counts.shape[0]), counts)
    return _Layout(ptr, counts, item, torch.arange(item.shape[0]) - ptr[:-1][item])


def _node_layout(modality: ModalityData) -> _Layout:
    return _layout(torch.as_tensor(np.diff(modality.ptr), dtype=torch.int64))


def _edge_ptr(counts: torch.Tensor) -> torch.Tensor:
    """int64 ``[n + 1]`` exclusive prefix sum of ``counts`` (``[n]``)."""
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])


def _fixed_slots(layout: _Layout, src_local: torch.Tensor, valid: torch.Tensor) -> Edges:
    """Edges from a destination-major candidate table.

    Args:
        src_local: int64 ``[N, S]`` local id of the source candidate in slot ``s`` of
            destination node ``n``.
        valid: bool ``[N, S]`` which candidates are edges.

    Nodes are stored item by item, so the table's row-major order keeps edges grouped by item.
    """
    dst = layout.local[:, None].expand_as(src_local)[valid]
    per_item = torch.zeros(layout.counts.shape[0], dtype=torch.int64)
    per_item.index_add_(0, layout.item, valid.sum(1))
    return src_local[valid], dst, _edge_ptr(per_item)


def _concat_grouped(parts: list[Edges]) -> Edges:
    """Merge edge sets that are each grouped by item into one grouped set (item by item,
    the parts' edges in part order), without sorting."""
    nonempty = [p for p in parts if p[0].shape[0] > 0]
    if len(nonempty) <= 1:
        return nonempty[0] if nonempty else parts[0]
    parts = nonempty
    counts = [p[2][1:] - p[2][:-1] for p in parts]
    edge_ptr = _edge_ptr(torch.stack(counts).sum(0))
    n_edges = int(edge_ptr[-1])
    src = torch.empty(n_edges, dtype=torch.int64)
    dst = torch.empty(n_edges, dtype=torch.int64)
    start = edge_ptr[:-1].clone()
    for (p_src, p_dst, p_ptr), p_counts in zip(parts, counts):
        within = torch.arange(p_src.shape[0]) - torch.repeat_interleave(p_ptr[:-1], p_counts)
        at = torch.repeat_interleave(start, p_counts) + within
        src[at] = p_src
        dst[at] = p_dst
        start += p_counts
    return src, dst, edge_ptr


def _full_edges(counts: torch.Tensor) -> Edges:
    """All ordered pairs ``(j, i)``, ``j != i``, within each item of ``counts`` nodes.

    Edges are destination-major: node ``i`` of an ``n``-node item receives ``n - 1`` edges
    from ``0..n-1`` without ``i``.
    """
    layout = _layout(counts)
    in_degree = counts[layout.item] - 1
    dst = torch.repeat_interleave(layout.local, in_degree)
    block_start = torch.cumsum(in_degree, 0) - in_degree
    slot = torch.arange(dst.shape[0]) - torch.repeat_interleave(block_start, in_degree)
    src = slot + (slot >= dst).to(torch.int64)
    return src, dst, _edge_ptr(counts * (counts - 1).clamp(min=0))


# ---------------------------------------------------------------------------- builders


def chain(modality: ModalityData, spec: GraphSpec) -> Edges:
    """Sequence edges: nodes ``i`` and ``j`` of an item are joined (both directions) when
    ``1 <= |i - j| <= spec.window`` in node order. Destination-major within each item."""
    layout = _node_layout(modality)
    offsets = torch.cat([torch.arange(-spec.window, 0), torch.arange(1, spec.window + 1)])
    src_local = layout.local[:, None] + offsets[None, :]
    valid = (src_local >= 0) & (src_local < layout.counts[layout.item][:, None])
    return _fixed_slots(layout, src_local, valid)


_GRID_OFFSETS = {
    4: ((-1, 0), (0, -1), (0, 1), (1, 0)),
    8: ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)),
}


def grid(modality: ModalityData, spec: GraphSpec) -> Edges:
    """Grid edges from integer ``pos = (row, col)``: each node receives an edge from every
    node of its item at a 4- (or 8-) neighbouring cell. Cells are looked up by sorting one
    integer key per node, ``(item, row, col)``, and ``searchsorted``; positions need not
    fill a rectangle. Destination-major within each item."""
    if modality.pos is None:
        raise ValueError(
            f"modality {modality.name!r}: the grid builder needs 2-D integer node positions "
            "pos = (row, col), but this modality has no pos"
        )
    pos_np = np.asarray(modality.pos)
    if pos_np.ndim != 2 or pos_np.shape[1] != 2:
        raise ValueError(
            f"modality {modality.name!r}: the grid builder needs pos of shape "
            f"[total_nodes, 2] (row, col), got {list(pos_np.shape)}"
        )
    if not np.all(np.isfinite(pos_np)) or not np.array_equal(pos_np, np.round(pos_np)):
        raise ValueError(
            f"modality {modality.name!r}: the grid builder needs integer (row, col) positions"
        )
    layout = _node_layout(modality)
    n_nodes = layout.item.shape[0]
    offsets = torch.tensor(_GRID_OFFSETS[spec.neighbours], dtype=torch.int64)
    if n_nodes == 0:
        empty = torch.zeros(0, offsets.shape[0], dtype=torch.int64)
        return _fixed_slots(layout, empty, empty.bool())
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
    src_local = layout.local[order[at]]
    return _fixed_slots(layout, src_local, valid)


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


def knn(modality: ModalityData, spec: GraphSpec) -> Edges:
    """k-nearest-neighbour edges within each item, neighbour -> centre, Euclidean distance in
    ``pos`` (``spec.space == "pos"``) or feature space; no self-edges.

    Items with more than ``k`` nodes go through one call of ``dgl.segmented_knn_graph``
    (exact brute force in C++, all items at once). DGL lowers ``k`` for *every* segment to the
    smallest segment's size and counts a node as its own neighbour, so only items with
    ``> k`` nodes are passed, with ``k + 1`` neighbours; per node the self-edge is dropped, or,
    when more than ``k`` points coincide with the node and the self-edge was not chosen, one of
    those distance-0 neighbours (deterministic, unlike ``exclude_self=True``, which samples).
    Items with ``2..k`` nodes get the full graph; items with 0 or 1 node get no edges.
    """
    if spec.space == "pos" and modality.pos is None:
        raise ValueError(
            f"modality {modality.name!r}: knn with space='pos' uses node positions (pos), "
            "but this modality has none; use space='feature' or give pos"
        )
    points = modality.x if spec.space == "feature" else modality.pos
    layout = _node_layout(modality)
    k = spec.k
    large = layout.counts > k
    parts = [_full_edges(torch.where(large, 0, layout.counts))]
    if bool(large.any()):
        node_mask = large[layout.item]
        sub = torch.as_tensor(np.asarray(points, dtype=np.float32))[node_mask]
        segs = layout.counts[large]
        threads = 1 if sub.shape[0] < _KNN_PARALLEL_MIN_POINTS * segs.shape[0] else None
        with _dgl_threads(threads):
            graph = dgl.segmented_knn_graph(sub, k + 1, segs.tolist(), algorithm="bruteforce")
        neighbour, centre = graph.edges()
        if not bool((centre[1:] >= centre[:-1]).all()):
            order = torch.argsort(centre, stable=True)
            neighbour, centre = neighbour[order], centre[order]
        n_sub = sub.shape[0]
        candidates = neighbour.view(n_sub, k + 1)
        is_self = candidates == torch.arange(n_sub)[:, None]
        drop = is_self.clone()
        drop[:, k] |= ~is_self.any(1)
        sub_local = layout.local[node_mask]
        src_local = candidates[~drop].view(n_sub, k) - (torch.arange(n_sub) - sub_local)[:, None]
        per_item = torch.zeros_like(layout.counts)
        per_item[large] = segs * k
        parts.append(
            (src_local.reshape(-1), sub_local.repeat_interleave(k), _edge_ptr(per_item))
        )
    return _concat_grouped(parts)


def full(modality: ModalityData, spec: GraphSpec) -> Edges:
    """Complete graphs: every ordered pair ``(j -> i)``, ``i != j``, within each item."""
    return _full_edges(_node_layout(modality).counts)


def given(modality: ModalityData, spec: GraphSpec) -> Edges:
    """The dataset's own edges: ``edge_index[0] -> edge_index[1]`` in local node ids,
    grouped by ``edge_ptr``. Checked: shapes, ranges and local ids inside their item."""
    if modality.edge_index is None or modality.edge_ptr is None:
        raise ValueError(
            f"modality {modality.name!r}: the given builder needs edge_index and edge_ptr, "
            "but this modality has none"
        )
    edge_index = torch.as_tensor(np.asarray(modality.edge_index), dtype=torch.int64)
    edge_ptr = torch.as_tensor(np.asarray(modality.edge_ptr), dtype=torch.int64)
    counts = _node_layout(modality).counts
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
    edge_counts = edge_ptr[1:] - edge_ptr[:-1]
    edge_item = torch.repeat_interleave(torch.arange(counts.shape[0]), edge_counts)
    limit = counts[edge_item]
    bad = (edge_index < 0).any(0) | (edge_index >= limit[None, :]).any(0)
    if bool(bad.any()):
        first = int(edge_item[bad][0])
        raise ValueError(
            f"modality {modality.name!r}: item {first} has an edge whose local node id is "
            f"outside 0..{int(counts[first]) - 1}"
        )
    return edge_index[0].clone(), edge_index[1].clone(), edge_ptr.clone()


BUILDERS: dict[str, Callable[[ModalityData, GraphSpec], Edges]] = {
    "chain": chain,
    "grid": grid,
    "knn": knn,
    "full": full,
    "given": given,
}


def add_self_loops(modality: ModalityData, edges: Edges) -> Edges:
    """``edges`` plus ``(i, i)`` for every node, still grouped by item (each item's own edges
    first, then its self-loops)."""
    layout = _node_layout(modality)
    return _concat_grouped([edges, (layout.local, layout.local, layout.ptr)])


# ------------------------------------------------------------------------ build + cache

_GRAPH_CACHE: dict[tuple, dict[str, ModalityGraphs]] = {}


def clear_graph_cache() -> None:
    """Forget every cached :func:`build_graphs` result."""
    _GRAPH_CACHE.clear()


def _check_modality_names(names, available: tuple[str, ...], what: str) -> None:
    unknown = [m for m in names if m not in available]
    if unknown:
        raise ValueError(
            f"{what} names modalities {unknown} that the dataset does not have; "
            f"the dataset's modalities are {list(available)}"
        )


def build_graphs(
    dataset: MultimodalDataset, specs: Mapping[str, GraphSpec], self_loops: bool = False
) -> dict[str, ModalityGraphs]:
    """Build every modality's graphs (in the dataset's modality order).

    Results are cached in memory by ``(dataset.fingerprint(), specs, self_loops)``: a second
    call with equal content returns the *same* dict, so treat it as read-only.

    Args:
        dataset: the dataset (standardise it first if configured).
        specs: one :class:`GraphSpec` per modality of the dataset.
        self_loops: add ``(i, i)`` for every node.
    Returns:
        modality -> :class:`ModalityGraphs` with torch tensors (``x`` float32, ``pos``
        float32 or ``None``).
    """
    available = dataset.modality_names
    _check_modality_names(specs, available, "the graph specs")
    missing = [m for m in available if m not in specs]
    if missing:
        raise ValueError(
            f"no graph spec for modalities {missing}; every modality of the dataset "
            f"{list(available)} needs one"
        )
    for name, spec in specs.items():
        if not isinstance(spec, GraphSpec):
            raise TypeError(f"graph spec for {name!r} must be a GraphSpec, got {type(spec)}")
    key = (dataset.fingerprint(), tuple((m, specs[m]) for m in available), bool(self_loops))
    cached = _GRAPH_CACHE.get(key)
    if cached is not None:
        return cached
    graphs = {}
    for name, modality in dataset.modalities.items():
        edges = BUILDERS[specs[name].builder](modality, specs[name])
        if self_loops:
            edges = add_self_loops(modality, edges)
        src, dst, edge_ptr = edges
        graphs[name] = ModalityGraphs(
            name=name,
            x=torch.as_tensor(np.asarray(modality.x, dtype=np.float32)),
            ptr=torch.as_tensor(np.asarray(modality.ptr), dtype=torch.int64),
            src=src,
            dst=dst,
            edge_ptr=edge_ptr,
            pos=None if modality.pos is None
            else torch.as_tensor(np.asarray(modality.pos, dtype=np.float32)),
        )
    _GRAPH_CACHE[key] = graphs
    return graphs


def graph_specs_from_config(
    modalities: Iterable[str], default: Mapping, per_modality: Mapping | None = None
) -> dict[str, GraphSpec]:
    """One :class:`GraphSpec` per modality from config mappings (plain dicts or OmegaConf).

    Args:
        modalities: the dataset's modality names, in order.
        default: :class:`GraphSpec` fields for every modality, e.g. ``{"builder": "chain"}``.
        per_modality: modality -> fields overriding ``default`` for that modality.
    """
    modalities = tuple(modalities)
    per_modality = dict(per_modality or {})
    _check_modality_names(per_modality, modalities, "the per-modality graph config")
    valid_fields = [f.name for f in fields(GraphSpec)]
    specs = {}
    for name in modalities:
        options = {**dict(default or {}), **dict(per_modality.get(name) or {})}
        unknown = [o for o in options if o not in valid_fields]
        if unknown:
            raise ValueError(
                f"graph config for modality {name!r} has unknown options {unknown}; "
                f"valid options are {valid_fields}"
            )
        if "builder" not in options:
            raise ValueError(f"graph config for modality {name!r} names no builder")
        try:
            specs[name] = GraphSpec(**options)
        except ValueError as error:
            raise ValueError(f"graph config for modality {name!r}: {error}") from None
    return specs


def graph_summary(
    dataset: MultimodalDataset,
    graphs: Mapping[str, ModalityGraphs],
    specs: Mapping[str, GraphSpec] | None = None,
) -> pd.DataFrame:
    """One row per modality (index ``modality``): ``builder``, ``items``, ``present``,
    ``missing``, ``nodes``, ``edges``, ``nodes/item`` and ``edges/item`` (means over the items
    that have the modality).

    ``builder`` describes ``specs`` when given, otherwise the specs (and self-loops) that
    :func:`build_graphs` used for this very ``graphs`` dict while it is cached (``None`` when
    unknown).
    """
    suffix = ""
    if specs is None:
        key = next((key for key, value in _GRAPH_CACHE.items() if value is graphs), None)
        specs = {} if key is None else dict(key[1])
        suffix = " + self-loops" if key is not None and key[2] else ""
    rows = []
    for name, g in graphs.items():
        present = int(dataset.modalities[name].present.sum())
        nodes, edges = int(g.ptr[-1] - g.ptr[0]), g.num_edges
        rows.append(
            {
                "modality": name,
                "builder": specs[name].describe() + suffix if name in specs else None,
                "items": dataset.n_items,
                "present": present,
                "missing": dataset.n_items - present,
                "nodes": nodes,
                "edges": edges,
                "nodes/item": nodes / present if present else 0.0,
                "edges/item": edges / present if present else 0.0,
            }
        )
    return pd.DataFrame(rows).set_index("modality")
