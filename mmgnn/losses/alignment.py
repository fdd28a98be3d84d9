"""Alignment losses between the per-modality embeddings of a batch.

Every loss takes ``embeddings`` (modality -> ``[B, D]``), ``present`` (bool ``[B, M]``, columns
in the dict's order), ``labels`` (int64 ``[B]`` or None; a negative label means "unlabelled")
and ``groups`` (int64 ``[B]`` or None) and returns a scalar averaged over modality pairs.

Missing modalities are left out, never counted as zeros: an item lacking modality ``a`` is
no anchor of ``a``, an item lacking ``b`` is neither a positive nor a negative key of ``b``,
and a pair (or direction) without any valid anchor contributes nothing. When nothing at all
is valid the loss is a zero that keeps a ``grad_fn`` (``backward`` works, no NaN).

``pairing`` says what corresponds across modalities:

* ``"item"``: the positive of item ``i``'s modality ``a`` is item ``i``'s modality ``b``; an
  anchor needs both modalities.
* ``"label"``: every same-label item's modality ``b`` is a positive (multi-positive); an
  anchor needs modality ``a`` and at least one present same-label key.

Embeddings are L2-normalised again inside (idempotent on the model's output) and every loss
is computed in float32 with autocast disabled, so bf16 training keeps a stable loss.

After every call ``loss.diagnostics`` holds the loss's per-batch diagnostics (detached scalar
tensors keyed by name, e.g. ``hardneg/floor_share``; empty for losses without any).

Three items whose text and image embeddings agree (``z``, orthonormal rows):

>>> z = torch.eye(3)
>>> both = torch.ones(3, 2, dtype=torch.bool)
>>> float(CosineAlignment()({"text": z, "image": z}, both)), float(CosineAlignment()({"text": z, "image": -z}, both))
(0.0, 2.0)
"""
from __future__ import annotations

from typing import Literal

import itertools
import math
import warnings
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from mmgnn.data.dataset import PAIRINGS
from mmgnn.losses.queue import EmbeddingQueue

MAX_LOGIT_SCALE = math.log(100.0)


def same_label(anchor_labels: torch.Tensor, key_labels: torch.Tensor) -> torch.Tensor:
    """bool ``[A, K]``: anchor and key share a label (negative labels match nothing)."""
    return (anchor_labels[:, None] == key_labels[None, :]) & (anchor_labels[:, None] >= 0)


