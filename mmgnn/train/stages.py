"""Staged fine-tuning: which modules train, and at which learning-rate scale, per stage."""
from __future__ import annotations

import torch
from torch import nn

from mmgnn.config import StageConfig as Stage

__all__ = ["Stage", "apply_stage", "check_stages", "frozen_modules", "scale_for", "stage_at"]


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def check_stages(stages: list[Stage], param_names: list[str], units: list[str]) -> None:
    """Every module a stage names must exist; otherwise a clear error listing the modules.

    ``freeze`` takes any prefix of parameter names; ``lr_scale`` takes optimiser units
    (``branches.text``, ``fusion``, ``loss``, ...) or prefixes of them (``branches``).
    """
    if not stages:
        raise ValueError("train.stages is empty: give at least one stage")
    listing = ", ".join(sorted(set(units)))
    for i, stage in enumerate(stages):
        if stage.epochs < 1:
            raise ValueError(f"train.stages[{i}] ({stage.name}): epochs must be >= 1")
        checks = [(p, param_names) for p in stage.freeze]
        checks += [(p, units) for p in stage.lr_scale]
        for prefix, names in checks:
            if not any(_matches(n, prefix) for n in names):
                raise ValueError(
                    f"train.stages[{i}] ({stage.name}) names module {prefix!r}, which this "
                    f"model does not have; modules: {listing}. Override the stages, e.g. "
                    f"train=joint or 'train.stages.{i}.freeze=[]'"
                )


def stage_at(stages: list[Stage], epoch: int) -> tuple[int, Stage]:
    """(index, stage) that epoch ``epoch`` (0-based) belongs to."""
    end = 0
    for i, stage in enumerate(stages):
        end += stage.epochs
        if epoch < end:
            return i, stage
    raise IndexError(f"epoch {epoch} is past the last stage")


def scale_for(name: str, lr_scale: dict[str, float]) -> float:
    """The lr scale of a parameter: the longest matching prefix wins; 1 by default."""
    best, scale = -1, 1.0
    for prefix, value in lr_scale.items():
        if _matches(name, prefix) and len(prefix) > best:
            best, scale = len(prefix), float(value)
    return scale


def apply_stage(
    stage: Stage,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    base_lr: float,
) -> int:
    """Freeze/unfreeze the model's parameters and set each group's lr for ``stage``.

    A frozen parameter has ``requires_grad=False``, so AdamW skips it (no update and no weight
    decay). Returns the number of trainable parameters in this stage.
    """
    for name, param in model.named_parameters():
        param.requires_grad_(not any(_matches(name, p) for p in stage.freeze))
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for i, group in enumerate(optimizer.param_groups):
        group["lr_scale"] = scale_for(group["unit"], stage.lr_scale)
        scheduler.base_lrs[i] = base_lr * group["lr_scale"]
        group["lr"] = scheduler.base_lrs[i] * factor
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def frozen_modules(model: nn.Module, stage: Stage) -> list[nn.Module]:
    """The submodules a stage freezes (kept in eval mode so norms' statistics stay put)."""
    return [m for n, m in model.named_modules() if n and any(_matches(n, p) for p in stage.freeze)]
