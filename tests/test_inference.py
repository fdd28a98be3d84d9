"""A trained run embeds new data with its own statistics and graphs: re-scoring its test split
through ``mmgnn.inference`` reproduces the metrics the run wrote."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
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
         "train.robustness.noise_levels=[]", "tracking.enabled=false", "train.num_threads=1",
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


# ----------------------------------------------------------------------------- raw items (--manifest)


@pytest.fixture(scope="module")
def trained_raw(tmp_path_factory, one_thread):
    """A run trained on a featurized raw example (MiniLM text, EfficientNet-Lite0 image cells,
    log-mel audio): the run folder records the folder's featurize.json."""
    from experiments.make_raw_example import make_raw_example
    from mmgnn.featurize import AudioFeaturizer, EfficientNetLiteFeaturizer, TextFeaturizer, featurize

    tmp = tmp_path_factory.mktemp("inference_raw")
    manifest = make_raw_example(tmp / "raw", n_classes=3, per_class=6, seed=0)
    featurizers = {"text": TextFeaturizer(device="cpu"), "image": EfficientNetLiteFeaturizer(device="cpu"),
                   "audio": AudioFeaturizer(mels=16)}
    featurize(manifest, tmp / "data", featurizers, cache=None, progress=False)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "debug=fast", "data=folder", f"data.path={tmp / 'data'}",
         "gnn.hidden_dim=16", "model.embed_dim=16", "train.robustness.missing=false",
         "train.robustness.noise_levels=[]", "tracking.enabled=false", "train.num_threads=1",
         f"hydra.run.dir={tmp / 'run'}"],
        cwd=tmp, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp


def test_raw_items_embed_as_their_featurized_folder_does(trained_raw, tmp_path):
    """The same raw item through featurize -> folder -> inference and through --manifest gives
    the same embeddings, from a manifest elsewhere with other items, no label and no split."""
    from experiments.make_raw_example import make_raw_example

    run_dir, raw = trained_raw / "run", trained_raw / "raw"
    assert (run_dir / "featurize.json").read_text() == (trained_raw / "data" / "featurize.json").read_text()
    run = TrainedRun.load(run_dir)
    dataset = load_folder(trained_raw / "data", modalities=list(run.modality_dims))
    reference = run.embed(dataset)
    table = pd.read_csv(raw / "items.csv", dtype=str, keep_default_na=False)
    chosen = table.iloc[[7, 0, 12, 3, 16]].copy()  # another order, a subset
    for column in ("image", "audio"):
        chosen[column] = [str(raw / v) if v else "" for v in chosen[column]]
    others = pd.read_csv(make_raw_example(tmp_path / "other", n_classes=2, per_class=3, seed=5),
                         dtype=str, keep_default_na=False)  # new items batched beside them
    for column in ("image", "audio"):
        others[column] = [str(tmp_path / "other" / v) if v else "" for v in others[column]]
    others["item_id"] = "new-" + others["item_id"]
    new = pd.concat([chosen, others])[["item_id", "text", "image", "audio"]]
    new.to_csv(tmp_path / "new.csv", index=False)
    main(["--run", str(run_dir), "--manifest", str(tmp_path / "new.csv"), "--out", str(tmp_path / "emb.npz")])
    rows = [int(np.flatnonzero(dataset.items["item_id"].to_numpy() == i)[0]) for i in chosen["item_id"]]
    with np.load(tmp_path / "emb.npz") as z:
        assert list(z["item_id"][:5]) == list(chosen["item_id"]) and len(z["item_id"]) == 11
        np.testing.assert_array_equal(z["present"][:5], reference.present[rows])
        for m in run.modality_dims:
            np.testing.assert_allclose(z[f"embedding_{m}"][:5], reference.embeddings[m][rows], atol=1e-6)
        np.testing.assert_allclose(z["fused"][:5], reference.fused[rows], atol=1e-6)


def test_manifest_route_needs_a_run_trained_on_featurized_data(trained, trained_raw, tmp_path):
    pd.DataFrame([{"item_id": "x", "text": "a", "image": "", "audio": ""}]).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(SystemExit, match=r"mmgnn\.inference: .*no featurize\.json"):
        main(["--run", str(trained / "run"), "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "e.npz")])
    pd.DataFrame([{"item_id": "x", "text": "a", "image": "nope.png"}]).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(SystemExit, match=r"mmgnn\.inference: .*no column 'audio'"):
        main(["--run", str(trained_raw / "run"), "--manifest", str(tmp_path / "m.csv"),
              "--out", str(tmp_path / "e.npz")])
    assert not (tmp_path / "e.npz").exists()