class _PairwiseAlignment(nn.Module, ABC):
    """Shared input checks, averaging over modality pairs and the epoch counter; the defaults
    of :class:`~mmgnn.losses.interface.TrainableLoss` (no temperature, nothing to clamp)."""

    uses_labels = False  # whether the loss needs labels whatever the pairing

    def __init__(self, pairing: str = "item") -> None:
        super().__init__()
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
        self.pairing = pairing
        self.epoch = 0
        self.diagnostics: dict[str, torch.Tensor] = {}
        self._stats: dict[str, list[torch.Tensor]] = {}

    @property
    def temperature(self) -> float | None:
        """The softmax temperature; ``None``: this loss has none."""
        return None

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss the current (0-based) epoch; schedules read it."""
        self.epoch = int(epoch)

    def clamp_(self) -> "_PairwiseAlignment":
        """Keep learnable loss parameters in range; call after every optimiser step."""
        return self

    def forward(
        self,
        embeddings: dict[str, torch.Tensor],
        present: torch.Tensor,
        labels: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean of the pair terms (see the module docstring); a scalar float32 tensor."""
        names = list(embeddings)
        if len(names) < 2:
            raise ValueError(f"alignment needs at least two modalities, got {names}")
        batch = next(iter(embeddings.values())).shape[0]
        if tuple(present.shape) != (batch, len(names)):
            raise ValueError(
                f"present must be [B, M] = [{batch}, {len(names)}] (columns {names}), "
                f"got {tuple(present.shape)}"
            )
        if labels is None and (self.pairing == "label" or self.uses_labels):
            needs = f"pairing={self.pairing!r}" + (", label_positives=True" if self.uses_labels else "")
            raise ValueError(f"{type(self).__name__} needs labels ({needs}); the batch has none")
        device = present.device
        self._stats = {}
        with torch.autocast(device_type=device.type, enabled=False):
            z = [F.normalize(embeddings[m].float(), dim=-1) for m in names]
            terms = self._pair_terms(names, z, present.bool(), labels, groups)
        self.diagnostics = {k: torch.cat(v).mean() for k, v in self._stats.items() if v}
        self._after_batch(dict(zip(names, (e.detach() for e in z))), present.bool(), labels, groups)
        if not terms:
            return self._zero(embeddings)
        return torch.stack(terms).mean()

    def _record(self, name: str, values: torch.Tensor) -> None:
        """Keep detached per-anchor values ``[A]``; their batch mean is ``diagnostics[name]``."""
        self._stats.setdefault(name, []).append(values.detach().float().reshape(-1))

    def _after_batch(self, z, present, labels, groups) -> None:
        """Called after every forward with the detached normalised embeddings; no-op here."""

    @abstractmethod
    def _pair_terms(
        self,
        names: list[str],
        z: list[torch.Tensor],
        present: torch.Tensor,
        labels: torch.Tensor | None,
        groups: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """Scalar terms to average: one per modality pair (or direction) with valid rows.

        ``z``: float32 L2-normalised ``[B, D]`` per modality in ``names`` order.
        """

    def _zero(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        """A float32 zero connected to every input (and parameter) so backward works."""
        zero = sum(e.float().sum() for e in embeddings.values()) * 0.0
        for p in self.parameters():
            zero = zero + p.float().sum() * 0.0
        return zero


class CosineAlignment(_PairwiseAlignment):
    """``1 - cos(z_a, z_b)`` of corresponding embeddings, the non-contrastive baseline.

    Per unordered modality pair: with ``pairing="item"`` the mean over items having both
    modalities of ``1 - cos(z_a[i], z_b[i])``; with ``pairing="label"`` the mean over every
    same-label pair ``(i, j)`` with ``a`` present for ``i`` and ``b`` for ``j`` of
    ``1 - cos(z_a[i], z_b[j])``. The loss is the mean over pairs with at least one term.

    Args:
        pairing: ``"item"`` or ``"label"``.

    With ``pairing="label"`` items 0 and 1 share a label, so ``text[0]`` should also meet
    ``image[1]`` (orthogonal: cosine 0): of the five same-label pairs (0, 0), (0, 1), (1, 0),
    (1, 1), (2, 2), two are off by 1.

    >>> z, both = torch.eye(3), torch.ones(3, 2, dtype=torch.bool)
    >>> labels = torch.tensor([0, 0, 1])
    >>> round(float(CosineAlignment(pairing="label")({"text": z, "image": z}, both, labels)), 4)
    0.4
    """

    def _pair_terms(self, names, z, present, labels, groups):
        terms = []
        for a, b in itertools.combinations(range(len(z)), 2):
            if self.pairing == "item":
                rows = present[:, a] & present[:, b]
                if rows.any():
                    terms.append((1.0 - (z[a][rows] * z[b][rows]).sum(dim=1)).mean())
            else:
                pairs = same_label(labels, labels) & present[:, a, None] & present[None, :, b]
                if pairs.any():
                    terms.append((1.0 - z[a] @ z[b].T)[pairs].mean())
        return terms


class InfoNCE(_PairwiseAlignment):
    """Symmetric InfoNCE / NT-Xent over in-batch cross-modal similarities.

    For every ordered modality pair ``(a, b)`` (both directions of every unordered pair;
    CLIP, Radford et al. 2021; Oord et al. 2018) anchors are the ``a`` embeddings and keys the
    ``b`` embeddings (plus queued ones). With logits ``l_ij = s * cos(z_a[i], z_b[j])``,
    ``s = exp(logit_scale) = 1 / temperature``, and ``P_i`` the anchor's positive keys,

        loss_i = -1/|P_i| * sum_{p in P_i} log( exp(l_ip) / sum_{k valid} exp(l_ik) ),

    the mean of the log-probabilities over the positives (SupCon's L_out, Khosla et al.
    2020; ALBEF-style multi-positive targets), which is CLIP's cross-entropy when ``|P_i|=1``.
    Anchors without a positive are dropped (SupCon would give NaN). Each direction is the
    mean over its anchors; the loss is the mean over directions with at least one anchor.

    Positives: the same item's key (``pairing="item"``), plus every same-label key when
    ``label_positives``; every same-label key (``pairing="label"``).

    The temperature is stored as a log logit scale as open_clip does: ``logit_scale``
    (an ``nn.Parameter``, or a buffer when ``learn_temperature=False``) starts at
    ``ln(1/temperature)``; :meth:`clamp_` keeps it in ``[0, ln 100]``.

    With ``queue_size > 0`` (MoCo, He et al. 2020; ALBEF) the keys of direction ``(a, b)``
    also include the :class:`~mmgnn.losses.queue.EmbeddingQueue`'s entries of ``b`` that have
    ``b`` (negatives, or positives when same-label under ``pairing="label"`` or
    ``label_positives``); after the loss the batch is enqueued. Both happen in training mode
    only, so the evaluation loss does not depend on the queue.

    Args:
        temperature: initial softmax temperature ``t`` (> 0).
        learn_temperature: learn ``logit_scale`` or keep it fixed.
        label_positives: add same-label items as positives (needs labels).
        queue_size: number of past items kept as extra keys (0: none); a multiple of the
            batch size.
        pairing: ``"item"`` or ``"label"``.

    At ``t = 1`` with orthonormal embeddings that agree, every anchor's positive has logit 1
    and its two negatives 0: ``-log(e / (e + 2)) = log(1 + 2/e)``. When item 2 lacks its image,
    text anchors have one negative left and image anchors are items 0 and 1 only:

    >>> z, both = torch.eye(3), torch.ones(3, 2, dtype=torch.bool)
    >>> loss = InfoNCE(temperature=1.0, learn_temperature=False)
    >>> round(float(loss({"text": z, "image": z}, both)), 4), round(math.log(1 + 2 / math.e), 4)
    (0.5514, 0.5514)
    >>> no_image = torch.tensor([[True, True], [True, True], [True, False]])
    >>> round(float(loss({"text": z, "image": z}, no_image)), 4)  # (log(1 + 1/e) + log(1 + 2/e)) / 2
    0.4324
    >>> round(InfoNCE(temperature=0.07).temperature, 4)
    0.07
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        label_positives: bool = False,
        queue_size: int = 0,
        pairing: str = "item",
    ) -> None:
        super().__init__(pairing)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        scale = torch.tensor(math.log(1.0 / temperature), dtype=torch.float32)
        if learn_temperature:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)
        self.label_positives = bool(label_positives)
        self.uses_labels = self.label_positives
        self.queue_size = int(queue_size)
        self.queue: EmbeddingQueue | None = None

    @property
    def temperature(self) -> float:
        """The current temperature ``1 / exp(logit_scale)``."""
        return float(torch.exp(-self.logit_scale.detach()))

    def clamp_(self) -> "InfoNCE":
        """Clamp ``logit_scale`` to ``[0, ln 100]`` in place (temperature in [0.01, 1])."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
        return self

    def _after_batch(self, z, present, labels, groups) -> None:
        """In training mode with a queue, enqueue the batch after its loss was computed."""
        if self._queue_active():
            self._get_queue(z).enqueue(z, present, labels, groups)

    def _queue_active(self) -> bool:
        return self.queue_size > 0 and self.training

    def _get_queue(self, z: dict[str, torch.Tensor]) -> EmbeddingQueue:
        if self.queue is None:
            first = next(iter(z.values()))
            self.queue = EmbeddingQueue(self.queue_size, first.shape[1], tuple(z))
        return self.queue

    def _pair_terms(self, names, z, present, labels, groups):
        queue = self._get_queue(dict(zip(names, z))) if self._queue_active() else None
        scale = self.logit_scale.float().exp()
        terms = []
        for a, b in itertools.permutations(range(len(z)), 2):
            keys, key_present, key_labels, key_groups, own = self._keys(
                z[b], present[:, b], labels, groups, queue, names[b]
            )
            if self.pairing == "item":
                pos = (own | same_label(labels, key_labels)) if self.label_positives else own
                anchor_ok = present[:, a] & present[:, b]
            else:
                pos = same_label(labels, key_labels)
                anchor_ok = present[:, a]
            pos = pos & key_present[None, :]
            neg = key_present[None, :] & ~pos
            rows = anchor_ok & pos.any(dim=1)
            if not rows.any():
                continue
            sims = z[a][rows] @ keys.T
            anchor_groups = None if groups is None else groups[rows]
            losses = self._anchor_losses(
                sims, sims * scale, pos[rows], neg[rows], anchor_groups, key_groups, scale
            )
            terms.append(losses.mean())
        return terms

    @staticmethod
    def _keys(key_z, key_present, labels, groups, queue, name):
        """Batch keys followed by the queue's; ``own`` bool ``[B, K]`` marks each item's key."""
        batch = key_z.shape[0]
        own = torch.eye(batch, dtype=torch.bool, device=key_z.device)
        if queue is None or len(queue) == 0:
            return key_z, key_present, labels, groups, own
        q_z, q_present, q_labels, q_groups = (t.to(key_z.device) for t in queue.entries(name))
        keys = torch.cat([key_z, q_z.to(key_z.dtype)])
        key_present = torch.cat([key_present, q_present])
        key_labels = None if labels is None else torch.cat([labels, q_labels])
        key_groups = None if groups is None else torch.cat([groups, q_groups])
        own = torch.cat([own, own.new_zeros(batch, len(q_z))], dim=1)
        return keys, key_present, key_labels, key_groups, own

    def _anchor_losses(self, sims, logits, pos, neg, anchor_groups, key_groups, scale):
        """Per-anchor loss ``[A]`` from similarities and masks ``[A, K]`` (see class doc)."""
        valid = pos | neg
        log_norm = logits.masked_fill(~valid, float("-inf")).logsumexp(dim=1, keepdim=True)
        log_prob = logits - log_norm
        return -torch.where(pos, log_prob, 0.0).sum(dim=1) / pos.sum(dim=1)


BETA_SCALES = ("logit", "cosine")


class HardNegativeInfoNCE(InfoNCE):
    """InfoNCE with hardness-weighted, debiased negatives and hard cross-group negatives.

    Robinson et al., "Contrastive Learning with Hard Negative Samples" (ICLR 2021, HCL), with
    the debiasing of Chuang et al., "Debiased Contrastive Learning" (NeurIPS 2020), in the
    authors' form, extended to several positives and to groups. For an anchor ``i`` with
    cosine similarities ``c_ij``, logits ``l_ij = s * c_ij`` (``s = 1/t = exp(logit_scale)``),
    positives ``P_i`` and ``N = |N_i|`` valid negatives ``N_i``:

        h_ij    = beta_e * l_ij  (beta_scale="logit")   or   beta_e * c_ij  ("cosine")
        H_i     = the cross_group_topk negatives j in N_i with group_j != group_i and the
                  largest c_ij (every other-group negative when cross_group_topk = 0)
        u_ij    = exp(h_ij) * (gamma if j in H_i else 1)                        (j in N_i)
        w_ij    = u_ij / mean_{k in N_i} u_ik                  (mean weight over N_i is 1)
        pos_i   = mean_{p in P_i} exp(l_ip)
        Ng_i    = max( (sum_{j in N_i} w_ij exp(l_ij) - tau_plus * N * pos_i) / (1 - tau_plus),
                       N * exp(-s) )
        loss_i  = -1/|P_i| * sum_{p in P_i} log( exp(l_ip) / (sum_{q in P_i} exp(l_iq) + Ng_i) )

    ``beta_scale="logit"`` is the paper's scale: HCL's ``q_beta ~ exp(beta f(x)^T f(x-))``
    with ``f`` normalised and divided by the temperature, i.e. ``exp(beta * l_ij)``, so the
    negative term is ``sum_j exp((1 + beta_e) l_ij)`` up to normalisation. ``"cosine"``
    applies ``beta`` to the raw cosine (at ``t = 0.07`` cosine-scale ``beta = 1`` is
    logit-scale ``beta = 0.07``: almost uniform weights). ``gamma`` up-weights the hardest
    negatives from another group than the anchor (another culture/region); the groups of
    queued keys count as well, so a queue finds hard cross-group negatives that one small
    batch lacks. With ``beta_e = 0``,
    ``tau_plus = 0`` and ``gamma = 1`` the loss equals :class:`InfoNCE` exactly. The weights
    are not detached, as in the authors' code; everything is computed in log space shifted
    by the row's largest logit, so ``s = 100`` does not overflow. ``beta_e`` ramps linearly
    from 0 at epoch 0 to ``beta`` at epoch ``beta_warmup_epochs`` (see :meth:`set_epoch`).

    ``N * exp(-s) = N e^{-1/t}`` is the smallest value the debiased negative term may take;
    an anchor at this floor gets no gradient through its negatives. ``tau_plus`` estimates
    the share of false negatives (same-class items) among unlabelled negatives; with
    ``pairing="label"`` or ``label_positives`` the negatives are known to be of another
    label, so ``tau_plus > 0`` is warned about there.

    Per batch, :attr:`diagnostics` holds (detached, means over anchors with negatives):
    ``hardneg/floor_share`` (share of anchors at the floor), ``hardneg/weight_entropy``
    (entropy of ``w_i / N`` divided by ``log N``: 1 for uniform weights, towards 0 when a few
    negatives carry all the weight; anchors with ``N >= 2``) and ``hardneg/top1_weight``
    (share of the weight on the single heaviest negative). In training mode a warning is
    issued (once per epoch) when a batch's floor share exceeds ``floor_warn_share``.

    Args:
        temperature, learn_temperature, label_positives, queue_size, pairing: as
            :class:`InfoNCE`.
        beta: hardness concentration (0: uniform weights).
        beta_scale: ``"logit"`` (``beta * s * cos``, the paper's) or ``"cosine"``.
        tau_plus: class prior of false negatives among the negatives, in ``[0, 1)``.
        gamma: weight factor (> 0) of the hard negatives from another group (1: off).
        cross_group_topk: how many of the most similar other-group negatives of each anchor
            get ``gamma`` (0: all of them).
        beta_warmup_epochs: epochs over which ``beta`` ramps up from 0 (0: no ramp).
        floor_warn_share: warn when more than this share of a training batch's anchors sit at
            the floor, in ``[0, 1]`` (1: never).

    With ``beta = 0``, ``tau_plus = 0`` and ``gamma = 1`` it is :class:`InfoNCE`; ``beta``
    ramps up over ``beta_warmup_epochs`` as the trainer calls :meth:`set_epoch`:

    >>> z, both = torch.eye(3), torch.ones(3, 2, dtype=torch.bool)
    >>> plain = HardNegativeInfoNCE(temperature=1.0, learn_temperature=False, beta=0.0, gamma=1.0)
    >>> round(float(plain({"text": z, "image": z}, both)), 4)
    0.5514
    >>> ramped = HardNegativeInfoNCE(beta=1.0, beta_warmup_epochs=4)
    >>> ramped.set_epoch(2)
    >>> ramped.current_beta
    0.5
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        beta: float = 0.5,
        beta_scale: Literal[BETA_SCALES] = "logit",
        tau_plus: float = 0.0,
        gamma: float = 2.0,
        cross_group_topk: int = 8,
        beta_warmup_epochs: int = 0,
        floor_warn_share: float = 0.25,
        label_positives: bool = False,
        queue_size: int = 0,
        pairing: str = "item",
    ) -> None:
        super().__init__(temperature, learn_temperature, label_positives, queue_size, pairing)
        checks = {
            "beta must be >= 0": beta >= 0,
            f"beta_scale must be one of {BETA_SCALES}": beta_scale in BETA_SCALES,
            "tau_plus must be in [0, 1)": 0.0 <= tau_plus < 1.0,
            "gamma must be positive": gamma > 0,
            "cross_group_topk must be >= 0": cross_group_topk >= 0,
            "beta_warmup_epochs must be >= 0": beta_warmup_epochs >= 0,
            "floor_warn_share must be in [0, 1]": 0.0 <= floor_warn_share <= 1.0,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            given = dict(beta=beta, beta_scale=beta_scale, tau_plus=tau_plus, gamma=gamma,
                         cross_group_topk=cross_group_topk, beta_warmup_epochs=beta_warmup_epochs,
                         floor_warn_share=floor_warn_share)
            raise ValueError(f"HardNegativeInfoNCE: {'; '.join(failed)} (got {given})")
        if tau_plus > 0 and (pairing == "label" or label_positives):
            warnings.warn(
                f"HardNegativeInfoNCE: tau_plus={tau_plus} with pairing={pairing!r}, "
                f"label_positives={label_positives}: the negatives are known to have another "
                "label, so debiasing subtracts false negatives that do not exist; use tau_plus=0",
                stacklevel=2,
            )
        self.beta, self.beta_scale = float(beta), beta_scale
        self.tau_plus, self.gamma = float(tau_plus), float(gamma)
        self.cross_group_topk = int(cross_group_topk)
        self.beta_warmup_epochs = int(beta_warmup_epochs)
        self.floor_warn_share = float(floor_warn_share)
        self._warned_epoch: int | None = None

    @property
    def current_beta(self) -> float:
        """``beta * min(1, epoch / beta_warmup_epochs)`` (``beta`` without warm-up)."""
        if self.beta_warmup_epochs == 0:
            return self.beta
        return self.beta * min(1.0, self.epoch / self.beta_warmup_epochs)

    def cross_group_hard(
        self, sims: torch.Tensor, neg: torch.Tensor, anchor_groups, key_groups
    ) -> torch.Tensor:
        """bool ``[A, K]``: the set ``H_i`` of the class doc (all False without groups)."""
        if anchor_groups is None or key_groups is None:
            return torch.zeros_like(neg)
        other = neg & (anchor_groups[:, None] != key_groups[None, :])
        k = min(self.cross_group_topk, sims.shape[1])
        if k == 0:
            return other
        top = sims.detach().masked_fill(~other, float("-inf")).topk(k, dim=1).indices
        return other & torch.zeros_like(other).scatter_(1, top, True)

    def negative_weights(
        self,
        sims: torch.Tensor,
        neg: torch.Tensor,
        anchor_groups: torch.Tensor | None = None,
        key_groups: torch.Tensor | None = None,
        scale: torch.Tensor | float = 1.0,
    ) -> torch.Tensor:
        """Importance weights ``w`` ``[A, K]`` of the negatives (0 elsewhere).

        Args:
            sims: cosine similarities ``[A, K]``.
            neg: bool ``[A, K]``, the valid negatives of each anchor.
            anchor_groups: int64 ``[A]`` or None; key_groups: int64 ``[K]`` or None.
            scale: the logit scale ``s`` (used when ``beta_scale="logit"``).
        """
        log_u = self.current_beta * (sims * scale if self.beta_scale == "logit" else sims)
        if self.gamma != 1.0:
            hard = self.cross_group_hard(sims, neg, anchor_groups, key_groups)
            log_u = log_u + math.log(self.gamma) * hard
        log_u = log_u.masked_fill(~neg, torch.finfo(log_u.dtype).min)
        count = neg.sum(dim=1, keepdim=True)
        return torch.softmax(log_u, dim=1) * count * neg

    def _record_weights(self, weights: torch.Tensor, n_neg: torch.Tensor) -> None:
        """Normalised entropy and top-1 share of each anchor's weights (see class doc)."""
        has = n_neg > 0
        p = weights[has] / n_neg[has, None]
        self._record("hardneg/top1_weight", p.amax(dim=1))
        spread = n_neg[has] >= 2
        entropy = -torch.where(p > 0, p * p.clamp_min(1e-30).log(), 0.0).sum(dim=1)
        self._record("hardneg/weight_entropy", entropy[spread] / n_neg[has][spread].log())

    def _anchor_losses(self, sims, logits, pos, neg, anchor_groups, key_groups, scale):
        valid = pos | neg
        shift = logits.masked_fill(~valid, float("-inf")).amax(dim=1, keepdim=True).detach()
        shifted = logits - shift  # <= 0 on valid keys: exp never overflows
        exp_shifted = shifted.masked_fill(~valid, float("-inf")).exp()
        n_neg = neg.sum(dim=1)
        n_pos = pos.sum(dim=1)
        weights = self.negative_weights(sims, neg, anchor_groups, key_groups, scale)
        weighted_neg = (weights * exp_shifted).sum(dim=1)
        pos_mean = torch.where(pos, exp_shifted, 0.0).sum(dim=1) / n_pos
        debiased = (weighted_neg - self.tau_plus * n_neg * pos_mean) / (1.0 - self.tau_plus)
        # log(N e^{-s}) in the shifted frame; -inf without negatives
        log_floor = torch.log(n_neg.float()) - scale - shift.squeeze(1)
        at_floor = debiased <= log_floor.exp()
        tiny = torch.finfo(debiased.dtype).tiny
        log_ng = torch.where(at_floor, log_floor, debiased.clamp_min(tiny).log())
        self._record("hardneg/floor_share", at_floor[n_neg > 0])
        self._record_weights(weights.detach(), n_neg)
        log_pos = shifted.masked_fill(~pos, float("-inf")).logsumexp(dim=1)
        log_denominator = torch.logaddexp(log_pos, log_ng)
        log_prob = shifted - log_denominator[:, None]
        return -torch.where(pos, log_prob, 0.0).sum(dim=1) / n_pos

    def _after_batch(self, z, present, labels, groups) -> None:
        """Enqueue (as InfoNCE), then warn once per epoch when the floor share is too high."""
        super()._after_batch(z, present, labels, groups)
        share = self.diagnostics.get("hardneg/floor_share")
        if (
            self.training
            and share is not None
            and float(share) > self.floor_warn_share
            and self._warned_epoch != self.epoch
        ):
            self._warned_epoch = self.epoch
            warnings.warn(
                f"HardNegativeInfoNCE: {float(share):.0%} of the batch's anchors sit at the "
                f"floor N*exp(-1/t) (epoch {self.epoch + 1}, tau_plus={self.tau_plus}, "
                f"t={self.temperature:.3g}): their negatives get no gradient; lower tau_plus",
                RuntimeWarning,
                stacklevel=2,
            )
