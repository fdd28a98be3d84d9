"""A trained run embeds new data with its own statistics and graphs: re-scoring its test split
through ``mmgnn.inference`` reproduces the metrics the run wrote."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmgnn.data.folder import load_folder, write_folder
from mmgnn.data.normalize import Standardizer
from mmgnn.data.synthetic import make_synthetic
from mmgnn.inference import TrainedRun, main
from mmgnn.train.checkpoint import UnsafeCheckpointError
from mmgnn.train.evaluation import SplitOutputs, score

from conftest import ROOT

MODALITIES = ["text", "image", "audio"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inference")
    write_folder(make_synthetic(n_items=90, seed=4), tmp / "data")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "debug=fast", "data=folder",
         f"data.path={tmp / 'data'}", "data.modalities=[text,image,audio]", "gnn.hidden_dim=16",
         "model.embed_dim=16", "budget=30000", "train.robustness.missing=false",
         "train.robustness.noise_levels=[]", "tracking.enabled=false",
         f"hydra.run.dir={tmp / 'run'}"],
        cwd=tmp, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp


def test_rescoring_the_test_split_reproduces_the_run_metrics(trained):
    run = TrainedRun.load(trained / "run")
    dataset = load_folder(trained / "data", modalities=MODALITIES)
    out = run.embed(dataset)
    test = dataset.indices("test")
    sub = SplitOutputs(
        embeddings={m: v[test] for m, v in out.embeddings.items()},
        present=out.present[test], fused=out.fused[test], gates=out.gates[test],
        logits=out.logits[test], labels=dataset.labels[test], groups=dataset.groups[test],
        index=test,
    )
    metrics = score(sub, dataset.group_names, "item")
    logged = json.loads((trained / "run" / "test_metrics.json").read_text())["metrics"]
    for key in ("retrieval/mean_recall", "retrieval/map", "fused/acc", "text_to_image/r1"):
        assert metrics[key] == pytest.approx(logged[f"test/{key}"], abs=1e-6), key


def test_statistics_are_the_runs_not_refitted(trained):
    run = TrainedRun.load(trained / "run")
    dataset = load_folder(trained / "data", modalities=MODALITIES)
    train_fit = Standardizer.fit(dataset, dataset.indices("train"))
    all_fit = Standardizer.fit(dataset, np.arange(dataset.n_items))
    for m in MODALITIES:
        np.testing.assert_allclose(run.standardizer.state[m][0], train_fit.state[m][0], rtol=1e-6)
        assert not np.allclose(run.standardizer.state[m][0], all_fit.state[m][0])


def test_cli_writes_embeddings_and_rejects_other_modalities(trained, tmp_path):
    out = tmp_path / "emb.npz"
    main(["--run", str(trained / "run"), "--data", str(trained / "data"), "--out", str(out)])
    with np.load(out) as z:
        assert z["embedding_text"].shape == (90, 16) and z["fused"].shape[0] == 90
        assert list(z["item_id"][:2]) == ["item00000", "item00001"]
    run = TrainedRun.load(trained / "run")
    other = make_synthetic(n_items=30, seed=1)
    other.modalities.pop("audio")
    with pytest.raises(ValueError, match="trained on modalities"):
        run.embed(other)
    with pytest.raises(FileNotFoundError, match="not a finished mmgnn run"):
        TrainedRun.load(tmp_path)


def test_a_checkpoint_with_pickled_objects_is_refused_not_unpickled(trained, tmp_path, pickle_payload):
    run_dir = tmp_path / "run"
    shutil.copytree(trained / "run", run_dir)
    best = run_dir / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)  # what the run wrote is plain data
    marker = tmp_path / "payload_ran"
    torch.save({**state, "model": pickle_payload(marker)}, best)
    with pytest.raises(UnsafeCheckpointError, match=r"best\.pt is not a plain-tensor checkpoint"):
        TrainedRun.load(run_dir)
    with pytest.raises(SystemExit, match=r"mmgnn\.inference: .*best\.pt is not a plain-tensor"):
        main(["--run", str(run_dir), "--data", str(trained / "data"),
              "--out", str(tmp_path / "emb.npz")])
    assert not marker.exists(), "the pickled payload ran"
    assert not (tmp_path / "emb.npz").exists()
