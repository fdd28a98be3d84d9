"""The training loop: stages freeze and unfreeze, resume equals an uninterrupted run,
non-finite losses stop cleanly, early stopping, seeding, modality dropout."""
import math
from functools import partial

import pytest
import torch

from mmgnn.config import OptimConfig, SchedConfig, TrainConfig, TrainerConfig
from mmgnn.data.graphs import ChainGraph, GridGraph
from mmgnn.data.pipeline import prepare_data
from mmgnn.data.synthetic import make_synthetic
from mmgnn.losses import InfoNCE, MultimodalObjective
from mmgnn.models import GNNBranch, ModalitySkip, MultimodalGNN
from mmgnn.models.convs import SAGELayer
from mmgnn.models.fusion import GatedFusion
from mmgnn.train.checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint
from mmgnn.train.stages import Stage
from mmgnn.train.trainer import (
    NonFiniteLossError,
    Trainer,
    drop_modalities_randomly,
    seed_everything,
)

SPECS = {
    "text": ChainGraph(window=1),
    "image": GridGraph(neighbours=4),
    "audio": ChainGraph(window=2),
}


@pytest.fixture(scope="module")
def data():
    return prepare_data(make_synthetic(n_items=96, seed=3), SPECS)


def build(data, seed=0):
    seed_everything(seed)
    dims = {m: d.dim for m, d in data.dataset.modalities.items()}
    model = MultimodalGNN(
        dims,
        branch=partial(GNNBranch, conv=partial(SAGELayer), hidden_dim=16, num_layers=2),
        skip=partial(ModalitySkip, mode="sum"),
        fusion=partial(GatedFusion),
        embed_dim=16,
        num_classes=data.dataset.num_classes,
    )
    objective = MultimodalObjective(InfoNCE(), fused="classify", fused_weight=0.5)
    return model, objective


def trainer_config(stages, seed=0, lr=3e-3, warmup_fraction=0.1, **train):
    """Small batches on the CPU, no early stopping and no modality dropout unless asked."""
    options = dict(batch_size=32, eval_batch_size=64, patience=0, modality_dropout=0.0,
                   device="cpu", min_steps=0)
    options.update(train)
    return TrainerConfig(
        train=TrainConfig(stages=list(stages), **options),
        optim=OptimConfig(lr=lr),
        sched=SchedConfig(warmup_fraction=warmup_fraction),
        seed=seed,
    )


def make_trainer(data, tmp_path, stages, seed=0, **kwargs):
    model, objective = build(data, seed)
    return Trainer(model, objective, data, trainer_config(stages, seed, **kwargs), tmp_path)


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_frozen_branch_does_not_change_then_trains_after_unfreezing(data, tmp_path):
    stages = [Stage("warmup", 1, freeze=["branches.text"]), Stage("finetune", 1)]
    trainer = make_trainer(data, tmp_path, stages, modality_dropout=0.0, stop_after_epoch=1)
    text0, image0 = snapshot(trainer.model.branches["text"]), snapshot(trainer.model.branches["image"])
    norm_stats0 = {k: v.clone() for k, v in trainer.model.branches["text"].state_dict().items()}
    trainer.fit()
    text1, image1 = snapshot(trainer.model.branches["text"]), snapshot(trainer.model.branches["image"])
    assert all(torch.equal(text0[n], text1[n]) for n in text0), "frozen text branch changed"
    assert any(not torch.equal(image0[n], image1[n]) for n in image0), "image branch did not train"
    for k, v in trainer.model.branches["text"].state_dict().items():
        assert torch.equal(norm_stats0[k], v)
    trainer.config.train.stop_after_epoch = None
    trainer.start_epoch = 1
    trainer.fit()
    text2 = snapshot(trainer.model.branches["text"])
    assert any(not torch.equal(text1[n], text2[n]) for n in text1), "text branch did not unfreeze"
    assert trainer.trainable_per_stage["warmup"] < trainer.trainable_per_stage["finetune"]


