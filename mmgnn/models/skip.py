"""ModalitySkip: the residual from a modality's original embedding past its GNN branch."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

SKIP_MODES = ("none", "sum", "concat")


class ModalitySkip(nn.Module):
    """Join a branch output ``h`` with a learned projection of the ORIGINAL features ``x``.

    - ``"none"``: ``h`` (no parameters); ``out_dim = branch_dim``.
    - ``"sum"``: ``h + proj(x)``; ``out_dim = branch_dim``.
    - ``"concat"``: ``[h, proj(x)]``; ``out_dim = 2 * branch_dim``.

    ``proj`` is ``Linear(in_dim, branch_dim)``. It acts on the last axis, so the same module
    works on node features ``[N, .]`` and on pooled vectors ``[B, .]`` (any leading shape).

    Args:
        mode: ``"none"``, ``"sum"`` or ``"concat"``.
        in_dim: size ``d`` of the original features ``x``.
        branch_dim: size of the branch output ``h``.

    Shapes: ``forward(h, x)`` with ``h`` ``[..., branch_dim]``, ``x`` ``[..., in_dim]`` ->
    ``[..., out_dim]``.
    """

    def __init__(self, mode: Literal[SKIP_MODES], in_dim: int, branch_dim: int) -> None:
        super().__init__()
        if mode not in SKIP_MODES:
            raise ValueError(f"skip mode must be one of {SKIP_MODES}, got {mode!r}")
        self.mode = mode
        self.proj = None if mode == "none" else nn.Linear(in_dim, branch_dim)
        self.out_dim = 2 * branch_dim if mode == "concat" else branch_dim

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.proj is None:
            return h
        if self.mode == "sum":
            return h + self.proj(x)
        return torch.cat([h, self.proj(x)], dim=-1)
