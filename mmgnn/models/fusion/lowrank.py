"""LowRankFusion: low-rank multimodal fusion (LMF; Liu et al., "Efficient Low-rank Multimodal
Fusion with Modality-Specific Factors", ACL 2018; layout as in MultiBench's ``LowRankTensorFusion``)."""
from __future__ import annotations

import torch
from torch import nn

from mmgnn.models.fusion.base import Fusion, presence_gates


class LowRankFusion(Fusion):
    """Tensor fusion of ``[x_m, 1]`` over modalities, with rank-``r`` modality factors.

    With ``x_m = LN_m(p_m)`` (zero for a missing modality) and ``z_m = [x_m, 1]``
    (``dim + 1``), factors ``W_m^(i)`` (``[dim + 1, out_dim]``, ``i = 1..r``):
    ``fused = LN(sum_i w_i prod_m (z_m W_m^(i)) + b)`` (Liu et al. 2018, Eq. 7): the outer
    product tensor of all ``z_m`` contracted with a rank-``r`` weight tensor, without building it.
    A missing modality has ``z_m = [0, 1]``, so its factor is a learned constant: the fused
    embedding depends only on the modalities present. Gates are :func:`presence_gates`
    (``present / number present``): the multiplicative interaction has no per-modality weight.

    Args:
        num_modalities: ``M``.
        dim: size of each pooled vector.
        rank: ``r``.
        out_dim: fused size (default ``dim``).

    Factors are drawn from ``N(0, 1 / (dim + 1))`` so that every ``z_m W_m^(i)`` has about unit
    variance at init (the product over ``M`` modalities neither vanishes nor explodes).
    Shapes: see :mod:`mmgnn.models.fusion.base`; uses ``pooled`` and ``present``.
    """

    def __init__(self, num_modalities: int, dim: int, rank: int = 4, out_dim: int | None = None) -> None:
        super().__init__(num_modalities, dim, out_dim)
        self.rank = rank
        self.factors = nn.Parameter(torch.randn(num_modalities, rank, dim + 1, self.out_dim) / (dim + 1) ** 0.5)
        self.rank_weights = nn.Parameter(torch.full((rank,), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(self.out_dim))
        self.out_norm = nn.LayerNorm(self.out_dim)

    def fuse(self, x: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[B, M, dim]`` -> the rank-``r`` tensor fusion ``[B, out_dim]``, presence gates."""
        z = torch.cat([x, x.new_ones(*x.shape[:2], 1)], dim=-1)  # [B, M, D + 1]
        factors = torch.einsum("bmd,mrdo->bmro", z, self.factors)  # [B, M, r, out]
        return torch.einsum("r,bro->bo", self.rank_weights, factors.prod(dim=1)) + self.bias, presence_gates(present)
