"""Readout: one vector per item from the node features of a batched graph."""
from __future__ import annotations

import os


import dgl
import torch
from dgl.nn import GlobalAttentionPooling
from torch import nn

READOUTS = ("mean", "max", "sum", "attention")


class Readout(nn.Module):
    """Pool the nodes of every graph in a batch into one vector.

    Args:
        kind: ``"mean"``, ``"max"``, ``"sum"`` or ``"attention"``: DGL's
            ``GlobalAttentionPooling`` (Li et al., ICLR 2016, gated graph sequence networks)
            with gate ``Linear(dim, 1)``: ``sum_v softmax_v(gate(h_v)) h_v``.
        dim: node feature size (needed by ``"attention"``'s gate).

    Shapes: ``forward(graph, h)`` with ``h`` ``[N, dim]`` -> ``[B, dim]``,
    ``B = graph.batch_size``. A graph with 0 nodes gives a row of zeros.
    """

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        if kind not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {kind!r}")
        self.kind = kind
        self.dim = dim
        self.pool = GlobalAttentionPooling(nn.Linear(dim, 1)) if kind == "attention" else None

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            return self.pool(graph, h)
        # DGL's segment reduction fills empty segments (0-node graphs) with zeros.
        return dgl.ops.segment_reduce(graph.batch_num_nodes(), h, self.kind)
