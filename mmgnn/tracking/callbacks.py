"""Hydra callback that gives every multirun sweep one MLflow parent run.

It runs in the launching process, whatever the launcher (basic, joblib, submitit): at the
sweep's start it creates the experiment and the parent run and writes the parent's id into
the sweep folder (``mlflow_parent.json``), where every job reads it and nests its own run.
At the end it closes the parent with the children's outcome and prints the commands that
open the sweep in the MLflow UI and write its report.
"""
from __future__ import annotations

import atexit
import logging
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.entities import RunStatus
from omegaconf import DictConfig

from mmgnn.tracking.job_run import TAG_REUSED, TAG_SWEEP, SweepInfo
from mmgnn.tracking.store import (
    ensure_experiment,
    get_client,
    git_commit,
    project_root,
    resolve_uri,
    retry_locked,
)

log = logging.getLogger(__name__)


class MLflowSweepCallback(Callback):
    """Creates, and at the end closes, the parent run of a Hydra multirun sweep."""

    def __init__(self) -> None:
        self.info: SweepInfo | None = None
        self.closed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        uri = resolve_uri(config.tracking.uri)
        client = get_client(uri)
        experiment_id = ensure_experiment(client, config.tracking.experiment)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_id = f"{config.tracking.experiment}/{sweep_dir.parent.name}/{sweep_dir.name}"
        overrides = " ".join(config.hydra.overrides.task) or "(defaults)"
        run = retry_locked(
            client.create_run,
            experiment_id,
            run_name=f"sweep-{config.tracking.experiment}-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={
                TAG_SWEEP: sweep_id,
                "mmgnn.role": "sweep",
                "mmgnn.sweep_dir": str(sweep_dir.resolve()),
                "mmgnn.overrides": overrides,
                "mlflow.source.git.commit": git_commit(),
            },
        )
        self.info = SweepInfo(run.info.run_id, sweep_id, experiment_id, uri)
        self.info.write(sweep_dir)
        atexit.register(self._close, "interrupted")
        log.info("sweep %s: MLflow parent run %s", sweep_id, run.info.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close("completed")

    def _close(self, how: str) -> None:
        """End the parent: FINISHED when every job finished, FAILED otherwise."""
        if self.info is None or self.closed:
            return
        self.closed = True
        client = get_client(self.info.tracking_uri)
        parent = self.info.parent_run_id
        children = retry_locked(
            client.search_runs,
            [self.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent}'",
            max_results=50_000,
        )
        reused = retry_locked(
            client.search_runs,
            [self.info.experiment_id],
            filter_string=f"tags.`{TAG_REUSED}.{parent}` = '1'",
            max_results=50_000,
        )
        counts: dict[str, int] = {}
        for run in children:
            counts[run.info.status] = counts.get(run.info.status, 0) + 1
        failed = sum(v for k, v in counts.items() if k != "FINISHED")
        for key, value in {**counts, "REUSED": len(reused)}.items():
            retry_locked(client.set_tag, parent, f"mmgnn.jobs.{key.lower()}", str(value))
        ok = how == "completed" and failed == 0
        status = RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED)
        retry_locked(client.set_terminated, parent, status)
        print(self.commands(counts, len(reused)), flush=True)

    def commands(self, counts: dict[str, int], reused: int) -> str:
        info = self.info
        root = project_root()
        ui_uri = info.tracking_uri
        lines = [
            "",
            f"sweep {info.sweep_id}: parent run {info.parent_run_id}; jobs "
            + ", ".join(f"{k.lower()}={v}" for k, v in sorted(counts.items()))
            + (f", reused={reused}" if reused else ""),
            "open it in the MLflow UI:",
            f"  {root}/.venv/bin/mlflow ui --backend-store-uri {ui_uri} --port 5000"
            if ui_uri.startswith("sqlite:") else f"  open {ui_uri}",
            f"  then http://127.0.0.1:5000/#/experiments/{info.experiment_id} and search "
            f"tags.mlflow.parentRunId = '{info.parent_run_id}'",
            "write its report:",
            f"  cd {root} && .venv/bin/python -m experiments.report --parent {info.parent_run_id} "
            f"--tracking-uri {ui_uri}",
        ]
        return "\n".join(lines)
