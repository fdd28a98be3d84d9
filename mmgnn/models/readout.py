"""Readout: one vector per item from the node features of a batched graph.

Two items, one of two nodes and one of a single node (node features ``h`` ``[3, 2]``):

>>> import dgl, torch
>>> graph = dgl.batch([dgl.graph(([0], [1])), dgl.graph(([], []), num_nodes=1)])
>>> h = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
>>> Readout("mean", 2)(graph, h).tolist()
[[2.0, 3.0], [5.0, 6.0]]
>>> Readout("max", 2)(graph, h).tolist(), Readout("sum", 2)(graph, h).tolist()
([[3.0, 4.0], [5.0, 6.0]], [[4.0, 6.0], [5.0, 6.0]])
"""
from __future__ import annotations

import math

import dgl
import torch
from dgl.nn import GlobalAttentionPooling
from torch import nn

READOUTS = ("mean", "max", "sum", "attention", "query")


class QueryReadout(nn.Module):
    """Learned queries attending over an item's tokens (PMA, Set Transformer, Lee et al., ICML
    2019), one vector per query, concatenated and projected back.

    ``a_qv = softmax_v(<w_q, K h_v> / sqrt(dim))`` per item, ``o_q = sum_v a_qv V h_v``,
    ``out = Linear(queries * dim, dim)([o_1, ..., o_Q])``. Tokens that carry a positional
    encoding let each query pick nodes by where they sit, so the pooled vector keeps what a
    mean forgets (which patch holds which stroke); with one query per position it can keep
    the whole ordered item.

    Shapes: ``forward(graph, h)`` with ``h`` ``[N, dim]`` -> ``[B, dim]``; an item with 0
    nodes gives zeros.

    >>> import dgl, torch
    >>> graph = dgl.batch([dgl.graph(([0, 1], [1, 2])), dgl.graph(([], []), num_nodes=0)])
    >>> pooled = QueryReadout(dim=4, queries=3)(graph, torch.randn(3, 4))
    >>> pooled.shape, pooled[1].tolist()
    (torch.Size([2, 4]), [0.0, 0.0, 0.0, 0.0])
    """

    def __init__(self, dim: int, queries: int) -> None:
        super().__init__()
        if queries < 1:
            raise ValueError(f"readout queries must be >= 1, got {queries}")
        self.queries = nn.Parameter(torch.randn(queries, dim) / math.sqrt(dim))
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(queries * dim, dim)

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        counts = graph.batch_num_nodes().to(h.device)
        scores = self.key(h) @ self.queries.t() / math.sqrt(h.shape[1])  # [N, Q]
        weights = dgl.ops.segment_softmax(counts, scores)
        mixed = weights.unsqueeze(-1) * self.value(h).unsqueeze(1)  # [N, Q, dim]
        pooled = dgl.ops.segment_reduce(counts, mixed.flatten(1), "sum")  # [B, Q * dim]
        return torch.where((counts > 0).unsqueeze(1), self.out(pooled), torch.zeros_like(pooled[:, : h.shape[1]]))


class Readout(nn.Module):
    """Pool the nodes of every graph in a batch into one vector.

    Args:
        kind: ``"mean"``, ``"max"``, ``"sum"``, ``"attention"``: DGL's
            ``GlobalAttentionPooling`` (Li et al., ICLR 2016, gated graph sequence networks)
            with gate ``Linear(dim, 1)``: ``sum_v softmax_v(gate(h_v)) h_v``, or ``"query"``:
            :class:`QueryReadout` (order- and position-aware when tokens carry encodings).
        dim: node feature size.
        queries: ``"query"``'s number of learned queries.

    Shapes: ``forward(graph, h)`` with ``h`` ``[N, dim]`` -> ``[B, dim]``,
    ``B = graph.batch_size``. A graph with 0 nodes gives a row of zeros.

    >>> import dgl, torch
    >>> graph = dgl.batch([dgl.graph(([0], [1])), dgl.graph(([], []), num_nodes=0)])
    >>> Readout("mean", 2)(graph, torch.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[2.0, 3.0], [0.0, 0.0]]
    >>> Readout("attention", 8)(graph, torch.randn(2, 8)).shape
    torch.Size([2, 8])
    >>> Readout("median", 8)
    Traceback (most recent call last):
    ...
    ValueError: readout must be one of ('mean', 'max', 'sum', 'attention', 'query'), got 'median'
    """

    def __init__(self, kind: str, dim: int, queries: int = 8) -> None:
        super().__init__()
        if kind not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {kind!r}")
        self.kind = kind
        self.dim = dim
        self.pool = None
        if kind == "attention":
            self.pool = GlobalAttentionPooling(nn.Linear(dim, 1))
        elif kind == "query":
            self.pool = QueryReadout(dim, queries)

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            return self.pool(graph, h)
        # DGL's segment reduction fills empty segments (0-node graphs) with zeros.
        return dgl.ops.segment_reduce(graph.batch_num_nodes(), h, self.kind)
