"""The base of every fusion metamodel: its interface and the helpers all fusions share.

Interface: ``Fusion(num_modalities, dim, **options)`` with ``.out_dim`` and
``forward(tokens, token_mask, pooled, present) -> (fused, gates)``:

- ``tokens``: list of ``M`` float ``[B, L_m, dim]`` (node tokens, padded per batch),
- ``token_mask``: list of ``M`` bool ``[B, L_m]``, True for real tokens of present modalities,
- ``pooled``: float ``[B, M, dim]``, one vector per item and modality,
- ``present``: bool ``[B, M]``, which modalities each item has,
- ``fused``: float ``[B, out_dim]``; ``gates``: float ``[B, M]``, exactly 0 where not present.

Every fusion zeroes the inputs of missing modalities before anything mixes them, so the fused
embedding of an item depends only on the modalities it has. :class:`Fusion` does that once for
all: it normalises the inputs a variant reads (pooled vectors or tokens) with
:class:`ModalityNorm`, hands them to the variant's :meth:`Fusion.fuse`, and applies the output
LayerNorm; a variant holds only its own combination rule.
"""
from __future__ import annotations

import abc
from typing import NamedTuple

import torch
from torch import nn


def zero_missing(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``values`` where ``keep``, exactly zero elsewhere.

    Shapes: ``values`` ``[*S, *T]``, ``keep`` bool ``[*S]`` (broadcast over the trailing
    ``T`` dims) -> ``[*S, *T]``. Zeroing with ``where`` (not a product) also clears NaN or
    huge garbage in the dropped entries.
    """
    keep = keep.reshape(*keep.shape, *([1] * (values.dim() - keep.dim())))
    return torch.where(keep, values, torch.zeros_like(values))


def presence_gates(present: torch.Tensor) -> torch.Tensor:
    """Uniform gates over the present modalities: ``present / number present``.

    Shapes: bool ``[B, M]`` -> float ``[B, M]`` (rows sum to 1; all-zero for an item
    with no modality). The gates of fusions that weigh every present modality alike.
    """
    weights = present.float()
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid tokens: ``x`` ``[B, L, D]``, ``mask`` bool ``[B, L]`` -> ``[B, D]``.

    Rows without a valid token give zeros.
    """
    x = zero_missing(x, mask)
    return x.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)


def weighted_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``sum_m w_m v_m``: ``weights`` ``[B, M]``, ``values`` ``[B, M, D]`` -> ``[B, D]``."""
    return (weights.unsqueeze(-1) * values).sum(dim=1)


def at_least_one_token(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``[B, 0, D]`` tokens (modality absent from the whole batch) to one masked zero token."""
    if tokens.shape[1]:
        return tokens, mask
    return tokens.new_zeros(tokens.shape[0], 1, tokens.shape[2]), mask.new_zeros(mask.shape[0], 1)


class Tokens(NamedTuple):
    """Per-modality token lists as a token-reading fusion receives them (see :class:`Fusion`).

    ``values``: ``M`` float ``[B, L_m, dim]`` (``L_m >= 1``), normalised, exactly 0 where
    ``mask`` is False; ``mask``: ``M`` bool ``[B, L_m]``, True for real tokens of present modalities.
    """

    values: list[torch.Tensor]
    mask: list[torch.Tensor]


class ModalityNorm(nn.Module):
    """A LayerNorm per modality, then the entries of missing modalities set to exactly zero.

    Shapes: ``forward(x, present)`` with ``x`` ``[B, M, dim]``, ``present`` bool ``[B, M]``
    -> ``[B, M, dim]``. :meth:`tokens` applies the same norms to per-modality token lists.
    (Zeroing after the norm matters: LayerNorm of a zero row is its bias.)
    """

    def __init__(self, num_modalities: int, dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_modalities))

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        normed = torch.stack([norm(x[:, m]) for m, norm in enumerate(self.norms)], dim=1)
        return zero_missing(normed, present)

    def tokens(self, tokens: list[torch.Tensor], token_mask: list[torch.Tensor], present: torch.Tensor) -> Tokens:
        """Modality ``m``'s tokens ``[B, L_m, dim]`` through norm ``m``; the masks narrowed to
        present modalities (``mask & present[:, m]``) and every masked token set to zero.

        A modality with no token in the batch (``L_m = 0``) first gets one masked zero token
        (:func:`at_least_one_token`): attention needs a key, and its norm still takes part
        (a zero gradient rather than none, so weight decay treats every batch alike).
        """
        values, masks = [], []
        for m, (norm, tok, mask) in enumerate(zip(self.norms, tokens, token_mask)):
            tok, mask = at_least_one_token(tok, mask & present[:, m : m + 1])
            values.append(zero_missing(norm(tok), mask))
            masks.append(mask)
        return Tokens(values, masks)


class Fusion(nn.Module, metaclass=abc.ABCMeta):
    """Base of the fusion metamodels: the interface of the module docstring.

    ``forward`` checks the inputs against ``num_modalities``, normalises what the variant reads
    with ``in_norm`` (:class:`ModalityNorm`; missing modalities zero), calls :meth:`fuse` and
    returns ``(out_norm(fused), gates)``.

    A variant sets ``reads_tokens`` (class attribute; False: it reads ``pooled``), implements
    :meth:`fuse`, and registers its layers after ``super().__init__`` and then
    ``self.out_norm = nn.LayerNorm(self.out_dim)`` last, so that the parameters are ordered
    ``in_norm``, the variant's own layers, ``out_norm``.

    Args:
        num_modalities: ``M``.
        dim: size of each token and pooled vector.
        out_dim: fused size (default ``dim``).
    """

    reads_tokens: bool = False
    out_norm: nn.LayerNorm

    def __init__(self, num_modalities: int, dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.num_modalities = num_modalities
        self.out_dim = out_dim or dim
        self.in_norm = ModalityNorm(num_modalities, dim)

    def forward(
        self,
        tokens: list[torch.Tensor],
        token_mask: list[torch.Tensor],
        pooled: torch.Tensor,
        present: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_inputs(tokens, token_mask, pooled, present)
        if self.reads_tokens:
            x: torch.Tensor | Tokens = self.in_norm.tokens(tokens, token_mask, present)
        else:
            x = self.in_norm(pooled, present)
        fused, gates = self.fuse(x, present)
        return self.out_norm(fused), gates

    @abc.abstractmethod
    def fuse(self, x: torch.Tensor | Tokens, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The variant's combination rule.

        ``x``: the normalised inputs, :class:`Tokens` if ``reads_tokens`` else the pooled
        vectors ``[B, M, dim]``; rows, tokens and entries of missing modalities are zero.
        Returns ``fused`` ``[B, out_dim]`` before ``out_norm`` and ``gates`` ``[B, M]``,
        exactly 0 where ``present`` is False.
        """

    def _check_inputs(
        self, tokens: list[torch.Tensor], token_mask: list[torch.Tensor], pooled: torch.Tensor, present: torch.Tensor
    ) -> None:
        """A clear error for inputs of another number of modalities or mismatched shapes."""
        name, m = type(self).__name__, self.num_modalities
        if present.dim() != 2 or present.shape[1] != m:
            raise ValueError(f"{name}: present must be [B, {m}], got {tuple(present.shape)}")
        if self.reads_tokens and not len(tokens) == len(token_mask) == m:
            raise ValueError(f"{name}: needs {m} token tensors and masks, got {len(tokens)} and {len(token_mask)}")
        if not self.reads_tokens and pooled.shape[:2] != present.shape:
            raise ValueError(f"{name}: pooled must be [B, {m}, dim] like present, got {tuple(pooled.shape)}")
