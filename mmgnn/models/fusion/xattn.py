"""CrossAttentionFusion: crossmodal transformer blocks in the layout of MulT (Tsai et al.,
"Multimodal Transformer for Unaligned Multimodal Language Sequences", ACL 2019)."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmgnn.models.fusion.base import Fusion, Tokens, masked_mean, weighted_sum, zero_missing

ATTEND = ("pair", "all")


def cross_attention(
    attn: nn.MultiheadAttention,
    query: torch.Tensor,
    source: torch.Tensor,
    source_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Multi-head attention of ``query`` over the valid ``source`` tokens with ``attn``'s weights.

    ``softmax(q k^T / sqrt(d_head) masked) v`` per head, then ``attn.out_proj`` (Vaswani et al.
    2017); the same function as ``attn(query, source, source, key_padding_mask=~source_mask)``
    for rows with a valid key, computed batch-first with two ``matmul`` calls: no transposes to
    sequence-first, no float mask, one fused key/value projection. Masked keys get the lowest
    finite score, so a row without any valid key gets a finite uniform average (callers zero it).
    Attention dropout is ``attn.dropout`` in training mode.

    Shapes: ``query`` ``[B, L_t, dim]``, ``source`` ``[B, L_s, dim]``, ``source_mask`` bool
    ``[B, L_s]`` or ``None`` (every key valid) -> ``[B, L_t, dim]``.
    """
    batch, length, dim = query.shape
    heads, sources = attn.num_heads, source.shape[1]
    width = dim // heads
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    # Heads into the batch dimension: one copy each for q and for k, v together.
    q = F.linear(query, weight[:dim], bias[:dim]).view(batch, length, heads, width)
    q = q.transpose(1, 2).reshape(batch * heads, length, width)
    kv = F.linear(source, weight[dim:], bias[dim:]).view(batch, sources, 2, heads, width)
    k, v = kv.permute(2, 0, 3, 1, 4).reshape(2, batch * heads, sources, width).unbind(0)
    scores = torch.baddbmm(  # [B H, L_t, L_s], the scale folded into the product
        q.new_empty(()), q, k.transpose(1, 2), beta=0.0, alpha=width**-0.5
    )
    if source_mask is not None:
        hidden_keys = (~source_mask).repeat_interleave(heads, dim=0).unsqueeze(1)  # [B H, 1, L_s]
        scores = scores.masked_fill(hidden_keys, torch.finfo(scores.dtype).min)
    weights = F.dropout(torch.softmax(scores, dim=-1), attn.dropout, attn.training)
    update = torch.bmm(weights, v).view(batch, heads, length, width).transpose(1, 2).reshape(batch, length, dim)
    return attn.out_proj(update)


def token_mean_weights(mask: torch.Tensor) -> torch.Tensor:
    """``mask / number of valid tokens`` per row: bool ``[B, L]`` -> float ``[B, L]`` (rows
    without a valid token all zero), so that ``weights @ x`` is the masked mean of
    :func:`~mmgnn.models.fusion.base.masked_mean` in one matrix product."""
    weights = mask.float()
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)


