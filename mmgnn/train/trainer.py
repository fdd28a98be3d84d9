"""The training loop: stages, AdamW + warm-up/cosine, validation, checkpoints, early stopping."""
from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mmgnn import paths
from mmgnn.config import TrainerConfig
from mmgnn.data.batch import MultimodalBatch
from mmgnn.data.pipeline import PreparedData
from mmgnn.losses.interface import TrainingObjective, check_implements
from mmgnn.metrics import is_fusion_metric, monitored_key
from mmgnn.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mmgnn.train.evaluation import collect_outputs, score
from mmgnn.train.optim import build_adamw
from mmgnn.train.schedule import build_warmup_cosine
from mmgnn.train.stages import Stage, apply_stage, check_stages, frozen_modules, stage_at

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class EpochCallback(Protocol):
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch and DGL."""
    import dgl

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dgl.seed(seed)


def choose_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when torch sees a GPU and DGL can put a graph on it, else CPU."""
    import dgl

    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"train.device={requested} but torch sees no CUDA device")
        log.info("device: %s (requested)", device)
        return device
    if torch.cuda.is_available():
        try:
            dgl.graph(([0], [0])).to("cuda")
        except Exception:  # DGL's PyPI wheel is CPU-only
            log.warning(
                "device: cpu (a GPU is visible but this DGL build cannot use it; install "
                "DGL's CUDA wheel for torch 2.2 to train on the GPU)"
            )
            return torch.device("cpu")
        log.info("device: cuda (%s)", torch.cuda.get_device_name(0))
        return torch.device("cuda")
    log.info("device: cpu (no CUDA device visible)")
    return torch.device("cpu")


def drop_modalities_randomly(
    present: torch.Tensor, p: float, generator: torch.Generator
) -> torch.Tensor:
    """Modality dropout: each present modality of an item is hidden with probability ``p``.

    An item always keeps at least one of its modalities (those that would lose all keep
    their original mask). ``present`` bool ``[B, M]`` -> bool ``[B, M]``.
    """
    keep = torch.rand(present.shape, generator=generator) >= p
    dropped = present & keep.to(present.device)
    empty = ~dropped.any(dim=1)
    dropped[empty] = present[empty]
    return dropped


@dataclass
class FitResult:
    """What ``Trainer.fit`` learned: the best epoch and the per-epoch history."""

    best_epoch: int
    best_value: float
    monitor: str
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    trainable_per_stage: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def fuses_in_training(model: nn.Module, objective: TrainingObjective) -> bool:
    """Whether a training step needs the fused embedding: only when the loss reads the
    classifier's logits on it. Otherwise the step runs ``model(batch, fuse=False)``: the fusion
    (most of a step with cross-attention) would get no gradient. Evaluation then skips it too:
    the fused embedding and gates would be those of the random initialisation."""
    return bool(objective.needs_fused) and getattr(model, "classifier", None) is not None


def schedule_factor(epochs: int, steps_per_epoch: int, min_steps: int) -> int:
    """How many times the stages' epochs run so that training takes at least ``min_steps``
    optimiser steps: ``ceil(min_steps / (epochs * steps_per_epoch))``, at least 1. A small
    training split has few batches per epoch (125 items at batch 128: one), so a schedule in
    epochs would give it a handful of steps.

    >>> schedule_factor(20, 1, 200), schedule_factor(20, 7, 200), schedule_factor(20, 10, 200)
    (10, 2, 1)
    >>> schedule_factor(20, 1, 0)
    1
    """
    return max(1, math.ceil(min_steps / max(1, epochs * steps_per_epoch)))


def check_monitor(monitor: str, trains_fusion: bool) -> None:
    """``train.monitor`` must name a metric the run computes: not one of the fused output
    (:func:`~mmgnn.metrics.is_fusion_metric`) when the fusion is not trained."""
    if not trains_fusion and is_fusion_metric(monitor):
        raise ValueError(
            f"train.monitor={monitor!r} is a metric of the fusion (fused/* or gates/*), which is "
            "not computed when the fusion is not trained (loss.fused=none, or a model without "
            "classifier); monitor a retrieval metric (train.monitor=auto) or train the fusion "
            "with loss.fused=classify"
        )


