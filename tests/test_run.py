"""The main job end to end: every option of every config group, the folder dataset, bad input,
config typos, determinism. Uses ``debug=fast`` shrunk further so each job takes seconds."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class
from omegaconf import OmegaConf

from mmgnn.config import group_options, register_configs
from mmgnn.data.folder import write_folder
from mmgnn.data.synthetic import make_synthetic
from mmgnn.train.job import run_job

from conftest import ROOT, sqlite_store

TINY = [
    "debug=fast",
    "train.max_items=64",
    "gnn.hidden_dim=16",
    "model.embed_dim=16",
    "train.robustness.noise_levels=[0.0,0.9]",
    "tracking.enabled=false",
]


def compose_cfg(overrides):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("config", overrides=TINY + list(overrides))


NOT_SWEPT = {"data": "data=folder needs a dataset folder: the folder tests below",
             "debug": "debug=fast is part of TINY",
             "text_encoder": "text_encoder=minilm needs token ids (a featurized text modality): "
                             "tests/test_text_encoder_model.py"}


def every_other_option() -> list[list[str]]:
    """``[group=option]`` for every option of every group in conf/config.yaml's defaults list
    (and ``$MMGNN_CONFIG_PATH``) other than the default choice, which ``[]`` runs."""
    defaults = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "config.yaml").defaults)
    defaults = [entry for entry in defaults if isinstance(entry, dict)]
    chosen = {group: option for entry in defaults for group, option in entry.items()}
    return [[]] + [[f"{group}={option}"] for group, default in chosen.items() if group not in NOT_SWEPT
                   for option in group_options(group) if option != default]


OPTIONS = every_other_option() + [
    ["graph/builder@graph.modalities.image=knn", "graph.modalities.image.k=3"],
    ["model.readout=attention", "gnn.norm=batch"],
    ["model.projection=mlp", "model.readout=max"], ["model.projection=linear", "model.readout=sum"],
    ["fusion=xattn", "fusion.attend=all", "fusion.num_blocks=2"],
    ["loss=infonce", "loss.alignment.label_positives=true", "loss.alignment.queue_size=64"],
    ["loss=hardneg", "loss.fused=none"],
    ["data.pairing=label"],
    ["data.standardize=false", "graph.self_loops=true"],
    # The other datasets (no text modality in digits and synthetic_positional: the default
    # joint stage runs on them, no flag needed).
    ["data=synthetic_hard"],
    ["data=synthetic_positional"],
    ["data=digits"],
]


def test_datasets_choose_their_training_and_encodings_and_the_command_line_wins():
    def chosen(overrides):
        register_configs()
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
            cfg = compose("config", overrides=overrides)
        return [s.name for s in cfg.train.stages], get_class(cfg.pe.default._target_).kind

    assert chosen([]) == (["joint"], "sinusoidal")  # pe=auto: sinusoidal where pos is
    assert chosen(["data=digits"]) == (["joint"], "index")
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        digits = compose("config", overrides=["data=digits"])
    assert sorted(digits.graph.modalities) == ["image", "rows"]  # its own modalities: no warning
    # its validation winner (docs/results/suite_defaults.md), not the global defaults
    assert (digits.model.readout, digits.train.modality_dropout) == ("query", 0.5)
    assert chosen(["data=synthetic_positional"]) == (["joint"], "sinusoidal")
    assert chosen(["data=digits", "train=staged", "pe=none"]) == (["warmup", "finetune"], "none")
    # a folder gets the suite's defaults: no data-specific choice
    assert chosen(["data=folder", "data.path=/nowhere"]) == (["joint"], "sinusoidal")


@pytest.mark.parametrize("overrides", OPTIONS, ids=lambda o: " ".join(o) or "defaults")
def test_every_option_runs_end_to_end(overrides, tmp_path):
    cfg = compose_cfg(overrides)
    result = run_job(cfg, tmp_path)
    assert np.isfinite(result.value)
    payload = json.loads((tmp_path / "test_metrics.json").read_text())
    assert payload["monitor"].startswith("val/")
    metrics = payload["metrics"]
    assert "test/retrieval/map" in metrics
    assert any(k.startswith("test/missing/") for k in metrics)
    assert any(k.startswith("test/noise/") and "/auc/" in k for k in metrics)
    if cfg.loss.fused != "none":  # auto: classify, the synthetic data has labels
        assert 0.0 <= metrics["test/fused/acc"] <= 1.0
        # the validation split's modality-alone scores at the best epoch (what the suite ranks)
        alone = [v for k, v in metrics.items() if k.startswith("best_val/missing/") and k.endswith("/fused/acc")]
        assert alone and all(0.0 <= v <= 1.0 for v in alone)
    else:
        assert "test/fused/acc" not in metrics
    assert (tmp_path / "checkpoints" / "best.pt").exists()
    if cfg.data.standardize:
        assert (tmp_path / "standardizer.npz").exists()
    else:
        assert not (tmp_path / "standardizer.npz").exists()


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    a = run_job(compose_cfg(["seed=3"]), tmp_path / "a").test_metrics
    b = run_job(compose_cfg(["seed=3"]), tmp_path / "b").test_metrics
    keep = lambda m: {k: v for k, v in m.items() if not k.startswith(("time/", "latency/", "memory/"))}  # noqa: E731
    assert keep(a) == keep(b)


def test_folder_dataset_trains_like_the_synthetic_one(tmp_path):
    write_folder(make_synthetic(n_items=120, seed=1), tmp_path / "ds")
    cfg = compose_cfg(["data=folder", f"data.path={tmp_path / 'ds'}"])
    result = run_job(cfg, tmp_path / "run")
    assert np.isfinite(result.value)


def test_folder_dataset_without_labels_trains_with_no_flags(tmp_path):
    """Retrieval-only pairs (no label column, ``data.pairing=item``): ``loss.fused=auto`` trains
    no classifier, so the defaults run; no fused metric exists, retrieval is scored."""
    data = make_synthetic(n_items=120, seed=1)
    data.labels, data.label_names = None, None
    write_folder(data, tmp_path / "ds")
    assert "label" not in (tmp_path / "ds" / "items.csv").read_text().splitlines()[0]
    cfg = compose_cfg(["data=folder", f"data.path={tmp_path / 'ds'}"])
    result = run_job(cfg, tmp_path / "run")
    assert result.monitor == "val/retrieval/mean_recall" and np.isfinite(result.value)
    assert 0.0 <= result.test_metrics["test/retrieval/mean_recall"] <= 1.0
    assert not any("fused/" in k for k in result.test_metrics)
    with pytest.raises(ValueError, match="loss.fused=classify needs labels"):
        run_job(compose_cfg(["data=folder", f"data.path={tmp_path / 'ds'}", "loss.fused=classify"]),
                tmp_path / "classify")


def test_folder_dataset_with_other_modality_names(tmp_path, caplog):
    data = make_synthetic(n_items=90, seed=2)
    data.modalities = {new: data.modalities[old] for new, old in
                       (("lyrics", "text"), ("cover", "image"), ("melody", "audio"))}
    for new, m in data.modalities.items():
        m.name = new
    write_folder(data, tmp_path / "ds")
    cfg = compose_cfg(["data=folder", f"data.path={tmp_path / 'ds'}", "train.stages.0.freeze=[]",
                       "+graph/builder@graph.modalities.lyrics=chain"])
    result = run_job(cfg, tmp_path / "run")
    assert np.isfinite(result.value)
    assert "which this dataset does not have" in caplog.text
    assert any(k.startswith("test/lyrics_to_cover/") for k in result.test_metrics)


def test_folder_dataset_with_given_edges(tmp_path):
    from mmgnn.data.graphs import ChainGraph

    data = make_synthetic(n_items=90, seed=5)
    text = data.modalities["text"]
    src, dst, edge_ptr = ChainGraph(window=1).edges(text)
    text.edge_index = np.stack([src.numpy(), dst.numpy()])
    text.edge_ptr = edge_ptr.numpy()
    write_folder(data, tmp_path / "ds")
    cfg = compose_cfg(["data=folder", f"data.path={tmp_path / 'ds'}",
                       "data.modalities=[text,image,audio]", "graph/builder@graph.modalities.text=given"])
    result = run_job(cfg, tmp_path / "run")
    assert np.isfinite(result.value)


def test_structured_config_rejects_typos_and_wrong_types():
    with pytest.raises(Exception, match="epochs"):
        compose_cfg(["train.stages.0.epochs=abc"])
    with pytest.raises(Exception, match="batch_sise"):
        compose_cfg(["train.batch_sise=3"])


@pytest.mark.parametrize("override, message", [
    ("gnn.hidden_dim=abc", "gnn.hidden_dim='abc': mmgnn.models.GNNBranch expects int"),
    ("gnn.conv.heads=2.5", "gnn.conv.heads=2.5: mmgnn.models.convs.GATLayer expects int"),
    ("loss.alignment.temperature=high", "loss.alignment.temperature='high'"),
    ("+gnn.conv.aggregator=mean", "GATLayer takes no parameter 'aggregator'"),
])
def test_object_groups_are_checked_against_their_constructors(override, message, tmp_path):
    with pytest.raises(ValueError, match=re.escape(message)):
        run_job(compose_cfg([override]), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def run_cli(args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def test_bad_dataset_fails_with_clear_error_and_failed_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    folder = tmp_path / "bad"
    write_folder(make_synthetic(n_items=60, seed=0), folder)
    with np.load(folder / "image.npz") as z:
        arrays = dict(z)
    arrays["x"][5, 0] = np.nan
    np.savez(folder / "image.npz", **arrays)
    uri = sqlite_store(tmp_path / "mlflow.db")
    proc = run_cli(
        [*TINY[:-1], "data=folder", f"data.path={folder}", f"tracking.uri={uri}",
         "tracking.experiment=bad", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "image.npz" in proc.stderr and "not finite" in proc.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("bad").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "DatasetError" in runs[0].data.tags["mmgnn.error"]
    assert not (tmp_path / "run" / "test_metrics.json").exists()


def test_cli_prints_summary_and_writes_metrics(tmp_path):
    proc = run_cli([*TINY, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test retrieval per direction" in proc.stdout
    assert "missing" in proc.stdout and "complexity" in proc.stdout
    assert (tmp_path / "run" / "test_metrics.json").exists()
    saved = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")
    assert saved.gnn.conv._target_.endswith("GATLayer")


def test_resume_continues_the_same_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = sqlite_store(tmp_path / "mlflow.db")
    common = [*TINY[:-1], f"tracking.uri={uri}", "tracking.experiment=resume",
              f"hydra.run.dir={tmp_path / 'run'}"]
    first = run_cli([*common, "train.stop_after_epoch=1"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli([*common, "train.resume=true"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["mmgnn.resumed"] == "true"
    assert runs[0].data.params["train.resume"] == "False"  # params stay those of the first start
    # The run ends by printing its folder, its MLflow page and the UI command, with this interpreter.
    run = runs[0]
    assert f"run folder: {tmp_path / 'run'}" in second.stdout
    assert (f"MLflow run: http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}"
            f"/runs/{run.info.run_id}") in second.stdout
    assert f"open the UI: {sys.executable} -m mlflow ui --backend-store-uri {uri} --port 5000" in second.stdout
    history = client.get_metric_history(runs[0].info.run_id, "val/retrieval/mean_recall")
    assert sorted(m.step for m in history) == [0, 1]


@pytest.mark.parametrize("gnn", ["mlp", "gat", "gin"])
def test_budget_mode_matches_the_parameter_count(gnn):
    from mmgnn.models import count_parameters
    from mmgnn.train.job import build_model, load_dataset, prepare

    cfg = compose_cfg([f"gnn={gnn}", "budget=60000"])
    model = build_model(cfg, prepare(cfg, load_dataset(cfg)))
    assert abs(count_parameters(model) - 60_000) / 60_000 < 0.05
    if gnn == "gat":
        assert model.branches["text"].out_dim % cfg.gnn.conv.heads == 0


def test_tracking_options_name_and_checkpoint(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = sqlite_store(tmp_path / "mlflow.db")
    proc = run_cli([*TINY[:-1], f"tracking.uri={uri}", "tracking.experiment=opts",
                    "tracking.run_name=my-run", "tracking.log_checkpoint=false",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("opts").experiment_id])
    assert run.info.run_name == "my-run" and run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "test_metrics.json" in artifacts and "checkpoints" not in artifacts
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()  # kept locally all the same


@pytest.mark.parametrize("keep", [True, False])
def test_run_job_keeps_freed_memory_only_when_configured(keep, tmp_path, monkeypatch):
    import mmgnn.train.job as job

    calls = []
    monkeypatch.setattr(job, "keep_freed_memory", lambda: calls.append("keep") or True)
    monkeypatch.setattr(job, "restore_malloc_defaults", lambda: calls.append("restore") or True)
    run_job(compose_cfg([f"train.keep_freed_memory={str(keep).lower()}"]), tmp_path)
    assert calls == (["keep"] if keep else ["restore"])  # false undoes an earlier job's setting
