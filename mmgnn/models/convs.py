"""Message passing layers, one class per conv type, all with one interface.

Every layer is ``Layer(in_dim, out_dim, **options)`` with ``forward(graph, h)``: ``graph`` a
(batched) ``DGLGraph`` with ``N`` nodes, ``h`` float ``[N, in_dim]``, output ``[N, out_dim]``.
They wrap DGL's conv modules with ``allow_zero_in_degree=True`` (an isolated node, or an item
of one node, is legal input), so a :class:`~mmgnn.models.branch.GNNBranch` can take any of them
as its ``conv`` callable. Adding a conv type is one class here plus one ``conf/gnn/*.yaml``.

Each layer keeps its own settings as attributes (``heads``, ``width``, ``aggregator``, ...): code
here reads those and DGL's public module attributes (``fc``, ``attn_l``, ``bias``, ...), never
DGL's private ones (``_num_heads``), which a DGL release may rename.
"""
from __future__ import annotations

from typing import Literal

import dgl
import torch
import torch.nn.functional as F
from dgl.nn import GATConv, GATv2Conv, GINConv, GraphConv, SAGEConv
from dgl.nn.functional import edge_softmax
from torch import nn

SAGE_AGGREGATORS = ("mean", "gcn", "pool", "lstm")
GIN_AGGREGATORS = ("sum", "max", "mean")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _heads_width(out_dim: int, heads: int) -> int:
    """Per-head width so that ``heads`` concatenated heads give ``out_dim``."""
    if heads < 1 or out_dim % heads:
        raise ValueError(f"out_dim={out_dim} must be a positive multiple of heads={heads}")
    return out_dim // heads


class GCNLayer(nn.Module):
    """Graph convolution (Kipf & Welling, ICLR 2017): ``D^-1/2 A D^-1/2 h W`` (DGL ``GraphConv``).

    Args:
        norm: DGL's degree normalisation: ``"both"`` (symmetric, the paper's), ``"right"``
            (mean over in-neighbours), ``"left"`` or ``"none"``.
    """

    def __init__(self, in_dim: int, out_dim: int, norm: str = "both") -> None:
        super().__init__()
        self.norm = norm
        self.conv = GraphConv(in_dim, out_dim, norm=norm, allow_zero_in_degree=True)

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        return self.conv(graph, h)


class SAGELayer(nn.Module):
    """GraphSAGE (Hamilton et al., NeurIPS 2017): ``W_self h_v + W_neigh AGG_{u->v} h_u``.

    Args:
        aggregator: ``"mean"`` (default), ``"gcn"``, ``"pool"`` or ``"lstm"`` (DGL ``SAGEConv``).
    """

    def __init__(self, in_dim: int, out_dim: int, aggregator: Literal[SAGE_AGGREGATORS] = "mean") -> None:
        super().__init__()
        _check_choice("aggregator", aggregator, SAGE_AGGREGATORS)
        self.aggregator = aggregator
        self.conv = SAGEConv(in_dim, out_dim, aggregator_type=aggregator)

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        return self.conv(graph, h)