def weighted_token_sum(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_l w_bl x_bl``: ``weights`` ``[B, L]``, ``x`` ``[B, L, D]`` -> ``[B, D]``."""
    return torch.bmm(weights.to(x.dtype).unsqueeze(1), x).squeeze(1)


class CrossModalBlock(nn.Module):
    """One pre-LN crossmodal block (MulT Sec. 3.2): the target's tokens attend to a source's.

    ``h = t + Dropout(MHA(LN(t), LN(s), LN(s)))``; ``out = h + Dropout(FF(LN(h)))`` with
    ``FF = Linear(dim, ff_mult dim) -> ReLU -> Dropout -> Linear(ff_mult dim, dim)``.

    Padded source tokens are masked out of the attention. An item with no valid source token
    (source modality missing) has its attention update replaced by zeros, so the block reduces
    to the feed-forward sublayer on the target alone.

    ``attn`` is an ``nn.MultiheadAttention`` holding the attention's parameters (its layout and
    initialisation, so checkpoints of earlier versions load); the computation is
    :func:`cross_attention`.

    Shapes: ``forward(target, source, source_mask)`` with ``target`` ``[B, L_t, dim]``,
    ``source`` ``[B, L_s, dim]`` (``L_s >= 1``), ``source_mask`` bool ``[B, L_s]`` (True =
    real token) -> ``[B, L_t, dim]``. With ``pool_weights`` float ``[B, L_t]`` it returns the
    weighted sum over the target tokens ``[B, dim]`` instead (see :meth:`forward`).
    """

    def __init__(self, dim: int, num_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm_target = nn.LayerNorm(dim)
        self.norm_source = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def can_pool_early(self) -> bool:
        """Whether the last FF layer commutes with a mean over tokens (no active dropout)."""
        return not (self.training and self.drop.p > 0)

    def forward(
        self,
        target: torch.Tensor,
        source: torch.Tensor,
        source_mask: torch.Tensor,
        pool_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The block's output tokens, or with ``pool_weights`` their weighted sum.

        ``pool_weights`` float ``[B, L_t]`` (:func:`token_mean_weights`: the masked mean) gives
        ``sum w (h + W_2 a + b_2) = sum w h + W_2 sum w a + b_2`` (``a`` the FF's hidden
        activations; the weights of a row sum to 1), so the last FF layer runs once per item
        instead of once per token; rows whose weights are all zero give zeros. Only when
        :meth:`can_pool_early`.

        Masks that keep every entry are not applied (no work for fixed-size items).
        """
        has_source = source_mask.any(dim=1)  # [B]
        all_valid = bool(source_mask.all())
        update = cross_attention(
            self.attn, self.norm_target(target), self.norm_source(source), None if all_valid else source_mask
        )
        if not all_valid:
            update = update.masked_fill(~has_source[:, None, None], 0.0)
        h = target + self.drop(update)
        if pool_weights is None:
            return h + self.drop(self.ff(self.norm_ff(h)))
        if not self.can_pool_early():
            raise ValueError("CrossModalBlock: pooling before the last FF layer needs dropout inactive")
        hidden = self.ff[:-1](self.norm_ff(h))
        pooled = weighted_token_sum(pool_weights, h) + self.ff[-1](weighted_token_sum(pool_weights, hidden))
        return pooled.masked_fill((pool_weights == 0).all(dim=1, keepdim=True), 0.0)


