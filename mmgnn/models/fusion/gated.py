"""GatedFusion: gated multimodal unit (GMU; Arevalo et al., "Gated Multimodal Units for
Information Fusion", ICLR workshop 2017)."""
from __future__ import annotations

import torch
from torch import nn

from mmgnn.models.fusion.base import Fusion, weighted_sum, zero_missing


class GatedFusion(Fusion):
    """GMU over ``M`` modalities with one scalar gate per modality.

    With ``x_m = LN_m(p_m)`` (zero for a missing modality):
    ``h_m = tanh(W_m x_m)``, ``z = sigmoid(W_z [x_1, ..., x_M])`` (``[B, M]``, computed from all
    modalities), ``z_m = 0`` where modality ``m`` is missing, ``fused = LN(sum_m z_m h_m)``.
    GMU (Arevalo et al. 2017, Eq. 1-4) gates each dimension; one scalar per modality is the
    multimodal form whose gate is directly the reported weight of that modality.

    Args:
        num_modalities: ``M``.
        dim: size of each pooled vector and of the output.
        dropout: dropout on each ``h_m``.

    Shapes: see :mod:`mmgnn.models.fusion.base`; uses ``pooled`` and ``present``.
    Returns ``gates = z`` ``[B, M]``.
    """

    def __init__(self, num_modalities: int, dim: int, dropout: float = 0.1) -> None:
        super().__init__(num_modalities, dim)
        self.transforms = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_modalities))
        self.gate = nn.Linear(num_modalities * dim, num_modalities)
        self.drop = nn.Dropout(dropout)
        self.out_norm = nn.LayerNorm(dim)

    def fuse(self, x: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[B, M, dim]`` -> ``sum_m z_m h_m`` ``[B, dim]``, ``z`` ``[B, M]``."""
        h = torch.stack([torch.tanh(t(x[:, m])) for m, t in enumerate(self.transforms)], dim=1)
        z = zero_missing(torch.sigmoid(self.gate(x.flatten(1))), present)
        return weighted_sum(z, self.drop(h)), z
