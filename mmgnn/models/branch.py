"""GNNBranch: one modality's encoder, a GraphGym-style stack of pre-MLP, conv layers, post-MLP.

Design space after You, Ying & Leskovec, "Design Space for Graph Neural Networks" (NeurIPS
2020, GraphGym): pre/post message-passing MLP layers, hidden size, activation, normalisation,
residual connections and the conv type (aggregation) are plain constructor arguments.
"""
from __future__ import annotations

import os
from typing import Callable, Literal


import dgl
import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}
NORMS = ("layer", "batch", "none")


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def make_norm(name: str, dim: int) -> nn.Module:
    """``"layer"`` -> LayerNorm, ``"batch"`` -> BatchNorm1d (over nodes), ``"none"`` -> Identity."""
    if name == "layer":
        return nn.LayerNorm(dim)
    if name == "batch":
        return nn.BatchNorm1d(dim)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {name!r}")


def mlp_stack(in_dim: int, out_dim: int, num_layers: int, activation: str, dropout: float) -> nn.Sequential:
    """``num_layers`` x (Linear -> activation -> Dropout), ``in_dim -> out_dim -> ... -> out_dim``.

    ``num_layers == 0`` gives an empty Sequential (the identity).
    """
    layers: list[nn.Module] = []
    for i in range(num_layers):
        layers += [nn.Linear(in_dim if i == 0 else out_dim, out_dim), make_activation(activation), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class ConvBlock(nn.Module):
    """One message passing layer: ``h' = norm(drop(act(conv(graph, h)))) + shortcut(h)``.

    ``shortcut`` is the identity when ``in_dim == out_dim`` and a bias-free ``Linear`` otherwise
    (projection shortcut, He et al., CVPR 2016); ``residual=False`` drops the ``+ shortcut(h)``.

    Shapes: ``h`` ``[N, in_dim]`` -> ``[N, out_dim]``.
    """

    def __init__(
        self,
        conv: nn.Module,
        in_dim: int,
        out_dim: int,
        activation: str,
        dropout: float,
        norm: str,
        residual: bool,
    ) -> None:
        super().__init__()
        self.conv = conv
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout)
        self.norm = make_norm(norm, out_dim)
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.drop(self.act(self.conv(graph, h))))
        return out if self.shortcut is None else out + self.shortcut(h)


class GNNBranch(nn.Module):
    """Encoder of one modality's batched graph: node features in, node features out.

    ``pre`` MLP (``pre_layers`` x Linear->act->Dropout; the first one projects ``in_dim`` to
    ``hidden_dim``) -> ``num_layers`` :class:`ConvBlock` -> ``post`` MLP (``post_layers`` x
    Linear->act->Dropout). Items of a batched graph share no edges, so every item is encoded
    independently (with ``norm="batch"`` only in eval mode: in training, BatchNorm mixes the
    statistics of all nodes in the batch).

    Args:
        in_dim: node feature size ``d``.
        conv: ``conv(in_dim, out_dim) -> nn.Module`` with ``forward(graph, h)``, e.g. a
            (partial) class of :mod:`mmgnn.models.convs`; ``LinearLayer`` = no message passing.
        hidden_dim: width of every layer and of the output.
        num_layers: number of conv layers (>= 1).
        pre_layers, post_layers: MLP layers before / after message passing (>= 0). With
            ``pre_layers=0`` the first conv maps ``in_dim -> hidden_dim`` and its residual
            goes through a projection shortcut.
        activation: name in :data:`ACTIVATIONS`.
        dropout: dropout probability after every activation.
        norm: ``"layer"`` (default), ``"batch"`` or ``"none"``, after every conv.
        residual: add the (projected) layer input to every conv layer's output.

    Shapes: ``forward(graph, x)`` with ``x`` ``[N, in_dim]`` -> ``[N, out_dim]``,
    ``out_dim == hidden_dim``.
    """

    def __init__(
        self,
        in_dim: int,
        conv: Callable[[int, int], nn.Module],
        hidden_dim: int = 64,
        num_layers: int = 2,
        pre_layers: int = 1,
        post_layers: int = 0,
        activation: Literal[tuple(ACTIVATIONS)] = "relu",
        dropout: float = 0.1,
        norm: Literal[NORMS] = "layer",
        residual: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1 or pre_layers < 0 or post_layers < 0:
            raise ValueError(
                f"need num_layers >= 1, pre_layers >= 0, post_layers >= 0; got "
                f"{num_layers}, {pre_layers}, {post_layers}"
            )
        self.in_dim = in_dim
        self.out_dim = hidden_dim
        self.pre = mlp_stack(in_dim, hidden_dim, pre_layers, activation, dropout)
        dims = [hidden_dim if pre_layers else in_dim] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList(
            ConvBlock(conv(d_in, d_out), d_in, d_out, activation, dropout, norm, residual)
            for d_in, d_out in zip(dims[:-1], dims[1:])
        )
        self.post = mlp_stack(hidden_dim, hidden_dim, post_layers, activation, dropout)

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> torch.Tensor:
        h = self.pre(x)
        for layer in self.layers:
            h = layer(graph, h)
        return self.post(h)