class CrossModalTransformer(nn.Module):
    """A stack of :class:`CrossModalBlock`: one direction ``source -> target``.

    The source tokens stay the input-level ones at every block, as in MulT (``Z^[0]_beta``).
    Shapes as :class:`CrossModalBlock`; with ``pool_weights`` the last block returns the
    weighted sum over the target tokens ``[B, dim]``.
    """

    def __init__(self, dim: int, num_heads: int, num_blocks: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CrossModalBlock(dim, num_heads, ff_mult, dropout) for _ in range(num_blocks))

    def forward(
        self,
        target: torch.Tensor,
        source: torch.Tensor,
        source_mask: torch.Tensor,
        pool_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            target = block(target, source, source_mask, pool_weights if last else None)
        return target


class CrossAttentionFusion(Fusion):
    """MulT-style fusion of the modalities' node tokens.

    1. Tokens of each modality: per-modality LayerNorm; padded tokens and the tokens of missing
       modalities set to zero and masked (never attended to); a modality without a token in the
       batch gets one masked zero token (:meth:`~mmgnn.models.fusion.base.ModalityNorm.tokens`).
    2. ``attend="pair"``: one :class:`CrossModalTransformer` per ordered pair ``(source ->
       target)``, ``M (M - 1)`` in all (6 for 3 modalities); the target's ``M - 1`` outputs are
       concatenated per token and projected back to ``dim`` (MulT concatenates the crossmodal
       outputs of one target). ``attend="all"``: one transformer per target whose source is
       the concatenation of all other modalities' tokens (``M`` in all).
    3. Masked mean over the target's tokens -> ``v_m`` ``[B, dim]`` (zero if missing).
    4. Gates ``g_m = sigmoid(w_m . v_m + b_m)``, exactly 0 for a missing modality;
       ``fused = LN(sum_m g_m v_m)``.

    A missing source contributes nothing (see :class:`CrossModalBlock`); a missing target gets
    gate 0. Uses ``tokens``, ``token_mask`` and ``present``; ``pooled`` is not used.

    Args:
        num_modalities: ``M``.
        dim: token size (a multiple of ``num_heads``) and output size.
        num_heads: attention heads.
        num_blocks: crossmodal blocks per direction.
        attend: ``"pair"`` or ``"all"``.
        ff_mult: feed-forward width as a multiple of ``dim``.
        dropout: dropout in attention, feed-forward and on residual branches.

    Shapes: see :mod:`mmgnn.models.fusion.base`.
    """

    reads_tokens = True

    def __init__(
        self,
        num_modalities: int,
        dim: int,
        num_heads: int = 4,
        num_blocks: int = 1,
        attend: Literal[ATTEND] = "pair",
        ff_mult: int = 2,
        dropout: float = 0.1,
    ) -> None:
        if attend not in ATTEND:
            raise ValueError(f"attend must be one of {ATTEND}, got {attend!r}")
        if num_modalities < 2:
            raise ValueError(f"cross-attention needs >= 2 modalities, got {num_modalities}")
        super().__init__(num_modalities, dim)
        self.attend = attend
        if attend == "pair":
            self.directions = [(t, s) for t in range(num_modalities) for s in range(num_modalities) if s != t]
        else:
            self.directions = [(t, None) for t in range(num_modalities)]
        self.streams = nn.ModuleList(
            CrossModalTransformer(dim, num_heads, num_blocks, ff_mult, dropout) for _ in self.directions
        )
        self.merge = (
            nn.ModuleList(nn.Linear((num_modalities - 1) * dim, dim) for _ in range(num_modalities))
            if attend == "pair"
            else None
        )
        self.gates = nn.ModuleList(nn.Linear(dim, 1) for _ in range(num_modalities))
        self.out_norm = nn.LayerNorm(dim)

    def fuse(self, x: Tokens, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised tokens -> ``sum_m g_m v_m`` ``[B, dim]``, gates ``g`` ``[B, M]``.

        Without active dropout (eval mode, or ``dropout=0``) every stream returns its target's
        masked token mean (:meth:`CrossModalBlock.forward` with ``pool_weights``) and ``merge``
        runs on the means: ``mean(merge(u)) = merge(mean(u))``, as merge is linear; the same
        values as merging every token and then pooling, with the per-token work of the last
        FF layer and ``merge`` gone.
        """
        xs, masks = x
        pool_early = all(stream.blocks[-1].can_pool_early() for stream in self.streams)
        pool_weights = [token_mean_weights(mask) if pool_early else None for mask in masks]
        outputs: list[list[torch.Tensor]] = [[] for _ in range(self.num_modalities)]
        for (t, s), stream in zip(self.directions, self.streams):
            if s is None:
                others = [m for m in range(self.num_modalities) if m != t]
                source = torch.cat([xs[m] for m in others], dim=1)
                source_mask = torch.cat([masks[m] for m in others], dim=1)
            else:
                source, source_mask = xs[s], masks[s]
            outputs[t].append(stream(xs[t], source, source_mask, pool_weights[t]))

        pooled_targets, gates = [], []
        for t, outs in enumerate(outputs):
            u = self.merge[t](torch.cat(outs, dim=-1)) if self.merge is not None else outs[0]
            v = zero_missing(u, masks[t].any(dim=1)) if pool_early else masked_mean(u, masks[t])
            pooled_targets.append(v)
            gates.append(torch.sigmoid(self.gates[t](v)).squeeze(-1))
        v = torch.stack(pooled_targets, dim=1)  # [B, M, D]
        g = zero_missing(torch.stack(gates, dim=1), present)
        return weighted_sum(g, v), g
