"""MLflow tracking: params, hashes, locked-database retries, and multirun sweeps through every
launcher (basic, joblib, submitit local) and against a real ``mlflow server``: one parent,
nested children, resumable sweeps, failed jobs recorded as FAILED."""
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from mmgnn.tracking.params import config_hash, config_params, flatten, run_name, shorten
from mmgnn.tracking.store import retry_locked

from conftest import ROOT

TINY = [
    "debug=fast",
    "train.max_items=48",
    "gnn.hidden_dim=16",
    "model.embed_dim=16",
    "train.robustness.missing=false",
    "train.robustness.noise_levels=[]",
    "train.num_threads=1",
]


def test_flatten_and_params_use_dot_keys():
    cfg = OmegaConf.create({"gnn": {"hidden_dim": 64, "conv": {"heads": 4}},
                            "train": {"stages": [{"epochs": 3, "freeze": ["branches.text"]}]}})
    flat = flatten(cfg)
    assert flat["gnn.conv.heads"] == 4
    assert flat["train.stages.0.freeze"] == ["branches.text"]
    assert config_params(cfg)["train.stages.0.freeze"] == '["branches.text"]'


def test_long_values_are_shortened_visibly_not_dropped():
    text = shorten("x" * 10_000)
    assert len(text) == 6000 and text.endswith("[truncated; see config.yaml artifact]")
    assert shorten("short") == "short"


def test_config_hash_ignores_tracking_but_not_seed():
    base = OmegaConf.create({"seed": 0, "gnn": {"h": 1}, "tracking": {"experiment": "a"}})
    other_tracking = OmegaConf.merge(base, {"tracking": {"experiment": "b"}})
    other_seed = OmegaConf.merge(base, {"seed": 1})
    assert config_hash(base) == config_hash(other_tracking)
    assert config_hash(base) != config_hash(other_seed)
    assert run_name({"gnn": "gat", "skip": "sum", "fusion": "xattn", "loss": "hardneg"}, 1) == \
        "gat-sum-xattn-hardneg-s1"


def test_retry_locked_retries_only_on_a_locked_database():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    assert retry_locked(flaky) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        retry_locked(lambda: (_ for _ in ()).throw(ValueError("other")))


def sweep(tmp_path, uri, *extra, name="sweep", check=True):
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", *TINY, f"tracking.uri={uri}",
         "tracking.experiment=test", f"hydra.sweep.dir={tmp_path / name}", *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def runs_of(uri):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("mmgnn.role") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def check_two_by_two(uri, parents, children):
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    got = sorted((c.data.params["skip.mode"], c.data.params["seed"]) for c in children)
    assert got == [("none", "0"), ("none", "1"), ("sum", "0"), ("sum", "1")]
    assert {c.info.run_name for c in children} == {
        f"gat-{s}-xattn-hardneg-s{i}" for s in ("none", "sum") for i in (0, 1)}
    for c in children:
        assert 0.0 <= c.data.metrics["test/retrieval/mean_recall"] <= 1.0
        assert "best_epoch" in c.data.metrics and c.data.params["gnn.name"] == "gat"
        assert f"skip={c.data.params['skip.mode']}" in c.data.tags["mmgnn.overrides"]


@pytest.mark.parametrize("launcher", ["basic", "local_parallel", "local_submitit"])
def test_two_by_two_sweep_nests_four_finished_runs_under_one_parent(tmp_path, launcher):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = sweep(tmp_path, uri, f"hydra/launcher={launcher}", "skip=none,sum", "seed=0,1")
    assert "experiments.report --parent" in proc.stdout
    client, parents, children = runs_of(uri)
    check_two_by_two(uri, parents, children)
    if launcher == "basic":
        # Re-launching skips the FINISHED configurations; force re-runs them.
        sweep(tmp_path, uri, "skip=none,sum", "seed=0,1", name="again")
        _, parents, children = runs_of(uri)
        assert len(parents) == 2 and len(children) == 4
        newest = max(parents, key=lambda r: r.info.start_time)
        reused = [c for c in children
                  if c.data.tags.get(f"mmgnn.reused_by.{newest.info.run_id}") == "1"]
        assert len(reused) == 4
        sweep(tmp_path, uri, "skip=none", "seed=0", "tracking.force=true", name="forced")
        _, _, children = runs_of(uri)
        assert len(children) == 5


def test_a_failing_job_is_failed_in_mlflow_and_the_sweep_exits_non_zero(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = sweep(tmp_path, uri, "train.stages.0.freeze=[branches.text],[branches.nope]",
                 check=False)
    assert proc.returncode != 0
    _, parents, children = runs_of(uri)
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FAILED", "FINISHED"]
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "branches.nope" in failed.data.tags["mmgnn.error"]
    assert parents[0].info.status == "FAILED"
    assert parents[0].data.tags["mmgnn.jobs.failed"] == "1"
    # The sweep's report counts and names the failed job.
    from experiments.report import main as report

    report(["--parent", parents[0].info.run_id, "--tracking-uri", uri, "--out",
            str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "1 of 2 runs did not finish" in text
    assert failed.info.run_name in (tmp_path / "report" / "failed.md").read_text()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if server.poll() is not None:
                raise RuntimeError("mlflow server exited")
            time.sleep(0.5)
    else:
        server.kill()
        raise RuntimeError("mlflow server did not start")
    yield uri
    server.terminate()
    server.wait(timeout=30)


def test_sweep_against_a_real_mlflow_server(tmp_path, mlflow_server):
    sweep(tmp_path, mlflow_server, "skip=none,sum", "seed=0,1", "tracking.log_plots=true")
    client, parents, children = runs_of(mlflow_server)
    check_two_by_two(mlflow_server, parents, children)
    run_id = children[0].info.run_id
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "test_metrics.json", "hydra", "checkpoints", "plots"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {
        "plots/learning_curves.png", "plots/similarity_test.png", "plots/gates.png"}
    history = client.get_metric_history(run_id, "val/retrieval/mean_recall")
    assert [m.step for m in history] == [0, 1]