class Trainer:
    """Trains a :class:`~mmgnn.models.MultimodalGNN` with a :class:`MultimodalObjective`.

    Every setting comes from ``config`` (:class:`~mmgnn.config.TrainerConfig`: the ``train``,
    ``optim`` and ``sched`` groups, ``data.pairing`` and the seed), whose schema dataclasses
    hold the only defaults; ``TrainerConfig.from_config(cfg)`` builds it from a run's config.

    Args:
        model: the model.
        objective: its loss, a :class:`~mmgnn.losses.TrainingObjective` (it may own
            parameters: the temperature): ``set_epoch(epoch)`` at the start of every epoch,
            ``clamp_()`` after every optimiser step, ``temperature`` logged per epoch.
        data: prepared dataset (graphs, collator, splits).
        config: the typed settings. ``train.stages``' epochs add up to the run's epochs;
            early stopping (``train.patience``, ``train.min_delta``) counts in the last stage
            only; ``train.device`` is resolved by :func:`choose_device`; bf16 autocast on
            CUDA when ``train.amp``; the seed drives shuffling and modality dropout per epoch
            (resume-safe).
        run_dir: where ``checkpoints/{best,last}.pt`` go.
        callbacks: objects with ``on_epoch_end(epoch, metrics)`` (tracking). ``metrics`` has
            ``train/<term>`` (each loss term averaged over the epoch's batches), ``lr`` (the
            base learning rate after the epoch's last step), ``temperature`` (when the loss
            has one), every ``val/<metric>`` and ``epoch``.

    ``trains_fusion`` (:func:`fuses_in_training`): whether the loss trains the fusion; when not,
    neither training nor evaluation runs it, so no ``fused/*`` or ``gates/*`` metric exists and
    ``train.monitor`` may not name one (a ValueError here, before training). ``monitor``: the
    validation key that chooses the best epoch (:func:`mmgnn.metrics.monitored_key` of
    ``train.monitor`` and ``data.pairing``, resolved once).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: TrainingObjective,
        data: PreparedData,
        config: TrainerConfig,
        run_dir: str | Path,
        callbacks: Sequence[EpochCallback] = (),
    ) -> None:
        train, optim = config.train, config.optim
        if data.dataset.indices("train").size == 0 or data.dataset.indices("val").size == 0:
            raise ValueError("the dataset needs train and val items to train and validate")
        if not 0.0 <= train.modality_dropout < 1.0:
            raise ValueError(
                f"train.modality_dropout must be in [0, 1), got {train.modality_dropout}"
            )
        check_implements(objective, TrainingObjective, "the objective")
        self.model, self.objective, self.data = model, objective, data
        self.config, self.callbacks = config, list(callbacks)
        self.trains_fusion = fuses_in_training(model, objective)
        self.monitor = monitored_key(train.monitor, config.pairing)
        check_monitor(train.monitor, self.trains_fusion)
        if not self.trains_fusion:
            log.info("the loss does not train the fusion (loss.fused=none or no classifier): "
                     "fused/* and gates/* metrics are not computed")
        steps_per_epoch = math.ceil(data.dataset.indices("train").size / train.batch_size)
        self.epoch_factor = schedule_factor(sum(s.epochs for s in train.stages), steps_per_epoch,
                                            train.min_steps)
        self.stages: list[Stage] = [replace(s, epochs=s.epochs * self.epoch_factor) for s in train.stages]
        self.patience = train.patience * self.epoch_factor
        if self.epoch_factor > 1:
            log.info("train.min_steps=%d: %d batches per epoch, so every stage runs %dx its epochs "
                     "(%d in all) and patience is %d", train.min_steps, steps_per_epoch,
                     self.epoch_factor, sum(s.epochs for s in self.stages), self.patience)
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / paths.CHECKPOINT_DIR
        self.device = choose_device(train.device)
        self.model.to(self.device)
        self.objective.to(self.device)
        self.amp = train.amp and self.device.type == "cuda"
        self.optimizer = build_adamw(
            model, objective, optim.lr, optim.weight_decay, tuple(optim.betas), optim.eps
        )
        units = [g["unit"] for g in self.optimizer.param_groups]
        check_stages(self.stages, [n for n, _ in model.named_parameters()] + ["loss"], units)
        self.total_epochs = sum(s.epochs for s in self.stages)
        self.scheduler = build_warmup_cosine(
            self.optimizer,
            self.total_epochs * steps_per_epoch,
            config.sched.warmup_fraction,
            config.sched.min_lr_ratio,
        )
        self.history: list[dict[str, float]] = []
        self.best_value, self.best_epoch, self.bad_epochs = -math.inf, -1, 0
        self.start_epoch = 0
        self.trainable_per_stage: dict[str, int] = {}

    # ----------------------------------------------------------------- checkpoints
    def _state(self, epoch: int) -> dict:
        """Plain data only (see :mod:`mmgnn.train.checkpoint`)."""
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "rng": rng_state(),
        }

    def _save(self, file: str, epoch: int) -> Path:
        return save_checkpoint(self._state(epoch), self.ckpt_dir / file)

    def resume(self) -> bool:
        """Load ``checkpoints/last.pt`` if it exists; training continues after its epoch."""
        path = self.ckpt_dir / paths.LAST_CHECKPOINT
        if not path.exists():
            log.info("train.resume: no checkpoint at %s, starting from epoch 0", path)
            return False
        state = load_checkpoint(path, self.device)
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self.bad_epochs, self.history = state["bad_epochs"], state["history"]
        set_rng_state(state["rng"])
        self.start_epoch = state["epoch"] + 1
        log.info("resumed from %s after epoch %d", path, state["epoch"])
        return True

    def load_best(self) -> None:
        """Put the best checkpoint's weights into the model (for testing)."""
        state = load_checkpoint(self.ckpt_dir / paths.BEST_CHECKPOINT, self.device)
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])

    # ----------------------------------------------------------------- one epoch
    def _train_epoch(self, epoch: int, stage: Stage) -> dict[str, float]:
        """One pass over the train split; the epoch's averaged loss terms, lr and temperature."""
        train, seed = self.config.train, self.config.seed
        self.model.train()
        self.objective.train()
        for module in frozen_modules(self.model, stage):
            module.eval()
        self.objective.set_epoch(epoch)
        shuffle = torch.Generator().manual_seed(seed * 100_003 + epoch)
        dropout_rng = torch.Generator().manual_seed(seed * 100_003 + epoch + 7_919)
        loader = self.data.loader("train", train.batch_size, shuffle=True, generator=shuffle)
        sums: dict[str, float] = {}
        n_batches = 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.total_epochs} [{stage.name}]",
            leave=False,
            disable=not sys.stderr.isatty(),
        )
        for batch in bar:
            batch = batch.to(self.device)
            if train.modality_dropout > 0:
                batch = batch.with_present(
                    drop_modalities_randomly(batch.present, train.modality_dropout, dropout_rng)
                )
            terms = self._step(batch, f"epoch {epoch + 1}, batch {n_batches + 1}")
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            n_batches += 1
            bar.set_postfix(loss=f"{terms.get('total', float('nan')):.4f}")
        metrics = {f"train/{k}": v / max(1, n_batches) for k, v in sums.items()}
        last_step = self.scheduler.last_epoch - 1
        metrics["lr"] = self.config.optim.lr * self.scheduler.lr_lambdas[0](last_step)
        temperature = self.objective.temperature
        if temperature is not None:
            metrics["temperature"] = float(temperature)
        return metrics

    def _step(self, batch: MultimodalBatch, where: str) -> dict[str, float]:
        """One optimiser step on ``batch`` (on the device); returns the objective's terms as floats.

        Raises :class:`NonFiniteLossError` (naming ``where`` and the terms) before the step
        when the loss is NaN or infinite.
        """
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else nullcontext()
        with autocast:
            out = self.model(batch, fuse=self.trains_fusion)
            total, terms = self.objective(out, batch)
        if not torch.isfinite(total):
            raise NonFiniteLossError(
                f"non-finite training loss at {where}: "
                + ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
                + f"; the last good checkpoint is {self.ckpt_dir / paths.LAST_CHECKPOINT}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]],
                self.config.optim.grad_clip,
            )
        self.optimizer.step()
        self.scheduler.step()
        self.objective.clamp_()
        return {k: float(v) for k, v in terms.items()}

    def validate(self) -> dict[str, float]:
        """Every metric on the validation split, keys prefixed ``val/`` (those of the fused
        output only when the fusion is trained)."""
        loader = self.data.loader("val", self.config.train.eval_batch_size)
        outputs = collect_outputs(self.model, loader, self.device, fuse=self.trains_fusion)
        metrics = score(outputs, self.data.dataset.group_names, self.config.pairing)
        return {f"val/{k}": v for k, v in metrics.items()}

    def _monitored(self, val: dict[str, float]) -> float:
        """The value of :attr:`monitor` among the validation metrics ``val``."""
        if self.monitor not in val:
            monitor = self.config.train.monitor
            why = ("the split has no item with two modalities"
                   + (" or no labels" if self.config.pairing == "label" else "")
                   if monitor == "auto" else f"train.monitor={monitor!r} is not a validation metric")
            raise KeyError(f"{self.monitor}: {why}; some are: {', '.join(sorted(val)[:12])}")
        return val[self.monitor]

    # ----------------------------------------------------------------- the loop
    def _enter_stage(self, index: int, stage: Stage) -> None:
        """Freeze/unfreeze and set the lr scales of ``stage``; log what trains."""
        trainable = apply_stage(
            stage, self.model, self.optimizer, self.scheduler, self.config.optim.lr
        )
        self.trainable_per_stage[stage.name] = trainable
        log.info("stage %d/%d %s: %d epochs, frozen %s, %d trainable parameters",
                 index + 1, len(self.stages), stage.name, stage.epochs,
                 list(stage.freeze) or "nothing", trainable)

    def _record(self, epoch: int, metrics: dict[str, float], value: float, last: bool) -> bool:
        """Best/last checkpoints and the early-stopping count; whether ``value`` improved."""
        improved = value > self.best_value + self.config.train.min_delta
        if improved:
            self.best_value, self.best_epoch = value, epoch
            self._save(paths.BEST_CHECKPOINT, epoch)
        if last:
            self.bad_epochs = 0 if improved else self.bad_epochs + 1
        self.history.append(metrics)
        self._save(paths.LAST_CHECKPOINT, epoch)
        return improved

    def fit(self) -> FitResult:
        """Train every stage; validate, checkpoint and early-stop per epoch."""
        t0 = time.perf_counter()
        train = self.config.train
        current, stopped_early = -1, False
        for epoch in range(self.start_epoch, self.total_epochs):
            index, stage = stage_at(self.stages, epoch)
            if index != current:
                self._enter_stage(index, stage)
                current = index
            metrics = self._train_epoch(epoch, stage)
            val = self.validate()
            value = self._monitored(val)
            metrics.update(val)
            metrics["epoch"] = epoch
            improved = self._record(epoch, metrics, value, index == len(self.stages) - 1)
            log.info("epoch %d/%d [%s] loss %.4f  %s %.4f%s", epoch + 1, self.total_epochs,
                     stage.name, metrics.get("train/total", float("nan")), self.monitor, value,
                     "  (best)" if improved else "")
            for callback in self.callbacks:
                callback.on_epoch_end(epoch, metrics)
            if self.patience > 0 and self.bad_epochs >= self.patience:
                log.info("early stopping after epoch %d: no improvement of %s for %d epochs",
                         epoch + 1, self.monitor, self.patience)
                stopped_early = True
                break
            if train.stop_after_epoch is not None and epoch + 1 >= train.stop_after_epoch:
                log.info("train.stop_after_epoch=%d reached", train.stop_after_epoch)
                break
        return FitResult(
            best_epoch=self.best_epoch,
            best_value=self.best_value,
            monitor=self.monitor,
            epochs_run=len(self.history),
            stopped_early=stopped_early,
            history=self.history,
            trainable_per_stage=self.trainable_per_stage,
            seconds=time.perf_counter() - t0,
        )
