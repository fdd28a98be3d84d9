"""ConcatFusion, plus the pieces every fusion shares (masked input LayerNorm, presence gates).

Fusion interface (all of :mod:`mmgnn.models.fusion`): ``Fusion(num_modalities, dim, **options)``
with ``.out_dim`` and ``forward(tokens, token_mask, pooled, present) -> (fused, gates)``:

- ``tokens``: list of ``M`` float ``[B, L_m, dim]`` (node tokens, padded per batch),
- ``token_mask``: list of ``M`` bool ``[B, L_m]``, True for real tokens of present modalities,
- ``pooled``: float ``[B, M, dim]``, one vector per item and modality,
- ``present``: bool ``[B, M]``, which modalities each item has,
- ``fused``: float ``[B, out_dim]``; ``gates``: float ``[B, M]``, exactly 0 where not present.

Every fusion zeroes the inputs of missing modalities before anything mixes them, so the fused
embedding of an item depends only on the modalities it has.
"""
from __future__ import annotations

import torch
from torch import nn

from mmgnn.models.branch import make_activation


def presence_gates(present: torch.Tensor) -> torch.Tensor:
    """Uniform gates over the present modalities: ``present / number present``.

    Shapes: bool ``[B, M]`` -> float ``[B, M]`` (rows sum to 1; all-zero for an item
    with no modality). The gates of fusions that weigh every present modality alike.
    """
    weights = present.float()
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)


class ModalityNorm(nn.Module):
    """A LayerNorm per modality, then the rows of missing modalities set to exactly zero.

    Shapes: ``forward(x, present)`` with ``x`` ``[B, M, dim]``, ``present`` bool ``[B, M]``
    -> ``[B, M, dim]``. (Zeroing after the norm matters: LayerNorm of a zero row is its bias.)
    """

    def __init__(self, num_modalities: int, dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_modalities))

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        normed = torch.stack([norm(x[:, m]) for m, norm in enumerate(self.norms)], dim=1)
        return torch.where(present.unsqueeze(-1), normed, torch.zeros_like(normed))


class ConcatFusion(nn.Module):
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

    Shapes: see the module docstring; uses ``pooled`` and ``present`` (not the tokens).
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
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        hidden_dim = hidden_dim or dim
        self.out_dim = out_dim or dim
        self.in_norm = ModalityNorm(num_modalities, dim)
        widths = [num_modalities * dim] + [hidden_dim] * (num_layers - 1) + [self.out_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
            if i:
                layers += [make_activation(activation), nn.Dropout(dropout)]
            layers.append(nn.Linear(d_in, d_out))
        self.mlp = nn.Sequential(*layers)
        self.out_norm = nn.LayerNorm(self.out_dim)

    def forward(
        self,
        tokens: list[torch.Tensor],
        token_mask: list[torch.Tensor],
        pooled: torch.Tensor,
        present: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.in_norm(pooled, present).flatten(1)
        return self.out_norm(self.mlp(x)), presence_gates(present)
