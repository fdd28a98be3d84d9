"""Fusion metamodels: combine the modalities of every item into one embedding plus gates.

Each is ``Fusion(num_modalities, dim, **options)`` with ``.out_dim`` and
``forward(tokens, token_mask, pooled, present) -> (fused [B, out_dim], gates [B, M])``
(details in :mod:`mmgnn.models.fusion.concat`). Adding a fusion is one class plus one
``conf/fusion/*.yaml``.
"""
from mmgnn.models.fusion.concat import ConcatFusion, ModalityNorm, presence_gates
from mmgnn.models.fusion.gated import GatedFusion
from mmgnn.models.fusion.lowrank import LowRankFusion
from mmgnn.models.fusion.xattn import CrossAttentionFusion, CrossModalBlock, CrossModalTransformer

__all__ = [
    "ConcatFusion",
    "CrossAttentionFusion",
    "CrossModalBlock",
    "CrossModalTransformer",
    "GatedFusion",
    "LowRankFusion",
    "ModalityNorm",
    "presence_gates",
]
