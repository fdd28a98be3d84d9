"""MLflow tracking: params, hashes, locked-database retries, and multirun sweeps through every
launcher (basic, joblib, submitit local) and against a real ``mlflow server``: one parent,
nested children, resumable sweeps, failed jobs recorded as FAILED."""
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from mmgnn.analysis.runs import read_metrics_csv
from mmgnn.tracking.headline import parse_key, tidy_metrics
from mmgnn.tracking import version
from mmgnn.tracking.params import config_hash, config_params, flatten, run_name, shorten
from mmgnn.tracking.store import retry_locked
from mmgnn.tracking.sync import main as sync_main
from mmgnn.tracking.sync import sync
from mmgnn.tracking.version import PACKAGE_ROOT, code_version

from conftest import ROOT, migrated_store, sqlite_store

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


def test_config_hash_changes_with_the_code_version(monkeypatch):
    """A run of other code (package sources, torch or dgl) never has the same hash."""
    cfg = OmegaConf.create({"seed": 0, "gnn": {"h": 1}})
    today = config_hash(cfg)
    monkeypatch.setattr(version, "code_version", lambda: "changed-code")
    assert config_hash(cfg) != today
    assert config_hash(cfg) == config_hash(OmegaConf.create({"seed": 0, "gnn": {"h": 1}}))


def test_code_version_follows_the_package_sources(tmp_path):
    """The path and bytes of every ``*.py`` of the package count; its location, ``__pycache__``
    and other files do not."""
    assert len(code_version()) == 12
    copy = tmp_path / "copy"
    shutil.copytree(PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("*.pyc"))
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "stale.py").write_text("x = 1\n")
    (copy / "notes.txt").write_text("not code")
    clean = tmp_path / "clean"
    shutil.copytree(copy, clean, ignore=shutil.ignore_patterns("__pycache__", "notes.txt"))
    assert code_version(copy) == code_version(clean)
    edited = tmp_path / "edited"
    shutil.copytree(clean, edited)
    with open(edited / "losses" / "alignment.py", "a") as file:
        file.write("\n# an uncommitted edit\n")
    assert code_version(edited) != code_version(clean)
    moved = tmp_path / "moved"
    shutil.copytree(clean, moved)
    (moved / "losses" / "alignment.py").rename(moved / "losses" / "alignment2.py")
    assert code_version(moved) != code_version(clean)


def test_code_version_follows_torch_and_dgl(tmp_path, monkeypatch):
    shutil.copytree(PACKAGE_ROOT / "losses", tmp_path / "a", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    today = code_version(tmp_path / "a")
    monkeypatch.setattr(version, "library_versions", lambda: {"torch": "0.0", "dgl": "0.0"})
    assert code_version(tmp_path / "b") != today


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
        f"gat-{s}-xattn-infonce-s{i}" for s in ("none", "sum") for i in (0, 1)}
    assert parents[0].data.tags["mmgnn.expected_jobs"] == "4"
    assert parents[0].data.tags["mmgnn.factors"] == "skip,seed"
    assert parents[0].data.tags["mlflow.note.content"].startswith("| skip |")
    client = MlflowClient(uri)
    assert client.get_experiment(parents[0].info.experiment_id).tags[
        "mlflow.experimentKind"] == "custom_model_development"
    for c in children:
        assert 0.0 <= c.data.metrics["test/retrieval/mean_recall"] <= 1.0
        assert "best_epoch" in c.data.metrics and c.data.params["gnn.name"] == "gat"
        assert c.data.params["skip"] == c.data.params["skip.mode"]  # short column to group by
        assert f"skip={c.data.params['skip.mode']}" in c.data.tags["mmgnn.overrides"]
        # Headline metrics only; metrics.csv holds every final metric with the same values.
        assert len(c.data.metrics) <= 80
        detail = read_metrics_csv(client.download_artifacts(c.info.run_id, "metrics.csv")).to_dict()
        assert len(detail) > 2 * len(c.data.metrics)
        finals = {k: v for k, v in c.data.metrics.items() if not k.startswith(("train/", "val/"))
                  and k not in ("lr", "temperature")}
        assert finals and all(detail[k] == pytest.approx(v) for k, v in finals.items())


