"""Sweep presets: every experiment composes, the controlled sampler's design compares levels on
otherwise-equal configurations, the Optuna preset optimises run.py's return value, and an
interrupted job ends KILLED in MLflow."""
import hashlib
import itertools
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from hydra_plugins.mmgnn_controlled_sweeper.controlled_sweeper import controlled_design
from mmgnn.config import group_options, register_configs
from mmgnn.tracking import version
from mmgnn.tracking.job_run import MLflowJobRun, SweepInfo
from mmgnn.tracking.params import flatten
from mmgnn.launch.sweep_plan import config_loader, planned_jobs, swept_factors

from conftest import ROOT, sqlite_store

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name):
    """Every preset composes; a sweep preset (``hydra.sweeper.params``) is a multirun logged to
    its own experiment, and an ``ablate_*`` sweep varies its factors over three seeds."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
    if not cfg.hydra.sweeper.get("params"):
        assert not name.startswith("ablate_")
        return
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.tracking.experiment == name
    if name.startswith("ablate_"):
        factors = swept_factors(cfg)  # glob(*) and comma lists alike
        assert cfg.hydra.sweeper.params.seed == "0,1,2"
        assert "seed" in factors and len(factors) >= 2


def _levels(key: str, value: str) -> int:
    """How many values a sweep parameter takes: a group's options for ``glob(*)``, else a list."""
    return len(group_options(key)) if value == "glob(*)" else len(value.split(","))


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n.startswith(("ablate_", "digits"))])
def test_sweep_plan_counts_every_job_of_a_preset(name):
    """The sweep callback's plan (``mmgnn.expected_jobs``) of a basic-sweeper preset is the
    product of its parameters' levels, ``glob(*)`` over a group included (it needs the app's
    config loader; without one the plan is unknown, and the sweep still runs)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
        plan = planned_jobs(cfg, config_loader())
    params = cfg.hydra.sweeper.params
    assert len(plan) == len({tuple(job) for job in plan})
    assert len(plan) == int(np.prod([_levels(k, str(v)) for k, v in params.items()]))
    if any(str(v) == "glob(*)" for v in params.values()):
        assert planned_jobs(cfg) is None


def test_controlled_design_varies_one_factor_on_equal_bases():
    levels = {"gnn": ["gcn", "gat", "mlp"], "skip": ["none", "sum"], "loss": ["a", "b", "c"]}
    design = controlled_design(levels, list(levels), num_base=2, seed=1)
    keys = [tuple(c.values()) for c in design]
    assert len(keys) == len(set(keys)) < 3 * 2 * 3 * 2
    for factor, values in levels.items():
        others = [f for f in levels if f != factor]
        bases = {tuple(c[f] for f in others) for c in design}
        complete = [b for b in bases
                    if {c[factor] for c in design if tuple(c[f] for f in others) == b} == set(values)]
        assert complete, f"no base where every level of {factor} is present"
    assert design == controlled_design(levels, list(levels), num_base=2, seed=1)


def test_controlled_sweeper_launches_the_sampled_jobs(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "hydra/sweeper=controlled",
         "hydra.sweeper.controlled=[skip,fusion]", "hydra.sweeper.num_base=1",
         "skip=none,sum", "fusion=concat,gated", "seed=0", "debug=fast", "train.max_items=40",
         "gnn.hidden_dim=16", "model.embed_dim=16", "train.robustness.missing=false",
         "train.robustness.noise_levels=[]", "tracking.enabled=false", "train.num_threads=1",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name[0].isdigit())
    expected = controlled_design({"skip": ["none", "sum"], "fusion": ["concat", "gated"]},
                                 ["skip", "fusion"], 1, 0)
    assert len(jobs) == len(expected) == 3


def test_optuna_preset_optimises_the_returned_value(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "+experiment=optuna",
         "hydra.sweeper.n_trials=2", "debug=fast", "train.max_items=40", "gnn.hidden_dim=16",
         "model.embed_dim=16", "train.robustness.missing=false",
         "train.robustness.noise_levels=[]", "tracking.enabled=false", "train.num_threads=1",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert 0.0 <= float(best.best_value) <= 1.0
    assert set(best.best_params) == {
        "optim.lr", "gnn.dropout", "loss.alignment.temperature", "loss.alignment.beta"}


def tracked_config(tmp_path):
    """The smallest config a :class:`MLflowJobRun` tracks, to a SQLite store in ``tmp_path``."""
    return OmegaConf.create({
        "seed": 0,
        "tracking": {"uri": sqlite_store(tmp_path / "m.db"), "experiment": "x", "run_name": None,
                     "force": False, "skip_finished": True},
    })


def relaunch(cfg, folder, first):
    """The job of ``cfg`` in a new sweep (a new parent run) of ``first``'s experiment."""
    client = MlflowClient(first.uri)
    parent = client.create_run(first.experiment_id, tags={"mmgnn.role": "sweep"}).info.run_id
    sweep = SweepInfo(parent, f"x/{folder.name}", first.experiment_id, first.uri)
    return MLflowJobRun(cfg, folder, {"gnn": "gat"}, ["seed=0"], sweep)


