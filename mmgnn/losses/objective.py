"""The training objective: modality alignment plus an optional classifier on the fused embedding."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmgnn.losses.interface import TrainableLoss, check_implements

FUSED_OBJECTIVES = ("classify", "none")
#: ``loss.fused`` choices: the objectives, and ``auto`` (:func:`resolve_fused`).
FUSED_CHOICES = ("auto", *FUSED_OBJECTIVES)


def resolve_fused(fused: str, has_labels: bool) -> str:
    """The fused objective a run trains: ``auto`` is ``classify`` when the dataset has labels
    and ``none`` when it has not (retrieval-only pairs); the others are themselves.

    >>> resolve_fused("auto", has_labels=False), resolve_fused("auto", has_labels=True)
    ('none', 'classify')
    """
    if fused not in FUSED_CHOICES:
        raise ValueError(f"loss.fused must be one of {FUSED_CHOICES}, got {fused!r}")
    if fused == "auto":
        return "classify" if has_labels else "none"
    return fused


class MultimodalObjective(nn.Module):
    """``alignment_weight * align + fused_weight * fused_ce``.

    ``align`` is the alignment loss over the model's per-modality embeddings (with the
    model's ``present`` mask, so modality dropout is honoured); ``fused_ce`` is the
    cross-entropy of ``out.logits`` (the classifier on the fused embedding) over the labelled
    items of the batch (label >= 0). The cross-entropy is left out, not an error, when
    ``fused="none"``, the batch has no labels, no item is labelled or the model has no
    classifier (``out.logits is None``); the run's config is validated before training.

    It is the :class:`~mmgnn.losses.interface.TrainingObjective` the trainer drives:
    ``set_epoch``, ``clamp_`` and ``temperature`` are its alignment loss's.

    Args:
        alignment: an alignment loss (``CosineAlignment``, ``InfoNCE``, ...), called as
            ``alignment(embeddings, present, labels, groups)``; a
            :class:`~mmgnn.losses.interface.TrainableLoss`.
        fused: ``"classify"`` or ``"none"``.
        fused_weight: weight of ``fused_ce``.
        alignment_weight: weight of ``align``.

    >>> from types import SimpleNamespace
    >>> from mmgnn.losses import CosineAlignment, InfoNCE
    >>> z, both = torch.eye(3), torch.ones(3, 2, dtype=torch.bool)
    >>> out = SimpleNamespace(embeddings={"text": z, "image": -z}, present=both,
    ...                       logits=torch.zeros(3, 4))
    >>> total, terms = MultimodalObjective(CosineAlignment(), fused_weight=0.5)(
    ...     out, SimpleNamespace(labels=torch.tensor([0, 1, -1]), groups=None))
    >>> {k: round(float(v), 4) for k, v in terms.items()}  # 2 + 0.5 * ln 4 over the 2 labelled
    {'align': 2.0, 'fused_ce': 1.3863, 'total': 2.6931}
    >>> MultimodalObjective(InfoNCE(temperature=0.5), fused="none").temperature
    0.5
    """

    def __init__(
        self,
        alignment: nn.Module,
        fused: str = "classify",
        fused_weight: float = 1.0,
        alignment_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if fused not in FUSED_OBJECTIVES:
            raise ValueError(f"fused must be one of {FUSED_OBJECTIVES}, got {fused!r}")
        check_implements(alignment, TrainableLoss, "the alignment loss")
        self.alignment = alignment
        self.fused = fused
        self.fused_weight = float(fused_weight)
        self.alignment_weight = float(alignment_weight)

    @property
    def needs_fused(self) -> bool:
        """Whether the loss reads the fused embedding (its classifier's logits); when not, a
        training step may skip the fusion (``MultimodalGNN.forward(batch, fuse=False)``)."""
        return self.fused == "classify"

    @property
    def temperature(self) -> float | None:
        """The alignment loss's temperature, or None when it has none."""
        return self.alignment.temperature

    def set_epoch(self, epoch: int) -> None:
        """Pass the (0-based) epoch to the alignment loss (schedules such as beta warm-up)."""
        self.alignment.set_epoch(epoch)

    def clamp_(self) -> "MultimodalObjective":
        """Clamp the alignment loss's parameters; call after every optimiser step."""
        self.alignment.clamp_()
        return self

    def forward(self, out, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its terms.

        Args:
            out: the model output (``embeddings``, ``present``, ``logits``; ``ModelOutput``).
            batch: the batch (``labels`` int64 ``[B]`` or None, ``groups`` int64 ``[B]``).

        Returns:
            ``(total, terms)``: scalar tensor and ``{"align", "fused_ce" (when computed),
            "total"}`` scalar tensors (with grad; detach before logging), plus the alignment
            loss's ``diagnostics`` (detached, e.g. ``hardneg/floor_share``).
        """
        align = self.alignment(out.embeddings, out.present, batch.labels, batch.groups)
        terms = {"align": align, **getattr(self.alignment, "diagnostics", {})}
        total = self.alignment_weight * align
        labels = batch.labels
        if self.fused == "classify" and labels is not None and out.logits is not None:
            labelled = labels >= 0
            if labelled.any():
                ce = F.cross_entropy(out.logits[labelled].float(), labels[labelled])
                terms["fused_ce"] = ce
                total = total + self.fused_weight * ce
        terms["total"] = total
        return total, terms