def test_resume_gives_the_same_result_as_an_uninterrupted_run(data, tmp_path):
    stages = [Stage("warmup", 1, freeze=["branches.text"]), Stage("finetune", 2)]
    full = make_trainer(data, tmp_path / "full", stages, modality_dropout=0.2)
    full_result = full.fit()

    first = make_trainer(data, tmp_path / "cut", stages, modality_dropout=0.2, stop_after_epoch=2)
    first.fit()
    seed_everything(123)  # a different global RNG state must not matter after resuming
    resumed = make_trainer(data, tmp_path / "cut", stages, modality_dropout=0.2)
    assert resumed.resume()
    result = resumed.fit()

    assert result.best_epoch == full_result.best_epoch
    assert len(result.history) == len(full_result.history) == 3
    for a, b in zip(result.history, full_result.history):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    for (n, p), (_, q) in zip(resumed.model.named_parameters(), full.model.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_same_seed_same_history_and_other_seed_differs(data, tmp_path):
    stages = [Stage("joint", 2)]
    a = make_trainer(data, tmp_path / "a", stages, seed=5).fit()
    b = make_trainer(data, tmp_path / "b", stages, seed=5).fit()
    c = make_trainer(data, tmp_path / "c", stages, seed=6).fit()
    assert a.history == b.history
    assert a.history[-1]["train/total"] != c.history[-1]["train/total"]


class NaNAfterFirstEpoch(MultimodalObjective):
    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.poison = epoch >= 1

    def forward(self, out, batch):
        total, terms = super().forward(out, batch)
        if self.poison:
            total = total * float("nan")
        return total, terms


def test_non_finite_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(data, tmp_path):
    model, _ = build(data)
    objective = NaNAfterFirstEpoch(InfoNCE(), fused="classify")
    trainer = Trainer(model, objective, data, trainer_config([Stage("joint", 3)]), tmp_path)
    with pytest.raises(NonFiniteLossError, match="epoch 2, batch 1"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_early_stopping_counts_only_in_the_last_stage(data, tmp_path):
    stages = [Stage("warmup", 2), Stage("finetune", 6)]
    trainer = make_trainer(data, tmp_path, stages, lr=0.0, patience=2)  # lr 0: no progress
    result = trainer.fit()
    assert result.stopped_early
    assert result.epochs_run == 4  # 2 warm-up epochs + 2 without improvement
    assert (tmp_path / "checkpoints" / "best.pt").exists()


def test_min_steps_multiplies_the_epochs_and_the_patience_of_a_small_training_split(data, tmp_path):
    """96 items (under 64 train) at batch 32: 2 steps per epoch; 2 + 3 epochs give 10 steps,
    so train.min_steps=40 runs each stage 4x (8 + 12 epochs, 40 steps) and patience 2 -> 8."""
    stages = [Stage("warmup", 2), Stage("finetune", 3)]
    trainer = make_trainer(data, tmp_path / "a", stages, min_steps=40)
    assert math.ceil(data.dataset.indices("train").size / 32) == 2 and trainer.epoch_factor == 4
    assert [s.epochs for s in trainer.stages] == [8, 12] and trainer.total_epochs == 20
    result = trainer.fit()
    assert result.epochs_run == 20 and trainer.scheduler.last_epoch == 40
    stopped = make_trainer(data, tmp_path / "b", stages, lr=0.0, patience=2, min_steps=40).fit()
    assert stopped.stopped_early and stopped.epochs_run == 8 + 8  # the warm-up, then 8 without improvement
    assert make_trainer(data, tmp_path / "c", stages, min_steps=10).epoch_factor == 1  # already 10 steps


def test_lr_follows_warmup_cosine_and_temperature_is_clamped(data, tmp_path):
    trainer = make_trainer(data, tmp_path, [Stage("joint", 3)], warmup_fraction=0.34)
    with torch.no_grad():
        trainer.objective.alignment.logit_scale.fill_(10.0)  # beyond ln(100)
    result = trainer.fit()
    lrs = [h["lr"] for h in result.history]
    assert lrs[0] == pytest.approx(3e-3, rel=1e-6)  # warm-up ends at the peak after epoch 1
    assert lrs[0] > lrs[1] > lrs[2]
    assert float(trainer.objective.alignment.logit_scale) <= torch.log(torch.tensor(100.0)) + 1e-6
    assert all("temperature" in h for h in result.history)


def test_modality_dropout_keeps_one_modality_per_item():
    present = torch.tensor([[True, True, True], [True, False, False], [False, True, True]])
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        dropped = drop_modalities_randomly(present, 0.9, g)
        assert not (dropped & ~present).any()  # never adds a modality
        assert dropped.any(dim=1).all()  # every item keeps at least one
    assert torch.equal(drop_modalities_randomly(present, 0.0, g), present)


def test_trainer_rejects_stage_naming_unknown_module(data, tmp_path):
    with pytest.raises(ValueError, match="branches.lyrics.*modules: .*branches.text"):
        make_trainer(data, tmp_path, [Stage("w", 1, freeze=["branches.lyrics"])])


def test_explicit_monitor_and_min_delta(data, tmp_path):
    trainer = make_trainer(data, tmp_path, [Stage("joint", 3)], monitor="fused/acc",
                           min_delta=10.0, patience=2)
    result = trainer.fit()
    assert result.monitor == "val/fused/acc"
    assert result.best_epoch == 0  # nothing beats the first epoch by 10
    assert result.stopped_early and result.epochs_run == 3
    assert result.best_value == result.history[0]["val/fused/acc"]
    with pytest.raises(KeyError, match="not a validation metric"):
        make_trainer(data, tmp_path / "x", [Stage("joint", 1)], monitor="val/nope").fit()


class WithDiagnostic(MultimodalObjective):
    """Adds a constant diagnostic term, as losses add e.g. ``hardneg/floor_share``."""

    def forward(self, out, batch):
        total, terms = super().forward(out, batch)
        return total, {**terms, "diag/share": torch.tensor(0.25)}


class Recorder:
    def __init__(self):
        self.calls = []

    def on_epoch_end(self, epoch, metrics):
        self.calls.append((epoch, dict(metrics)))


def test_history_has_loss_terms_lr_and_temperature_and_callbacks_get_it(data, tmp_path):
    model, _ = build(data)
    objective = WithDiagnostic(InfoNCE(temperature=0.2), fused="classify", fused_weight=0.5)
    recorder = Recorder()
    trainer = Trainer(model, objective, data, trainer_config([Stage("joint", 2)], lr=1e-3),
                      tmp_path, callbacks=[recorder])
    result = trainer.fit()
    assert [e for e, _ in recorder.calls] == [0, 1]
    assert [m for _, m in recorder.calls] == result.history
    for h in result.history:
        assert h["train/diag/share"] == pytest.approx(0.25)
        assert h["train/total"] == pytest.approx(h["train/align"] + 0.5 * h["train/fused_ce"],
                                                 rel=1e-5)
        assert 0.01 <= h["temperature"] <= 1.0
        assert "val/retrieval/mean_recall" in h
    assert result.history[0]["temperature"] != pytest.approx(0.2, abs=1e-9)  # it is learned
    steps = trainer.scheduler.last_epoch  # one scheduler step per batch
    assert steps == 2 * math.ceil(data.dataset.indices("train").size / 32)
    factor = trainer.scheduler.lr_lambdas[0](steps - 1)  # after the last step of epoch 2
    assert result.history[-1]["lr"] == pytest.approx(1e-3 * factor)
    assert result.history[-1]["lr"] < result.history[0]["lr"]


def test_checkpoints_are_plain_data_and_pickled_objects_are_refused(data, tmp_path, pickle_payload):
    trainer = make_trainer(data, tmp_path, [Stage("joint", 2)], stop_after_epoch=1)
    trainer.fit()
    last = tmp_path / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)  # torch's own weights-only loader accepts it
    assert state["epoch"] == 0 and isinstance(state["rng"]["numpy"]["key"], torch.Tensor)

    marker = tmp_path / "payload_ran"
    torch.save({**state, "extra": pickle_payload(marker)}, last)
    resumed = make_trainer(data, tmp_path, [Stage("joint", 2)])
    with pytest.raises(UnsafeCheckpointError, match="last.pt is not a plain-tensor checkpoint"):
        resumed.resume()
    assert not marker.exists(), "the pickled payload ran"


def test_rng_state_round_trip_restores_python_numpy_and_torch():
    import random

    import numpy as np

    from mmgnn.train.checkpoint import rng_state, set_rng_state

    seed_everything(11)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's legacy state
    saved = rng_state()
    first = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    seed_everything(99)
    set_rng_state(saved)
    again = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    assert first == again


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"model": {"w": torch.ones(64)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"best\.pt is not a readable torch checkpoint"):
        load_checkpoint(path)


def test_a_loss_without_the_fused_term_trains_without_running_the_fusion(data, tmp_path):
    """``loss.fused=none``: the step skips fusion and classifier (no gradient reaches them) and,
    with no dropout in the fusion, trains every parameter exactly as a step that ran them and
    threw them away; with the fused term (``build``'s objective) every step fuses."""
    assert make_trainer(data, tmp_path / "classify", [Stage("joint", 1)]).trains_fusion
    params, losses = {}, {}
    for fuse in (True, False):
        seed_everything(0)
        model = MultimodalGNN(
            {m: d.dim for m, d in data.dataset.modalities.items()},
            branch=partial(GNNBranch, conv=partial(SAGELayer), hidden_dim=16, num_layers=2),
            skip=partial(ModalitySkip, mode="sum"), fusion=partial(GatedFusion, dropout=0.0),
            embed_dim=16, num_classes=data.dataset.num_classes,
        )
        objective = MultimodalObjective(InfoNCE(), fused="none")
        trainer = Trainer(model, objective, data, trainer_config([Stage("joint", 1)]), tmp_path / str(fuse))
        assert not trainer.trains_fusion
        trainer.trains_fusion = fuse
        calls = []
        hook = model.fusion.register_forward_hook(lambda *args: calls.append(1))
        losses[fuse] = trainer._train_epoch(0, trainer.stages[0])["train/total"]
        hook.remove()
        assert len(calls) == (math.ceil(len(data.dataset.indices("train")) / 32) if fuse else 0)
        params[fuse] = snapshot(model)
    assert losses[True] == losses[False]
    for name, value in params[True].items():
        assert torch.equal(value, params[False][name]), name
    start = snapshot(build(data)[0].fusion)
    assert start.keys() and all(torch.equal(params[False][f"fusion.{n}"], v) for n, v in start.items())


def test_skipping_a_fusion_with_dropout_changes_the_random_stream_of_later_steps(data, tmp_path):
    """The docs' claim is "the same training up to the random-number stream": a fusion with
    dropout draws random numbers that the skipped step does not, so the branches' later dropout
    masks differ and so do the trained weights (an exact equality would be a false claim)."""
    params = {}
    for fuse in (True, False):
        seed_everything(0)
        model = MultimodalGNN(
            {m: d.dim for m, d in data.dataset.modalities.items()},
            branch=partial(GNNBranch, conv=partial(SAGELayer), hidden_dim=16, num_layers=2, dropout=0.5),
            skip=partial(ModalitySkip, mode="sum"), fusion=partial(GatedFusion, dropout=0.5),
            embed_dim=16, num_classes=data.dataset.num_classes,
        )
        trainer = Trainer(model, MultimodalObjective(InfoNCE(), fused="none"), data,
                          trainer_config([Stage("joint", 1)]), tmp_path / str(fuse))
        trainer.trains_fusion = fuse
        trainer._train_epoch(0, trainer.stages[0])
        params[fuse] = snapshot(model)
    branch = [n for n in params[True] if n.startswith("branches.")]
    assert any(not torch.equal(params[True][n], params[False][n]) for n in branch)


def untrained_fusion_trainer(data, tmp_path, **train):
    """A trainer whose loss never reads the fused output (``loss.fused=none``)."""
    model, _ = build(data)
    objective = MultimodalObjective(InfoNCE(), fused="none")
    return Trainer(model, objective, data, trainer_config([Stage("joint", 1)], **train), tmp_path)


def test_validation_computes_fused_and_gate_metrics_only_when_the_fusion_trains(data, tmp_path):
    def fusion_keys(metrics):
        return sorted(k for k in metrics if "/fused/" in k or "/gates/" in k)

    trained = fusion_keys(make_trainer(data, tmp_path / "classify", [Stage("joint", 1)]).validate())
    assert {"val/fused/acc", "val/fused/map", "val/fused/label_r1", "val/worst_group/fused/acc",
            "val/gates/text/mean", "val/gates/image/mean", "val/gates/audio/mean"} <= set(trained)
    trainer = untrained_fusion_trainer(data, tmp_path / "none")
    calls = []
    trainer.model.fusion.register_forward_hook(lambda *args: calls.append(1))
    val = trainer.validate()
    assert fusion_keys(val) == [] and calls == []  # the fusion did not even run
    assert "val/retrieval/mean_recall" in val


@pytest.mark.parametrize("monitor", ["fused/acc", "val/fused/map", "worst_group/fused/acc", "gates/text/mean"])
def test_monitoring_a_fused_metric_without_training_the_fusion_fails_at_start(data, tmp_path, monitor):
    with pytest.raises(ValueError, match=r"train\.monitor=.*loss\.fused=none"):
        untrained_fusion_trainer(data, tmp_path, monitor=monitor)
    assert not (tmp_path / "checkpoints").exists()
    make_trainer(data, tmp_path, [Stage("joint", 1)], monitor=monitor)  # fine when it trains
