"""text_encoder=minilm: all-MiniLM-L6-v2 inside the text branch, fed by the dataset's token ids.

On a tiny featurized raw example (captions + digit images): the encoder starts as the bundled
checkpoint, staged training (train=staged) keeps it unchanged (and in eval mode) while the text branch is
frozen and change it at half the learning rate afterwards, a dataset without ids fails at start,
and run.py and mmgnn.inference work end to end with it.
"""
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from safetensors.torch import load_file

from mmgnn.config import TrainerConfig, register_configs
from mmgnn.data.folder import load_folder, write_folder
from mmgnn.featurize import ImageFeaturizer, TextFeaturizer, featurize
from mmgnn.inference import TrainedRun
from mmgnn.models.text_encoder import MiniLMTextEncoder, TokenEncodedBranch, minilm_path
from mmgnn.train.job import build_model, build_objective, load_dataset, prepare, run_job
from mmgnn.train.checkpoint import load_checkpoint
from mmgnn.train.optim import unit_of
from mmgnn.train.trainer import Trainer, seed_everything

from conftest import ROOT

# Staged training (train=staged: the text branch frozen, then fine-tuned at half the lr), one
# epoch each.
SMALL = [
    "text_encoder=minilm",
    "train=staged",
    "train.stages.0.epochs=1",
    "train.stages.1.epochs=1",
    "train.min_steps=0",
    "train.batch_size=8",
    "gnn.hidden_dim=16",
    "model.embed_dim=16",
    "train.modality_dropout=0.0",
    "train.robustness.noise_levels=[0.0,0.9]",
    "tracking.enabled=false",
    "train.num_threads=1",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, one_thread):
    """18 raw items (3 classes) featurized: text.npz with ``ids``, image.npz of 4 x 4 patches."""
    from experiments.make_raw_example import make_raw_example

    root = tmp_path_factory.mktemp("minilm")
    manifest = make_raw_example(root / "raw", n_classes=3, per_class=6, seed=0)
    featurizers = {"text": TextFeaturizer(device="cpu"), "image": ImageFeaturizer(size=8, patch=4)}
    featurize(manifest, root / "ds", featurizers, progress=False)
    return root / "ds"


def compose_cfg(folder, overrides=()):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("config", overrides=["data=folder", f"data.path={folder}", *SMALL, *overrides])


def prepared_model(cfg):
    seed_everything(cfg.seed)
    data = prepare(cfg, load_dataset(cfg))
    return data, build_model(cfg, data)


def encoder_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.branches["text"].encoder.named_parameters()}


def test_encoder_starts_as_the_bundled_checkpoint_inside_the_text_branch(folder):
    data, model = prepared_model(compose_cfg(folder))
    branch = model.branches["text"]
    assert isinstance(branch, TokenEncodedBranch) and isinstance(branch.encoder, MiniLMTextEncoder)
    assert model.token_encoded == ("text",) and not isinstance(model.branches["image"], TokenEncodedBranch)
    stored = load_file(minilm_path() / "model.safetensors")
    own = branch.encoder.bert.state_dict()
    assert len(own) == 103
    for name, tensor in own.items():
        assert torch.equal(tensor, stored[name]), name
    inside = {n: p for n, p in model.named_parameters() if n.startswith("branches.text.encoder.")}
    assert sum(p.numel() for p in inside.values()) == 22_713_216  # every MiniLM weight, in the branch
    assert {unit_of(n) for n in inside} == {"branches.text"}  # the stages' unit of the text branch
    # the GNN branch reads the 384-wide MiniLM states (plus the node encoding's columns)
    assert branch.gnn.in_dim == 384 + (model.encoders["text"].dim if "text" in model.encoders else 0)
    batch = next(iter(data.loader("train", 4, shuffle=False)))
    graph = batch.graphs["text"]
    model.eval()
    with torch.no_grad():
        states = branch.encode(graph)
        alone = branch.encoder.encode_nodes(graph.ndata["ids"][: int(graph.batch_num_nodes()[0])],
                                            graph.batch_num_nodes()[:1])
    assert states.shape == (graph.num_nodes(), 384)
    torch.testing.assert_close(states[: alone.shape[0]], alone, atol=1e-5, rtol=1e-4)


def test_budget_counts_the_designed_model_not_the_pretrained_encoder(folder):
    """The featurized x is 384 wide like MiniLM's states, so the budget picks the same size."""
    budget = ["budget=30000", "gnn.hidden_dim=8"]
    _, plain = prepared_model(compose_cfg(folder, [*budget, "text_encoder=none"]))
    _, encoded = prepared_model(compose_cfg(folder, budget))
    assert encoded.branches["text"].out_dim == plain.branches["text"].out_dim != 8
    assert all(p.requires_grad for p in encoded.branches["text"].encoder.parameters())


class Recorder:
    """Encoder weights after every epoch, and the encoder's mode in every training forward."""

    def __init__(self, model):
        self.model, self.after_epoch, self.modes = model, [], [[]]
        model.branches["text"].encoder.register_forward_hook(self.forward_hook)

    def forward_hook(self, module, inputs, output):
        if torch.is_grad_enabled():  # a training step (evaluation runs under no_grad)
            self.modes[-1].append(module.training)

    def on_epoch_end(self, epoch, metrics):
        self.after_epoch.append(encoder_state(self.model))
        self.modes.append([])


