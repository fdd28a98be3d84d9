"""ConcatFusion: late fusion by concatenating the normalised pooled vectors."""
from __future__ import annotations

import torch
from torch import nn

from mmgnn.models.branch import make_activation
from mmgnn.models.fusion.base import Fusion, presence_gates


class ConcatFusion(Fusion):
    """Late fusion by concatenation: ``LN(MLP([LN_1(p_1), ..., LN_M(p_M)]))``.

    Missing modalities enter as zero vectors. Gates are :func:`presence_gates`
    (``present / number present``): concatenation has no learned weighting, so the gates only
    report which modalities contributed, weighted equally.

    Args:
        num_modalities: ``M``.
        dim: size of each pooled vector.
        hidden_dim: MLP hidden width (default ``dim``).
        out_dim: fused size (default ``dim``).
        num_layers: Linear layers in the MLP (>= 1), with activation and Dropout between.
        activation: activation name (see :data:`mmgnn.models.branch.ACTIVATIONS`).
        dropout: dropout between MLP layers.

    Shapes: see :mod:`mmgnn.models.fusion.base`; uses ``pooled`` and ``present`` (not the tokens).
    """

    def __init__(
        self,
        num_modalities: int,
        dim: int,
        hidden_dim: int | None = None,
        out_dim: int | None = None,
        num_layers: int = 2,
        activation: str = "relu",
        dropout: float = 0.1,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        super().__init__(num_modalities, dim, out_dim)
        hidden_dim = hidden_dim or dim
        widths = [num_modalities * dim] + [hidden_dim] * (num_layers - 1) + [self.out_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
            if i:
                layers += [make_activation(activation), nn.Dropout(dropout)]
            layers.append(nn.Linear(d_in, d_out))
        self.mlp = nn.Sequential(*layers)
        self.out_norm = nn.LayerNorm(self.out_dim)

    def fuse(self, x: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[B, M, dim]`` -> MLP of its concatenation ``[B, out_dim]``, presence gates."""
        return self.mlp(x.flatten(1)), presence_gates(present)