def test_a_relaunched_sweep_reuses_only_runs_of_the_same_code(tmp_path, monkeypatch, caplog):
    """The same code reuses a FINISHED run and says which code and commit produced it; after a
    change of the code version the job runs again."""
    cfg = tracked_config(tmp_path)
    first = MLflowJobRun(cfg, tmp_path / "first", {"gnn": "gat"}, ["seed=0"])
    with first:
        pass
    client = MlflowClient(first.uri)
    tags = client.get_run(first.run_id).data.tags
    assert tags["mmgnn.code_version"] == version.code_version()
    again = relaunch(cfg, tmp_path / "again", first)
    previous = again.finished_run()
    assert previous.info.run_id == first.run_id
    with caplog.at_level(logging.INFO, logger="mmgnn.tracking.job_run"):
        again.mark_reused(previous)
    produced_by = (f"code version {version.code_version()}, "
                   f"git commit {tags['mlflow.source.git.commit']}")
    assert produced_by in caplog.text
    parent = client.get_run(again.sweep.parent_run_id)
    assert parent.data.tags[f"mmgnn.reuses.{first.run_id}"] == produced_by
    assert client.get_run(first.run_id).data.tags[
        f"mmgnn.reused_by.{again.sweep.parent_run_id}"] == "1"
    monkeypatch.setattr(version, "code_version", lambda: "new-code")
    assert relaunch(cfg, tmp_path / "changed", first).finished_run() is None


def test_a_run_recorded_before_code_versions_is_never_reused(tmp_path):
    """A FINISHED run of the same config from before runs had a code version (its hash was
    of the config alone, it has no ``mmgnn.code_version`` tag) is not reused."""
    cfg = tracked_config(tmp_path)
    job = MLflowJobRun(cfg, tmp_path / "new", {"gnn": "gat"}, ["seed=0"])
    flat = {k: v for k, v in flatten(cfg).items() if not k.startswith("tracking.")}
    old_hash = hashlib.sha1(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]
    client = MlflowClient(job.uri)
    old = client.create_run(job.experiment_id, tags={"mmgnn.config_hash": old_hash}).info.run_id
    client.set_terminated(old, "FINISHED")
    assert relaunch(cfg, tmp_path / "again", job).finished_run() is None


def test_interrupted_job_ends_killed_and_error_ends_failed(tmp_path):
    cfg = tracked_config(tmp_path)
    for error, status in ((KeyboardInterrupt, "KILLED"), (RuntimeError, "FAILED")):
        job = MLflowJobRun(cfg, tmp_path / status, {"gnn": "gat"}, ["seed=0"])
        with pytest.raises(error):
            with job:
                raise error("stop")
        run = MlflowClient(job.uri).get_run(job.run_id)
        assert run.info.status == status
        assert run.data.tags["mmgnn.status"] == status.lower()
    assert job.finished_run() is None  # neither counts as done for a resumed sweep
    done = MLflowJobRun(cfg, tmp_path / "done", {"gnn": "gat"}, ["seed=0"])
    with done:
        pass
    assert done.finished_run().info.run_id == done.run_id
    cfg.tracking.skip_finished = False
    assert MLflowJobRun(cfg, tmp_path / "again", {"gnn": "gat"}, ["seed=0"]).finished_run() is None


def test_design_of_full_sampled_fits_one_machine():
    levels = {"gnn": "gcn,sage,gat,gatv2,gin,mlp".split(","), "skip": "none,sum,concat".split(","),
              "fusion": "concat,gated,xattn,lowrank".split(","), "loss": "cosine,infonce,hardneg".split(",")}
    design = controlled_design(levels, list(levels), num_base=1, seed=0)
    assert len(design) <= 16 < len(list(itertools.product(*levels.values())))
    assert len(controlled_design(levels, list(levels), num_base=2, seed=0)) == 28