def test_staged_training_freezes_then_fine_tunes_the_encoder(folder, tmp_path):
    cfg = compose_cfg(folder)
    assert [s.freeze for s in cfg.train.stages] == [["branches.text"], []]
    assert [dict(s.lr_scale) for s in cfg.train.stages] == [{}, {"branches.text": 0.5}]
    data, model = prepared_model(cfg)
    start = encoder_state(model)
    image_start = model.branches["image"].state_dict()["pre.0.weight"].clone()
    recorder = Recorder(model)
    trainer = Trainer(model, build_objective(cfg), data, TrainerConfig.from_config(cfg), tmp_path, [recorder])
    trainer.fit()
    warmup, finetune = recorder.after_epoch
    for name, value in start.items():
        assert torch.equal(warmup[name], value), f"{name} changed while the text branch was frozen"
    assert not torch.equal(model.branches["image"].state_dict()["pre.0.weight"], image_start)
    changed = [n for n, value in warmup.items() if not torch.equal(finetune[n], value)]
    assert len(changed) >= 0.9 * len(start), f"only {len(changed)} of {len(start)} tensors changed"
    assert any(n.startswith("bert.encoder.layer.5.") for n in changed)
    # frozen: eval mode (no dropout); fine-tuned: train mode
    assert recorder.modes[0] and not any(recorder.modes[0])
    assert recorder.modes[1] and all(recorder.modes[1])
    scales = {g["unit"]: g["lr_scale"] for g in trainer.optimizer.param_groups}
    assert scales["branches.text"] == 0.5 and scales["branches.image"] == 1.0


def test_frozen_encoder_is_deterministic_and_fine_tuned_one_uses_dropout(folder):
    data, model = prepared_model(compose_cfg(folder))
    batch = next(iter(data.loader("train", 4, shuffle=False)))
    branch = model.branches["text"]
    branch.encoder.eval()
    torch.testing.assert_close(branch.encode(batch.graphs["text"]), branch.encode(batch.graphs["text"]))
    branch.encoder.train()
    assert not torch.allclose(branch.encode(batch.graphs["text"]), branch.encode(batch.graphs["text"]))


def test_noise_probe_skips_the_modality_read_from_token_ids(folder, tmp_path, caplog):
    """Noise on the text features x cannot reach a model that reads the token ids: no
    ``noise/text/*`` key (it would be flat), the image modality is still probed."""
    with caplog.at_level(logging.INFO, logger="mmgnn.train.evaluation"):
        metrics = run_job(compose_cfg(folder), tmp_path).test_metrics
    assert not [k for k in metrics if k.startswith("test/noise/text/")]
    assert {"test/noise/image/0.9/retrieval/mean_recall", "test/noise/image/auc/retrieval/mean_recall",
            "test/noise/image/auc/fused/acc", "test/missing/text/fused/acc"} <= set(metrics)
    assert "noise probe skipped for ['text']: the model encodes them from token ids" in caplog.text


def test_dataset_without_token_ids_fails_at_start(folder, tmp_path):
    dataset = load_folder(folder)
    dataset.modalities["text"].ids = None
    write_folder(dataset, tmp_path / "no_ids")
    cfg = compose_cfg(tmp_path / "no_ids")
    with pytest.raises(ValueError, match=r"text_encoder=minilm needs the token ids of modality 'text'"):
        run_job(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_encoder_modality_must_exist(folder, tmp_path):
    with pytest.raises(ValueError, match=r"encodes modality 'caption', which the dataset does not have"):
        run_job(compose_cfg(folder, ["text_encoder.modality=caption"]), tmp_path)


def test_out_of_vocabulary_ids_fail_at_start(folder, tmp_path):
    dataset = load_folder(folder)
    dataset.modalities["text"].ids = dataset.modalities["text"].ids + 40_000
    write_folder(dataset, tmp_path / "bad_ids")
    with pytest.raises(ValueError, match=r"token id \d+, outside the encoder's vocabulary \[0, 30522\)"):
        run_job(compose_cfg(tmp_path / "bad_ids"), tmp_path / "run")


def test_run_py_and_inference_end_to_end(folder, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "data=folder", f"data.path={folder}", "text_encoder=minilm",
         "debug=fast", "tracking.enabled=false", "train.num_threads=1", f"hydra.run.dir={run_dir}",
         "~graph.modalities.audio"],  # inference builds every listed modality's graph
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "test_metrics.json").exists()
    run = TrainedRun.load(run_dir)
    assert run.model.token_encoded == ("text",)
    dataset = load_folder(folder)
    first = run.embed(dataset).embeddings["text"]
    assert np.isfinite(first).all() and first.shape == (dataset.n_items, run.model.embed_dim)
    # the encoder's weights are the checkpoint's (they are part of the model's state)
    saved = load_checkpoint(run_dir / "checkpoints" / "best.pt", "cpu")["model"]
    own = run.model.branches["text"].encoder.state_dict()
    assert len(own) == 103
    for name, tensor in own.items():
        assert torch.equal(tensor, saved[f"branches.text.encoder.{name}"]), name
    # the text embedding depends on the token ids, not on the stored MiniLM states x
    dataset.modalities["text"].x = np.zeros_like(dataset.modalities["text"].x)
    np.testing.assert_allclose(run.embed(dataset).embeddings["text"], first, atol=1e-5)
    dataset.modalities["text"].ids = None
    with pytest.raises(ValueError, match="the run's text_encoder=minilm needs the token ids"):
        run.embed(dataset)
