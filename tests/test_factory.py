"""One model factory for training and inference (:mod:`mmgnn.models.factory`).

For every option of ``pe``, ``skip``, ``fusion`` and ``text_encoder`` (each against the default
choice of the others, at tiny sizes), the model training builds (``mmgnn.train.job``) and the
one inference rebuilds from the run's saved config and ``model_meta.json`` have the same
parameter names and shapes, load each other's weights strictly, and give the same outputs on a
batch; likewise with ``pe.combine=add`` and in budget mode (the chosen hidden size travels in
``model_meta.json``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mmgnn.config import group_options
from mmgnn.data.dataset import MultimodalDataset
from mmgnn.models.factory import ModelSummary, create_model
from mmgnn.models.text_encoder import MINILM_VOCAB
from mmgnn.train.job import load_dataset, model_and_summary, prepare, write_model_meta
from mmgnn.train.trainer import seed_everything
from test_run import compose_cfg

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["train.max_items=24", "gnn.hidden_dim=8", "model.embed_dim=8", "gnn.num_layers=1",
         "data.loader.n_items=120"]
CASES = ([[f"pe={o}"] for o in group_options("pe")]
         + [[f"skip={o}"] for o in group_options("skip")]
         + [[f"fusion={o}"] for o in group_options("fusion")]
         + [[f"text_encoder={o}"] for o in group_options("text_encoder")]
         + [["pe=rwse", "pe.combine=add"], ["budget=60000", "gnn.conv.heads=2"]])


def with_token_ids(dataset: MultimodalDataset) -> MultimodalDataset:
    """``dataset`` with token ids for the text modality (what ``mmgnn.featurize`` writes;
    random ids of MiniLM's vocabulary suffice to compare two builds)."""
    text = dataset.modalities["text"]
    ids = np.random.default_rng(0).integers(0, MINILM_VOCAB, size=text.x.shape[0], dtype=np.int64)
    modalities = {**dataset.modalities, "text": replace(text, ids=ids)}
    return replace(dataset, modalities=modalities, _fingerprint=None)


@pytest.fixture(scope="module")
def dataset():
    return with_token_ids(load_dataset(compose_cfg(SMALL)))


@pytest.mark.parametrize("overrides", CASES, ids=lambda o: " ".join(o))
def test_the_model_rebuilt_for_inference_is_the_trained_one(overrides, dataset, tmp_path):
    cfg = compose_cfg(SMALL + overrides)
    seed_everything(0)
    data = prepare(cfg, dataset)
    trained, summary = model_and_summary(cfg, data)
    write_model_meta(tmp_path, summary)
    OmegaConf.save(cfg, tmp_path / "config.yaml")  # as Hydra saves it: .hydra/config.yaml

    saved = OmegaConf.load(tmp_path / "config.yaml")
    seed_everything(1)  # other initial weights: only the loaded state may make them equal
    rebuilt = create_model(saved, ModelSummary.load(tmp_path / "model_meta.json"))

    assert type(rebuilt) is type(trained)
    shapes = {k: tuple(v.shape) for k, v in trained.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(trained.state_dict())  # strict
    batch = data.collator(list(range(8)))
    trained.eval(), rebuilt.eval()
    with torch.no_grad():
        want, got = trained(batch), rebuilt(batch)
    for m in want.embeddings:
        torch.testing.assert_close(got.embeddings[m], want.embeddings[m], rtol=0, atol=0)
    for name in ("fused", "gates", "logits"):
        a, b = getattr(want, name), getattr(got, name)
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=0, atol=0)
    if "budget=60000" in overrides:
        assert summary.gnn_hidden_dim != 8 and summary.gnn_hidden_dim % 2 == 0
    if "text_encoder=minilm" in overrides:
        assert rebuilt.token_encoded == ("text",)


def test_a_summary_from_before_has_pos_and_pe_dims_reads_them_off_the_weights():
    weights = {"encoders.image.token.weight": torch.zeros(8, 5)}
    old = {"modality_dims": {"text": 3, "image": 4}, "num_classes": 2, "gnn_hidden_dim": 16}
    summary = ModelSummary.from_dict(old, weights)
    assert summary == ModelSummary({"text": 3, "image": 4}, 2, {"text": False, "image": True},
                                   {"image": 5}, 16)
    assert ModelSummary.from_dict(summary.to_dict()) == summary
