"""The job entry ``run.py`` calls: one tracked training job in Hydra's output folder.

It composes the layers below: the config checks and :func:`mmgnn.train.job.run_job` (training
and test), :class:`mmgnn.tracking.MLflowJobRun` (the MLflow run, given the monitored metric's
key and the plot files) and :func:`mmgnn.launch.plots.run_plots` (the per-run plots).
"""
from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf

from mmgnn.config import ConfigError
from mmgnn.launch.commands import run_footer
from mmgnn.launch.plots import run_plots
from mmgnn.metrics import monitored_key
from mmgnn.tracking import MLflowJobRun
from mmgnn.tracking.names import TAG_MONITOR
from mmgnn.train.job import run_job
from mmgnn.train.preflight import check_run_config


def launcher_threads(launcher: DictConfig | None) -> int:
    """Torch threads for one job of the launcher that runs it (0: torch's default, all cores).

    A joblib worker gets its share of this machine's cores (``cpu_count // n_jobs``), a Ray
    task the CPUs Ray gives it (``ray.remote.num_cpus``), a submitit job (SLURM or local) its
    ``cpus_per_task``; the basic launcher runs one job at a time and keeps torch's default.
    """
    if launcher is None:
        return 0
    n_jobs = OmegaConf.select(launcher, "n_jobs", default=None)
    if n_jobs:
        return max(1, (os.cpu_count() or 1) // n_jobs) if n_jobs > 1 else 0
    cpus = (OmegaConf.select(launcher, "ray.remote.num_cpus", default=None)
            or OmegaConf.select(launcher, "cpus_per_task", default=None))
    return max(1, int(cpus)) if cpus else 0


def main_job(cfg: DictConfig) -> float:
    """``run.py``'s body: one tracked job in Hydra's output folder.

    Returns the best validation value of the monitored metric (what sweepers optimise;
    the test split is never used for selection). In a sweep with tracking on, a config whose
    hash already has a FINISHED run in the experiment is skipped (``tracking.force=true``
    re-runs it); a single run always trains. With ``tracking.log_plots`` the run's plots are
    drawn into ``<run dir>/plots`` and logged.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    try:  # before any data is loaded and before any MLflow run exists
        check_run_config(cfg)
    except ConfigError as error:
        if hc.mode != RunMode.MULTIRUN:
            raise SystemExit(f"error: {error}") from None
        raise  # the sweep records the failed job and goes on
    run_dir = hc.runtime.output_dir
    if cfg.train.num_threads == 0 and hc.mode == RunMode.MULTIRUN:  # each job its share
        cfg.train.num_threads = launcher_threads(hc.launcher)
    if not cfg.tracking.enabled:
        value = run_job(cfg, run_dir).value
        print(run_footer(run_dir, None, None, None), flush=True)
        return value
    tracker = MLflowJobRun.from_hydra(cfg, monitor=monitored_key(cfg.train.monitor, cfg.data.pairing))
    previous = tracker.finished_run() if tracker.sweep is not None else None
    if previous is not None:
        tracker.mark_reused(previous)
        monitor = previous.data.tags.get(TAG_MONITOR, "")
        return float(previous.data.metrics.get(f"best_{monitor}", float("nan")))
    with tracker:
        result = run_job(cfg, run_dir, callbacks=[tracker])
        drawn = run_plots(result, tracker.plots_dir) if cfg.tracking.log_plots else []
        tracker.log_result(result, plots=drawn)
    print(run_footer(run_dir, tracker.uri, tracker.experiment_id, tracker.run_id), flush=True)
    return result.value
