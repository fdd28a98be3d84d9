"""Warm-up + cosine schedule, AdamW parameter groups and stage bookkeeping."""
import math

import pytest
import torch
from torch import nn

from mmgnn.train.optim import build_adamw, decays, unit_of
from mmgnn.train.schedule import WarmupCosine, build_warmup_cosine
from mmgnn.train.stages import Stage, apply_stage, check_stages, scale_for, stage_at


def test_warmup_is_linear_then_cosine_reaches_floor():
    s = WarmupCosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    assert [s(i) for i in range(10)] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert s(10) == pytest.approx(1.0)
    mid = 10 + 45
    assert s(mid) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(100) == pytest.approx(0.1)
    values = [s(i) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(10, 11)
    with pytest.raises(ValueError, match="min_ratio"):
        WarmupCosine(10, 1, 1.5)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleDict({"text": nn.Linear(3, 3), "image": nn.Linear(3, 3)})
        self.norm = nn.LayerNorm(3)
        self.fusion = nn.Linear(3, 2)


class Temp(nn.Module):
    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(2.0))


def test_units_and_decay_rules():
    assert unit_of("branches.text.layers.0.conv.weight") == "branches.text"
    assert unit_of("fusion.blocks.0.attn.in_proj_weight") == "fusion"
    assert decays("fusion.weight", nn.Parameter(torch.zeros(2, 2)))
    assert not decays("fusion.bias", nn.Parameter(torch.zeros(2)))
    assert not decays("norm.weight", nn.Parameter(torch.zeros(2)))
    opt = build_adamw(Tiny(), Temp(), lr=1e-3, weight_decay=0.1)
    by_name = {n: g for g in opt.param_groups for n in g["names"]}
    assert by_name["branches.text.weight"]["weight_decay"] == 0.1
    assert by_name["branches.text.bias"]["weight_decay"] == 0.0
    assert by_name["norm.weight"]["weight_decay"] == 0.0
    assert by_name["loss.logit_scale"]["weight_decay"] == 0.0
    assert by_name["loss.logit_scale"]["unit"] == "loss"


def test_stage_lookup_and_scales():
    stages = [Stage("a", 2), Stage("b", 3)]
    assert [stage_at(stages, e)[0] for e in range(5)] == [0, 0, 1, 1, 1]
    with pytest.raises(IndexError):
        stage_at(stages, 5)
    assert scale_for("branches.text", {"branches": 0.5, "branches.text": 0.1}) == 0.1
    assert scale_for("fusion", {"branches": 0.5}) == 1.0


def test_check_stages_names_unknown_modules():
    model = Tiny()
    names = [n for n, _ in model.named_parameters()]
    with pytest.raises(ValueError, match="branches.audio.*modules: branches.image"):
        check_stages([Stage("a", 1, freeze=["branches.audio"])], names, ["branches.image"])
    with pytest.raises(ValueError, match="epochs"):
        check_stages([Stage("a", 0)], names, ["fusion"])


def test_apply_stage_freezes_and_scales_lr():
    model, temp = Tiny(), Temp()
    opt = build_adamw(model, temp, lr=1.0, weight_decay=0.0)
    sched = build_warmup_cosine(opt, total_steps=10, warmup_fraction=0.0, min_lr_ratio=0.0)
    n = apply_stage(Stage("w", 1, freeze=["branches.text"], lr_scale={"fusion": 0.25}),
                    model, opt, sched, base_lr=1.0)
    assert not model.branches.text.weight.requires_grad
    assert model.branches.image.weight.requires_grad
    assert n == sum(p.numel() for p in model.parameters()) - 12
    lrs = {g["unit"]: g["lr"] for g in opt.param_groups}
    assert lrs["fusion"] == pytest.approx(0.25) and lrs["branches.image"] == pytest.approx(1.0)
    apply_stage(Stage("f", 1), model, opt, sched, base_lr=1.0)
    assert model.branches.text.weight.requires_grad
    assert {g["unit"]: g["lr"] for g in opt.param_groups}["fusion"] == pytest.approx(1.0)
