"""Batching: one batched DGLGraph per modality plus present-masks, labels, groups, indices."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace


import dgl
import torch

from mmgnn.data.graphs import ModalityGraphs


@dataclass
class MultimodalBatch:
    """A batch of ``B`` items.

    Attributes:
        graphs: modality -> batched ``DGLGraph`` with ``batch_size == B``; ``ndata["x"]`` is
            float ``[N_m, d_m]``. An item lacking the modality is a graph with 0 nodes, so
            position ``b`` of every modality is the same item.
        present: bool ``[B, M]``, columns in ``modalities`` order. The model treats an item
            whose entry is False as lacking that modality (missing in the data, or dropped
            by modality dropout / a robustness test), whatever its graph holds.
        modalities: modality names, the column order of ``present``.
        labels: int64 ``[B]`` class codes, or ``None`` for unlabelled data.
        groups: int64 ``[B]`` group codes.
        index: int64 ``[B]`` row indices into the dataset.
    """

    graphs: dict[str, dgl.DGLGraph]
    present: torch.Tensor
    modalities: tuple[str, ...]
    labels: torch.Tensor | None
    groups: torch.Tensor
    index: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.index.shape[0])

    def to(self, device: torch.device | str) -> "MultimodalBatch":
        return MultimodalBatch(
            graphs={m: g.to(device) for m, g in self.graphs.items()},
            present=self.present.to(device),
            modalities=self.modalities,
            labels=None if self.labels is None else self.labels.to(device),
            groups=self.groups.to(device),
            index=self.index.to(device),
        )

    def with_present(self, present: torch.Tensor) -> "MultimodalBatch":
        """The same batch with another present-mask (modality dropout, robustness tests)."""
        return replace(self, present=present)


def csr_positions(ptr: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather the CSR ranges of ``index``: (flat positions ``[sum len]``, lengths ``[B]``)."""
    start, stop = ptr[index], ptr[index + 1]
    lengths = stop - start
    total = int(lengths.sum())
    offsets = torch.cumsum(lengths, 0) - lengths
    flat = torch.arange(total, dtype=torch.int64) - torch.repeat_interleave(offsets, lengths)
    flat += torch.repeat_interleave(start, lengths)
    return flat, lengths


def batch_modality(
    graphs: ModalityGraphs, index: torch.Tensor, pe: torch.Tensor | None = None
) -> dgl.DGLGraph:
    """One batched DGLGraph of the items ``index`` (int64 ``[B]``), built without Python loops.

    Node features are ``ndata["x"]`` (and ``ndata["pos"]`` when positions exist,
    ``ndata["ids"]`` int64 when token ids exist, and ``ndata["pe"]`` from ``pe`` float
    ``[total_nodes, raw_dim]``, the node encodings).
    """
    node_pos, n_nodes = csr_positions(graphs.ptr, index)
    edge_pos, n_edges = csr_positions(graphs.edge_ptr, index)
    node_offset = torch.cumsum(n_nodes, 0) - n_nodes
    shift = torch.repeat_interleave(node_offset, n_edges)
    g = dgl.graph(
        (graphs.src[edge_pos] + shift, graphs.dst[edge_pos] + shift),
        num_nodes=int(n_nodes.sum()),
    )
    g.set_batch_num_nodes(n_nodes)
    g.set_batch_num_edges(n_edges)
    g.ndata["x"] = graphs.x[node_pos]
    if graphs.pos is not None:
        g.ndata["pos"] = graphs.pos[node_pos]
    if graphs.ids is not None:
        g.ndata["ids"] = graphs.ids[node_pos]
    if pe is not None:
        g.ndata["pe"] = pe[node_pos]
    return g


class MultimodalCollator:
    """``collate_fn`` for a ``DataLoader`` over dataset row indices.

    Args:
        graphs: modality -> :class:`ModalityGraphs` (the dataset's cached graphs).
        labels: int64 ``[n_items]`` or ``None``.
        groups: int64 ``[n_items]``.
        pe: modality -> float ``[total_nodes, raw_dim]`` node encodings (``PreparedData.pe``).
    """

    def __init__(
        self,
        graphs: dict[str, ModalityGraphs],
        labels: torch.Tensor | None,
        groups: torch.Tensor,
        pe: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.graphs = graphs
        self.pe = dict(pe or {})
        self.modalities = tuple(graphs)
        self.labels = labels
        self.groups = groups
        self._present = torch.stack(
            [g.ptr[1:] > g.ptr[:-1] for g in graphs.values()], dim=1
        )

    def __call__(self, rows: list[int] | torch.Tensor) -> MultimodalBatch:
        index = torch.as_tensor(rows, dtype=torch.int64)
        return MultimodalBatch(
            graphs={m: batch_modality(g, index, self.pe.get(m)) for m, g in self.graphs.items()},
            present=self._present[index],
            modalities=self.modalities,
            labels=None if self.labels is None else self.labels[index],
            groups=self.groups[index],
            index=index,
        )