@pytest.mark.parametrize("launcher", ["basic", "local_parallel", "local_submitit"])
def test_two_by_two_sweep_nests_four_finished_runs_under_one_parent(tmp_path, launcher):
    # local_parallel: its parallel jobs meet a store the sweep creates (no migrated copy)
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}" if launcher == "local_parallel" else sqlite_store(db)
    # glob over the group (= none,sum): the parent's plan expands it through Hydra's config loader
    proc = sweep(tmp_path, uri, f"hydra/launcher={launcher}", "skip=glob(*,exclude=concat)", "seed=0,1")
    assert "experiments.report --parent" in proc.stdout
    client, parents, children = runs_of(uri)
    check_two_by_two(uri, parents, children)
    if launcher == "basic":
        # Re-launching skips the FINISHED configurations of the same code; force re-runs them.
        proc = sweep(tmp_path, uri, "skip=none,sum", "seed=0,1", name="again")
        _, parents, children = runs_of(uri)
        assert len(parents) == 2 and len(children) == 4
        (code,) = {r.data.tags["mmgnn.code_version"] for r in parents + children}
        newest = max(parents, key=lambda r: r.info.start_time)
        reused = [c for c in children
                  if c.data.tags.get(f"mmgnn.reused_by.{newest.info.run_id}") == "1"]
        assert len(reused) == 4
        produced_by = (f"code version {code}, "
                       f"git commit {children[0].data.tags['mlflow.source.git.commit']}")
        assert {newest.data.tags[f"mmgnn.reuses.{c.info.run_id}"] for c in reused} == {produced_by}
        assert produced_by in proc.stdout + proc.stderr
        sweep(tmp_path, uri, "skip=none", "seed=0", "tracking.force=true", name="forced")
        _, _, children = runs_of(uri)
        assert len(children) == 5


def test_a_failing_job_is_failed_in_mlflow_and_the_sweep_exits_non_zero(tmp_path):
    uri = sqlite_store(tmp_path / "mlflow.db")
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


# MLflow's server starts a job runner and about ten huey consumers (GenAI jobs, which the
# tests never use), each importing mlflow: seconds of CPU per start, and more while a sweep
# runs beside them. Off for the test servers.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 that a test can kill and start again (same port,
    same database and artifact folder). Its store starts empty, at the current schema."""

    def __init__(self, folder):
        self.folder, self.port, self.process = folder, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self):
        db = self.folder / "server.db"
        if not db.exists():
            shutil.copyfile(migrated_store(), db)
        self.process = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--backend-store-uri", f"sqlite:///{db}",
             "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.folder,
            start_new_session=True, env={**os.environ, **SERVER_ENV},
        )
        deadline = time.time() + 180
        while time.time() < deadline:  # serving, not only listening
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("mlflow server exited")
                time.sleep(0.5)
        self.kill()
        raise RuntimeError("mlflow server did not start")

    def kill(self):
        """SIGKILL the server and its workers (its own process group), as a crash would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def mlflow_server(shared_mlflow_server):
    """The session's server (conftest): each test logs to its own experiment and counts only
    the runs of that experiment."""
    return shared_mlflow_server.uri


def test_sweep_against_a_real_mlflow_server(served_sweep):
    """The sweep (conftest's ``served_sweep``): ``python run.py -m`` of tiny jobs with
    ``skip=none,sum seed=0,1 tracking.log_plots=true`` against a real server."""
    uri = served_sweep.uri
    client, parents, children = runs_of(uri)
    check_two_by_two(uri, parents, children)
    run_id = children[0].info.run_id
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "test_metrics.json", "hydra", "checkpoints", "plots"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {
        "plots/learning_curves.png", "plots/similarity_test.png", "plots/gates.png"}
    history = client.get_metric_history(run_id, "val/retrieval/mean_recall")
    assert [m.step for m in history] == [0, 1]


