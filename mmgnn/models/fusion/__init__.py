"""Fusion metamodels: combine the modalities of every item into one embedding plus gates.

Each is a :class:`Fusion` (:mod:`mmgnn.models.fusion.base`: the interface
``Fusion(num_modalities, dim, **options)`` with ``.out_dim`` and
``forward(tokens, token_mask, pooled, present) -> (fused [B, out_dim], gates [B, M])``, and the
helpers every fusion uses). Adding a fusion is one :class:`Fusion` subclass plus one
``conf/fusion/*.yaml``.
"""
from mmgnn.models.fusion.base import (
    Fusion,
    ModalityNorm,
    Tokens,
    at_least_one_token,
    masked_mean,
    presence_gates,
    weighted_sum,
    zero_missing,
)
from mmgnn.models.fusion.concat import ConcatFusion
from mmgnn.models.fusion.gated import GatedFusion
from mmgnn.models.fusion.lowrank import LowRankFusion
from mmgnn.models.fusion.xattn import CrossAttentionFusion, CrossModalBlock, CrossModalTransformer

__all__ = [
    "ConcatFusion",
    "CrossAttentionFusion",
    "CrossModalBlock",
    "CrossModalTransformer",
    "Fusion",
    "GatedFusion",
    "LowRankFusion",
    "ModalityNorm",
    "Tokens",
    "at_least_one_token",
    "masked_mean",
    "presence_gates",
    "weighted_sum",
    "zero_missing",
]
