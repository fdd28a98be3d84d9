"""AdamW with weight decay on weights only, one parameter group per stage-addressable unit."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def unit_of(name: str) -> str:
    """The module a parameter belongs to for freezing and lr scales.

    ``branches.text.layers.0.conv.weight`` -> ``branches.text``; ``fusion.blocks.0.x`` ->
    ``fusion``; per-modality containers (``branches``, ``skips``, ``heads``, ``readouts``)
    keep the modality name.
    """
    parts = name.split(".")
    if parts[0] in {"branches", "skips", "heads", "readouts"} and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0]


def decays(name: str, param: nn.Parameter) -> bool:
    """Weight decay applies to weight matrices only: not to biases, norms or temperature."""
    return param.ndim >= 2 and not name.endswith("bias")


def param_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Parameter groups keyed by (unit, decays); each carries ``unit`` and ``lr_scale``."""
    groups: dict[tuple[str, bool], dict] = {}
    for name, param in named:
        key = (unit_of(name), decays(name, param))
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "unit": key[0],
                "weight_decay": weight_decay if key[1] else 0.0,
                "lr_scale": 1.0,
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return list(groups.values())


def build_adamw(
    model: nn.Module,
    objective: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) over the model and the loss's own parameters.

    The loss's parameters (the learnable logit scale) form the unit ``loss`` and never decay.
    """
    named = list(model.named_parameters())
    named += [(f"loss.{n}", p) for n, p in objective.named_parameters()]
    return torch.optim.AdamW(
        param_groups(named, weight_decay), lr=lr, betas=tuple(betas), eps=eps
    )
