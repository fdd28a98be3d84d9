"""What the trainer calls on a loss, written down: :class:`TrainableLoss` and
:class:`TrainingObjective`.

A loss may own state that training moves along: a learnable temperature (InfoNCE's
``logit_scale``, open_clip style), a schedule over epochs (the hard-negative ``beta`` warm-up).
:class:`mmgnn.train.Trainer` drives it through this interface, every step and epoch, with no
``hasattr`` probing:

- ``set_epoch(epoch)`` once at the start of every training epoch (0-based), before its first
  step; a loss without a schedule keeps the number and ignores it;
- ``clamp_()`` after every optimiser step, to keep learnable loss parameters in range (InfoNCE:
  ``logit_scale`` in ``[0, ln 100]``, a temperature in ``[0.01, 1]``); returns the loss;
- ``temperature``: the current softmax temperature as a float, logged per epoch
  (``temperature``), or ``None`` for a loss without one (``CosineAlignment``).

Every alignment loss of :mod:`mmgnn.losses.alignment` is a :class:`TrainableLoss` (their base
class gives the defaults), and so is :class:`~mmgnn.losses.MultimodalObjective`, which passes
each call on to its alignment loss and adds what the trainer needs of an objective
(:class:`TrainingObjective`). A new loss (one class plus one ``conf/loss/*.yaml``) subclasses
that base, or implements the three members itself.

>>> from mmgnn.losses import CosineAlignment, InfoNCE, MultimodalObjective
>>> isinstance(InfoNCE(), TrainableLoss), isinstance(MultimodalObjective(InfoNCE()), TrainingObjective)
(True, True)
>>> round(InfoNCE(temperature=0.5).temperature, 6), CosineAlignment().temperature
(0.5, None)
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class TrainableLoss(Protocol):
    """A loss whose state training moves along (see the module docstring)."""

    @property
    def temperature(self) -> float | None:
        """The current softmax temperature, or ``None`` when the loss has none."""

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every training epoch (0-based), before its first step."""

    def clamp_(self) -> Any:
        """Called after every optimiser step: keep learnable parameters in range; returns self."""


@runtime_checkable
class TrainingObjective(TrainableLoss, Protocol):
    """What :class:`mmgnn.train.Trainer` trains with: a :class:`TrainableLoss` that scores a
    model output (``objective(out, batch) -> (total, terms)``: the scalar to minimise and its
    named terms, logged as ``train/<term>``) and says whether it reads the fused embedding."""

    @property
    def needs_fused(self) -> bool:
        """Whether the loss reads the fused embedding (its classifier's logits); when not, a
        training step skips the fusion (``model(batch, fuse=False)``)."""

    def __call__(self, out: Any, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total loss and its terms."""


#: The members of each protocol, for the errors naming what an object lacks.
MEMBERS: dict[type, tuple[str, ...]] = {
    TrainableLoss: ("temperature", "set_epoch", "clamp_"),
    TrainingObjective: ("temperature", "set_epoch", "clamp_", "needs_fused", "__call__"),
}


def check_implements(obj: object, protocol: type, what: str) -> None:
    """Raise a TypeError naming the members of ``protocol`` that ``obj`` (``what``) lacks.

    >>> check_implements(object(), TrainableLoss, "the alignment loss")
    Traceback (most recent call last):
    ...
    TypeError: the alignment loss (object) is no TrainableLoss: it lacks clamp_, set_epoch, temperature (see mmgnn.losses.interface)
    """
    missing = sorted(m for m in MEMBERS[protocol] if not hasattr(obj, m))
    if missing:
        raise TypeError(f"{what} ({type(obj).__name__}) is no {protocol.__name__}: it lacks "
                        f"{', '.join(missing)} (see {__name__})")
