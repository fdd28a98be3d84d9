"""CrossAttentionFusion: crossmodal transformer blocks in the layout of MulT (Tsai et al.,
"Multimodal Transformer for Unaligned Multimodal Language Sequences", ACL 2019)."""
from __future__ import annotations

import torch
from torch import nn

from mmgnn.models.fusion.base import Fusion, Tokens, masked_mean, weighted_sum, zero_missing

ATTEND = ("pair", "all")


class CrossModalBlock(nn.Module):
    """One pre-LN crossmodal block (MulT Sec. 3.2): the target's tokens attend to a source's.

    ``h = t + Dropout(MHA(LN(t), LN(s), LN(s)))``; ``out = h + Dropout(FF(LN(h)))`` with
    ``FF = Linear(dim, ff_mult dim) -> ReLU -> Dropout -> Linear(ff_mult dim, dim)``.

    Padded source tokens are masked out of the attention. An item with no valid source token
    (source modality missing) would have every key masked, and softmax over no key is NaN: its
    row attends to a dummy first key instead and its attention update is replaced by zeros, so
    the block reduces to the feed-forward sublayer on the target alone.

    Shapes: ``forward(target, source, source_mask)`` with ``target`` ``[B, L_t, dim]``,
    ``source`` ``[B, L_s, dim]`` (``L_s >= 1``), ``source_mask`` bool ``[B, L_s]`` (True =
    real token) -> ``[B, L_t, dim]``.
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

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        has_source = source_mask.any(dim=1)  # [B]
        ignore = ~source_mask
        ignore = torch.cat([ignore[:, :1] & has_source.unsqueeze(1), ignore[:, 1:]], dim=1)
        source = self.norm_source(source)
        update, _ = self.attn(
            self.norm_target(target), source, source, key_padding_mask=ignore, need_weights=False
        )
        update = zero_missing(update, has_source)
        h = target + self.drop(update)
        return h + self.drop(self.ff(self.norm_ff(h)))


class CrossModalTransformer(nn.Module):
    """A stack of :class:`CrossModalBlock`: one direction ``source -> target``.

    The source tokens stay the input-level ones at every block, as in MulT (``Z^[0]_beta``).
    Shapes as :class:`CrossModalBlock`.
    """

    def __init__(self, dim: int, num_heads: int, num_blocks: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CrossModalBlock(dim, num_heads, ff_mult, dropout) for _ in range(num_blocks))

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            target = block(target, source, source_mask)
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
        attend: str = "pair",
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
        """Normalised tokens -> ``sum_m g_m v_m`` ``[B, dim]``, gates ``g`` ``[B, M]``."""
        xs, masks = x
        outputs: list[list[torch.Tensor]] = [[] for _ in range(self.num_modalities)]
        for (t, s), stream in zip(self.directions, self.streams):
            if s is None:
                others = [m for m in range(self.num_modalities) if m != t]
                source = torch.cat([xs[m] for m in others], dim=1)
                source_mask = torch.cat([masks[m] for m in others], dim=1)
            else:
                source, source_mask = xs[s], masks[s]
            outputs[t].append(stream(xs[t], source, source_mask))

        pooled_targets, gates = [], []
        for t, outs in enumerate(outputs):
            u = self.merge[t](torch.cat(outs, dim=-1)) if self.merge is not None else outs[0]
            v = masked_mean(u, masks[t])
            pooled_targets.append(v)
            gates.append(torch.sigmoid(self.gates[t](v)).squeeze(-1))
        v = torch.stack(pooled_targets, dim=1)  # [B, M, D]
        g = zero_missing(torch.stack(gates, dim=1), present)
        return weighted_sum(g, v), g