def gat_attention_logits(
    conv: GATConv, h: torch.Tensor, heads: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAT's per-node logits ``a_l . W h`` and ``a_r . W h`` as one matrix product.

    ``a . (W h) = (W^T a) . h``, so with ``W`` ``[heads * F, in_dim]`` and ``a`` ``[heads, F]``
    (``F = width``) the folded weight ``[2 heads, in_dim]`` gives both logits of every head
    from ``h`` directly, instead of two products and reductions over the ``[N, heads, F]``
    projected features.

    Shapes: ``h`` ``[N, in_dim]`` -> ``(el, er)``, each ``[N, heads, 1]``.
    """
    weight = conv.fc.weight.view(heads, width, -1)
    folded = torch.cat([torch.einsum("hfd,hf->hd", weight, a.view(heads, width)) for a in (conv.attn_l, conv.attn_r)])
    logits = F.linear(h, folded)  # [N, 2 heads]
    return logits[:, :heads].unsqueeze(-1), logits[:, heads:].unsqueeze(-1)


def gat_forward(conv: GATConv, graph: dgl.DGLGraph, h: torch.Tensor, heads: int, width: int) -> torch.Tensor:
    """``conv(graph, h)`` for a homogeneous graph (DGL's ``GATConv`` with ``residual=False``,
    built with ``num_heads=heads`` and ``out_feats=width``) computed with DGL's fused kernels
    called directly: :func:`gat_attention_logits`, then ``dgl.ops.u_add_v`` -> LeakyReLU ->
    ``edge_softmax`` -> ``dgl.ops.u_mul_e_sum``, with ``conv``'s parameters, dropouts and bias
    (Veličković et al., ICLR 2018, Eq. 3-4).

    Shapes: ``h`` ``[N, in_dim]`` -> ``[N, heads, width]``.
    """
    h = conv.feat_drop(h)
    feat = conv.fc(h).view(-1, heads, width)
    el, er = gat_attention_logits(conv, h, heads, width)
    scores = conv.leaky_relu(dgl.ops.u_add_v(graph, el, er))  # [E, heads, 1]
    attention = conv.attn_drop(edge_softmax(graph, scores))
    out = dgl.ops.u_mul_e_sum(graph, feat, attention)
    return out if conv.bias is None else out + conv.bias.view(1, heads, width)


class GATLayer(nn.Module):
    """Graph attention (Veličković et al., ICLR 2018), DGL ``GATConv``.

    ``heads`` attention heads of width ``out_dim // heads`` each, concatenated back to
    ``out_dim`` (``out_dim`` must be a multiple of ``heads``). The parameters are those of a
    ``GATConv`` (``conv``); the computation is :func:`gat_forward` (the same function).

    Args:
        heads: number of attention heads (kept as ``heads``; each head's width as ``width``).
        attn_dropout: dropout on the attention coefficients.
    """

    conv_class = GATConv

    def __init__(self, in_dim: int, out_dim: int, heads: int = 4, attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.width = heads, _heads_width(out_dim, heads)
        self.conv = self.conv_class(
            in_dim,
            self.width,
            num_heads=heads,
            attn_drop=attn_dropout,
            allow_zero_in_degree=True,
        )

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        return gat_forward(self.conv, graph, h, self.heads, self.width).flatten(1)


class GATv2Layer(GATLayer):
    """GATv2 (Brody et al., ICLR 2022: "How attentive are graph attention networks?").

    Dynamic attention ``a^T LeakyReLU(W [h_u || h_v])`` (DGL ``GATv2Conv``); heads are
    concatenated back to ``out_dim`` as in :class:`GATLayer`.
    """

    conv_class = GATv2Conv

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        return self.conv(graph, h).flatten(1)


class GINLayer(nn.Module):
    """Graph isomorphism network layer (Xu et al., ICLR 2019), DGL ``GINConv``.

    ``MLP((1 + eps) h_v + AGG_{u->v} h_u)`` with a two-layer MLP
    ``Linear(in_dim, out_dim) -> ReLU -> Linear(out_dim, out_dim)``.

    Args:
        aggregator: ``"sum"`` (default, the injective one), ``"max"`` or ``"mean"``.
        learn_eps: learn ``eps`` (GIN-eps) instead of fixing it to 0 (GIN-0).
    """

    def __init__(
        self, in_dim: int, out_dim: int, aggregator: Literal[GIN_AGGREGATORS] = "sum", learn_eps: bool = False
    ) -> None:
        super().__init__()
        _check_choice("aggregator", aggregator, GIN_AGGREGATORS)
        self.aggregator, self.learn_eps = aggregator, learn_eps
        mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
        self.conv = GINConv(mlp, aggregator_type=aggregator, learn_eps=learn_eps)

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        return self.conv(graph, h)


class LinearLayer(nn.Module):
    """A per-node ``Linear(in_dim, out_dim)`` that ignores the graph: the ``mlp`` baseline.

    Used in place of a conv, it gives a branch the same layer stack with no message passing.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)
