"""What every graph builder shares: the stored form of a modality's graphs, the builder base
class (:class:`GraphSpec`) and the vectorised edge-layout helpers the builders are made of."""
from __future__ import annotations

import abc
import typing
from dataclasses import dataclass, fields
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from mmgnn.data.dataset import ModalityData

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
        ids: optional int64 ``[total_nodes]`` token ids of the nodes (``ModalityData.ids``),
            the input of a pretrained token encoder in the model (``text_encoder=minilm``).
    """

    name: str
    x: torch.Tensor
    ptr: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    edge_ptr: torch.Tensor
    pos: torch.Tensor | None = None
    ids: torch.Tensor | None = None

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])


def is_int(value: object) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


_SIMPLE_TYPES = {
    int: is_int,
    float: lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    bool: lambda v: isinstance(v, bool),
}


@dataclass(frozen=True)
class GraphSpec(abc.ABC):
    """How one modality's graphs are built: a builder class with its own typed options.

    Subclasses are frozen dataclasses (so specs are hashable cache keys and equal only to
    specs of the same class with the same options) with a ``name`` and an :meth:`edges`
    method. Config files choose one with ``_target_`` (``conf/graph/builder/<name>.yaml``);
    a new builder is one subclass plus one such YAML file. Options annotated ``int``,
    ``float``, ``str`` or ``bool`` are type-checked here; subclasses check their ranges in
    ``__post_init__`` (calling this one first).
    """

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for option in fields(self):
            check = _SIMPLE_TYPES.get(hints.get(option.name))
            value = getattr(self, option.name)
            if check is not None and not check(value):
                raise ValueError(
                    f"{self.name or type(self).__name__} option {option.name} must be "
                    f"{hints[option.name].__name__}, got {value!r}"
                )

    @abc.abstractmethod
    def edges(self, modality: ModalityData) -> Edges:
        """Every item's edges of ``modality``, in local node ids, grouped by item."""

    def describe(self) -> str:
        """A short readable form, e.g. ``chain(window=2)``, ``knn(k=8, space=pos)``, ``full``."""
        name = self.name or type(self).__name__
        options = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))
        return f"{name}({options})" if options else name


# ----------------------------------------------------------------------------- layout helpers


class Layout(NamedTuple):
    """Where each node sits: ``ptr`` int64 ``[n_items + 1]``, ``counts`` int64 ``[n_items]``,
    ``item`` int64 ``[N]`` (the item of each node), ``local`` int64 ``[N]`` (its local id)."""

    ptr: torch.Tensor
    counts: torch.Tensor
    item: torch.Tensor
    local: torch.Tensor


def exclusive_cumsum(counts: torch.Tensor) -> torch.Tensor:
    """int64 ``[n + 1]`` exclusive prefix sum of ``counts`` (``[n]``): ranges from counts."""
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])


def layout_of_counts(counts: torch.Tensor) -> Layout:
    """The :class:`Layout` of items with ``counts`` (int64 ``[n_items]``) nodes each."""
    ptr = exclusive_cumsum(counts)
    item = torch.repeat_interleave(torch.arange(counts.shape[0]), counts)
    return Layout(ptr, counts, item, torch.arange(item.shape[0]) - ptr[:-1][item])


def node_layout(modality: ModalityData) -> Layout:
    """The :class:`Layout` of ``modality``'s nodes."""
    return layout_of_counts(torch.as_tensor(np.diff(modality.ptr), dtype=torch.int64))


def fixed_slots(layout: Layout, src_local: torch.Tensor, valid: torch.Tensor) -> Edges:
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
    return src_local[valid], dst, exclusive_cumsum(per_item)


def concat_grouped(parts: list[Edges]) -> Edges:
    """Merge edge sets that are each grouped by item into one grouped set (item by item,
    the parts' edges in part order), without sorting."""
    nonempty = [p for p in parts if p[0].shape[0] > 0]
    if len(nonempty) <= 1:
        return nonempty[0] if nonempty else parts[0]
    parts = nonempty
    counts = [p[2][1:] - p[2][:-1] for p in parts]
    edge_ptr = exclusive_cumsum(torch.stack(counts).sum(0))
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


def complete_edges(counts: torch.Tensor) -> Edges:
    """All ordered pairs ``(j, i)``, ``j != i``, within each item of ``counts`` nodes.

    Edges are destination-major: node ``i`` of an ``n``-node item receives ``n - 1`` edges
    from ``0..n-1`` without ``i``.
    """
    layout = layout_of_counts(counts)
    in_degree = counts[layout.item] - 1
    dst = torch.repeat_interleave(layout.local, in_degree)
    block_start = torch.cumsum(in_degree, 0) - in_degree
    slot = torch.arange(dst.shape[0]) - torch.repeat_interleave(block_start, in_degree)
    src = slot + (slot >= dst).to(torch.int64)
    return src, dst, exclusive_cumsum(counts * (counts - 1).clamp(min=0))