def test_metric_keys_parse_into_tidy_columns():
    assert parse_key("test/group/g1/text_to_image/r1") == {
        "split": "test", "metric": "retrieval/r1", "query": "text", "gallery": "image",
        "group": "g1", "condition": ""}
    assert parse_key("test/noise/audio/0.3/fused/acc")["condition"] == "noise:audio:0.3"
    assert parse_key("test/missing/text_and_image/retrieval/map")["condition"] == \
        "missing:text_and_image"
    assert parse_key("best_val/worst_group/retrieval/mean_recall")["group"] == "worst_group"
    assert parse_key("test/gates/text/mean") == {**parse_key("test/gates/text/mean"),
                                                  "metric": "gates/mean", "query": "text"}
    assert parse_key("params/total") == {"split": "", "metric": "params/total", "query": "",
                                         "gallery": "", "group": "", "condition": ""}
    table = tidy_metrics({"test/retrieval/map": 0.5, "time/train_s": 2.0})
    assert list(table.columns) == ["key", "split", "metric", "query", "gallery", "group",
                                   "condition", "value"]
    assert table["value"].tolist() == [0.5, 2.0]


def history_points(client, run_id, keys):
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
            for k in keys}


def local_points(run_dir):
    points = {}
    for line in (run_dir / "tracking" / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        for key, value, _, step in event.get("metrics", []) if event["kind"] == "metrics" else []:
            points.setdefault(key, []).append((step, value))
    return {k: sorted(v) for k, v in points.items()}


LONGER = [*TINY, "train.stages.0.epochs=11", "train.patience=0", "tracking.log_plots=false"]


def test_server_killed_mid_run_then_sync_makes_the_run_whole(tmp_path):
    """The job outlives its server; sync replays the rest, once, like an uninterrupted run."""
    server = MlflowServer(tmp_path).start()
    try:
        check_kill_and_sync(tmp_path, server)
    finally:
        if server.process.poll() is None:
            server.kill()


def check_kill_and_sync(tmp_path, server):
    uri = server.uri
    client = MlflowClient(uri)
    common = [sys.executable, str(ROOT / "run.py"), *LONGER, f"tracking.uri={uri}"]
    t0 = time.time()
    ref = subprocess.run([*common, "tracking.experiment=ref", f"hydra.run.dir={tmp_path / 'ref'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    ref_seconds = time.time() - t0
    job = subprocess.Popen([*common, "tracking.experiment=cut", f"hydra.run.dir={tmp_path / 'cut'}"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:  # kill once two epochs are logged
        experiment = client.get_experiment_by_name("cut")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and len(client.get_metric_history(runs[0].info.run_id,
                                                  "val/retrieval/mean_recall")) >= 2:
            break
        time.sleep(0.2)
    assert job.poll() is None, "the job finished before the server could be killed"
    server.kill()
    killed = time.time()
    out, err = job.communicate(timeout=600)
    assert job.returncode == 0, err[-3000:]
    assert time.time() - killed < ref_seconds + 30  # no minutes of retries
    assert "stopped answering" in out + err and "mmgnn.tracking.sync" in out + err
    run_dir = tmp_path / "cut"
    assert {"test_metrics.json", "metrics.csv", "history.csv", "config.yaml"} <= {
        p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "tracking" / "events.jsonl").read_text().splitlines()[-1])[
        "status"] == "FINISHED"

    server.start()
    (cut_run,) = client.search_runs([client.get_experiment_by_name("cut").experiment_id])
    assert cut_run.info.status == "RUNNING"  # what the server saw before it died
    (result,) = sync(run_dir)
    assert result.run_id == cut_run.info.run_id and not result.created and result.metrics > 0
    (ref_run,) = client.search_runs([client.get_experiment_by_name("ref").experiment_id])
    cut_run = client.get_run(cut_run.info.run_id)
    assert cut_run.info.status == "FINISHED"
    ignore = {"tracking.experiment"}
    assert {k: v for k, v in cut_run.data.params.items() if k not in ignore} == \
        {k: v for k, v in ref_run.data.params.items() if k not in ignore}
    assert set(cut_run.data.metrics) == set(ref_run.data.metrics)
    keys = sorted(cut_run.data.metrics)
    server_points = history_points(client, cut_run.info.run_id, keys)
    assert server_points == local_points(run_dir)  # every recorded point, once
    ref_points = history_points(client, ref_run.info.run_id, keys)
    assert {k: [s for s, _ in v] for k, v in server_points.items()} == \
        {k: [s for s, _ in v] for k, v in ref_points.items()}
    assert {a.path for a in client.list_artifacts(cut_run.info.run_id)} == \
        {a.path for a in client.list_artifacts(ref_run.info.run_id)}
    # A second sync changes nothing (nor does the command line, on the parent folder).
    (again,) = sync(run_dir)
    assert not again.changed
    assert sync_main([str(tmp_path / "cut")]) == 0
    assert history_points(client, cut_run.info.run_id, keys) == server_points


def test_unreachable_server_fails_fast_or_records_offline(tmp_path, mlflow_server):
    dead = f"http://127.0.0.1:{free_port()}"
    common = [sys.executable, str(ROOT / "run.py"), *TINY, "tracking.experiment=offline"]
    t0 = time.time()  # the imports alone take seconds on a loaded machine: measured, not assumed
    subprocess.run([sys.executable, "-c", "import mmgnn.launch.job"],
                   cwd=ROOT, check=True, timeout=120)
    startup = time.time() - t0
    t0 = time.time()
    proc = subprocess.run([*common, f"tracking.uri={dead}", f"hydra.run.dir={tmp_path / 'no'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert time.time() - t0 < startup + 10
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and "tracking.offline_ok=true" in lines[0]
    assert "Traceback" not in proc.stderr

    proc = subprocess.run([*common, f"tracking.uri={dead}", "tracking.offline_ok=true",
                           f"hydra.run.dir={tmp_path / 'off'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "off" / "test_metrics.json").exists()
    assert not (tmp_path / "off" / "tracking" / "run.json").exists()  # the server never saw it
    # The server comes back (here: another one): sync creates the run, then changes nothing.
    (result,) = sync(tmp_path / "off", mlflow_server)
    assert result.created and result.params > 100 and result.artifacts >= 3
    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "gat-sum-xattn-infonce-s0"
    assert run.data.metrics["test/retrieval/mean_recall"] == pytest.approx(
        read_metrics_csv(tmp_path / "off" / "metrics.csv")["test/retrieval/mean_recall"])
    assert not sync(tmp_path / "off", mlflow_server)[0].changed


def test_jobs_that_fail_before_their_run_are_recorded_on_the_parent(tmp_path):
    uri = sqlite_store(tmp_path / "mlflow.db")
    proc = sweep(tmp_path, uri, "gnn=gat,nope", check=False)
    assert proc.returncode != 0
    client, parents, children = runs_of(uri)
    assert children == [] and parents[0].info.status == "FAILED"
    assert parents[0].data.tags["mmgnn.expected_jobs"] == "2"
    failed = json.loads((tmp_path / "sweep" / "failed_jobs.json").read_text())
    assert [f["job"] for f in failed] == [0, 1]
    assert "gnn=nope" in failed[1]["overrides"] and "nope" in failed[1]["error"]
    assert "never launched" in failed[0]["error"]
    logged = client.download_artifacts(parents[0].info.run_id, "failed_jobs.json")
    assert json.loads(open(logged).read()) == failed


def test_log_detail_restores_every_metric(tmp_path):
    uri = sqlite_store(tmp_path / "mlflow.db")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *TINY, f"tracking.uri={uri}",
         "tracking.experiment=detail", "tracking.log_detail=true",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("detail").experiment_id])
    detail = read_metrics_csv(tmp_path / "run" / "metrics.csv").to_dict()
    assert set(detail) <= set(run.data.metrics) and len(run.data.metrics) > 200
    assert all(run.data.metrics[k] == pytest.approx(v) for k, v in detail.items())
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/fused/acc")]
    assert steps == [0, 1]  # every validation metric as a curve, not only the monitored one
