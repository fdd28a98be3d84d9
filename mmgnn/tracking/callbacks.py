"""Hydra callback that gives every multirun sweep one MLflow parent run and its report.

It runs in the launching process, whatever the launcher (basic, joblib, submitit): at the
sweep's start it creates the experiment and the parent run (recorded to the sweep folder first,
like every run: :mod:`mmgnn.tracking.local`), tags it with the expected job count
(``mmgnn.expected_jobs``), the swept factors (``mmgnn.factors``) and the code version
(``mmgnn.code_version``, :mod:`mmgnn.tracking.version`), and writes the parent's id
into the sweep folder (``mlflow_parent.json``), where every job reads it and nests its own run.
Each job, where it runs, writes its outcome to ``<sweep dir>/jobs/<n>.json``. At the end the
callback logs ``failed_jobs.json`` (jobs that failed before their MLflow run existed, and jobs
never launched, with their overrides and error), writes the ablation report into
``<sweep dir>/report/`` with :func:`mmgnn.analysis.report_sweep`, which logs its tables and
plots to the parent and makes the ablation table the parent's description
(``mlflow.note.content``), closes the parent with the children's outcome and prints the
commands that open the sweep in the MLflow UI.
"""
from __future__ import annotations

import atexit
import json
import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from mlflow.entities import RunStatus
from omegaconf import DictConfig, OmegaConf

from mmgnn.tracking import version
from mmgnn.tracking.job_run import (
    FAILED_JOBS_FILE,
    TAG_CODE,
    TAG_COMMIT,
    TAG_EXPECTED,
    TAG_FACTORS,
    TAG_REUSED,
    TAG_SWEEP,
    SweepInfo,
)
from mmgnn.tracking.local import EVENTS, Recorder, connect
from mmgnn.tracking.store import TrackingUnreachable, git_commit, project_root, resolve_uri
from mmgnn.tracking.sweep_plan import compose_error, config_loader, planned_jobs, swept_factors

log = logging.getLogger(__name__)

JOBS_DIR = "jobs"


class MLflowSweepCallback(Callback):
    """Creates, reports and at the end closes the parent run of a Hydra multirun sweep."""

    def __init__(self) -> None:
        self.info: SweepInfo | None = None
        self.recorder: Recorder | None = None
        self.sweep_dir: Path | None = None
        self.plan: list[list[str]] | None = None
        self.loader = None  # Hydra's config loader, to name a job's composition error
        self.closed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        uri = resolve_uri(config.tracking.uri)
        offline_ok = bool(OmegaConf.select(config, "tracking.offline_ok", default=False))
        try:
            experiment_id = connect(uri, config.tracking.experiment, offline_ok)
        except TrackingUnreachable as error:  # Hydra turns other errors into warnings
            raise SystemExit(f"error: {error}") from None
        self.sweep_dir = Path(config.hydra.sweep.dir)
        sweep_id = f"{config.tracking.experiment}/{self.sweep_dir.parent.name}/{self.sweep_dir.name}"
        self.loader = config_loader()
        self.plan = planned_jobs(config, self.loader)
        factors = swept_factors(config)
        tags = {
            TAG_SWEEP: sweep_id,
            "mmgnn.role": "sweep",
            "mmgnn.sweep_dir": str(self.sweep_dir.resolve()),
            "mmgnn.overrides": " ".join(config.hydra.overrides.task) or "(defaults)",
            TAG_CODE: version.code_version(),
            TAG_COMMIT: git_commit(),
        }
        if factors:
            tags[TAG_FACTORS] = ",".join(factors)
        if self.plan is not None:
            tags[TAG_EXPECTED] = str(len(self.plan))
        self.recorder = Recorder(self.sweep_dir, uri, experiment_id)
        name = f"sweep-{config.tracking.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_id = self.recorder.start(config.tracking.experiment, name, tags)
        self.info = SweepInfo(run_id, sweep_id, experiment_id, uri,
                              parent_local_id=self.recorder.local_id, factors=factors)
        self.info.write(self.sweep_dir)
        atexit.register(self._close, "interrupted")
        log.info("sweep %s: MLflow parent run %s", sweep_id, run_id or "(offline)")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """In the job's process: its number, overrides, outcome, and whether a run exists."""
        if not OmegaConf.select(config, "tracking.enabled", default=False):
            return
        hc = config.hydra
        if str(hc.mode) != "RunMode.MULTIRUN":
            return
        failed = job_return.status == JobStatus.FAILED
        error = job_return._return_value if failed else None
        record = {
            "job": int(hc.job.num),
            "overrides": list(hc.overrides.task),
            "status": "FAILED" if failed else "COMPLETED",
            "error": f"{type(error).__name__}: {error}"[:5000] if failed else "",
            "has_run": (Path(hc.runtime.output_dir) / EVENTS).exists(),
        }
        folder = Path(hc.sweep.dir) / JOBS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{record['job']}.json").write_text(json.dumps(record, indent=2))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close("completed")

    # ------------------------------------------------------------ the end of the sweep
    def failed_jobs(self) -> list[dict]:
        """Jobs that failed before their run existed, and planned jobs that never ran."""
        records = {}
        for path in sorted((self.sweep_dir / JOBS_DIR).glob("*.json")):
            record = json.loads(path.read_text())
            records[record["job"]] = record
        out = [{"job": r["job"], "overrides": r["overrides"], "error": r["error"]}
               for r in records.values() if r["status"] == "FAILED" and not r["has_run"]]
        for number, overrides in enumerate(self.plan or []):
            if number not in records:
                out.append({"job": number, "overrides": overrides,
                            "error": compose_error(self.loader, overrides) or "never launched: the sweep "
                            "stopped before this job (see the sweep's log)"})
        return sorted(out, key=lambda r: r["job"])

    def _close(self, how: str) -> None:
        """Log failed jobs and the report, end the parent: FINISHED when every job finished."""
        if self.info is None or self.closed:
            return
        self.closed = True
        failed_jobs = self.failed_jobs()
        path = self.sweep_dir / FAILED_JOBS_FILE
        path.write_text(json.dumps(failed_jobs, indent=2))
        self.recorder.log_artifact(path)
        counts, reused = self._counts()
        if failed_jobs:
            counts["NOT_STARTED"] = len(failed_jobs)
        self.recorder.set_tags({f"mmgnn.jobs.{k.lower()}": str(v)
                                for k, v in {**counts, "REUSED": reused}.items()})
        self._report()
        failed = sum(v for k, v in counts.items() if k != "FINISHED")
        ok = how == "completed" and failed == 0
        self.recorder.end(RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED))
        print(self.commands(counts, reused), flush=True)

    def _counts(self) -> tuple[dict[str, int], int]:
        """Children per status and reused runs (from the server, else from the job records)."""
        parent = self.info.parent_run_id
        client = self.recorder.client
        children = self.recorder.call(
            client.search_runs, [self.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent}'", max_results=50_000,
        ) if parent else None
        reused = self.recorder.call(
            client.search_runs, [self.info.experiment_id],
            filter_string=f"tags.`{TAG_REUSED}.{parent}` = '1'", max_results=50_000,
        ) if parent else None
        counts: dict[str, int] = {}
        if children is None:  # offline: what the jobs wrote
            for path in (self.sweep_dir / JOBS_DIR).glob("*.json"):
                record = json.loads(path.read_text())
                if record["has_run"]:
                    key = "FINISHED" if record["status"] == "COMPLETED" else "FAILED"
                    counts[key] = counts.get(key, 0) + 1
            return counts, 0
        for run in children:
            counts[run.info.status] = counts.get(run.info.status, 0) + 1
        return counts, len(reused or [])

    def _report(self) -> None:
        """The ablation report into ``<sweep dir>/report``, logged to the parent run."""
        if not self.recorder.online:
            log.warning("sweep %s: the tracking server is away, no report; after "
                        "`python -m mmgnn.tracking.sync %s` run the command printed below",
                        self.info.sweep_id, self.sweep_dir)
            return
        from mmgnn.analysis import report_sweep

        try:
            report = report_sweep(self.recorder.client, self.info.parent_run_id,
                                  out=self.sweep_dir / "report")
            log.info("sweep %s: report %s", self.info.sweep_id, report.path)
        except Exception as error:  # a sweep's runs are never lost to a report that failed
            log.warning("sweep %s: the report failed (%s: %s); write it with the command "
                        "printed below", self.info.sweep_id, type(error).__name__, error)

    def commands(self, counts: dict[str, int], reused: int) -> str:
        info = self.info
        root = project_root()
        ui_uri = info.tracking_uri
        parent = info.parent_run_id or "<parent id, after the sync>"
        lines = [
            "",
            f"sweep {info.sweep_id}: parent run {parent}; jobs "
            + ", ".join(f"{k.lower()}={v}" for k, v in sorted(counts.items()))
            + (f", reused={reused}" if reused else ""),
            "open it in the MLflow UI:",
            f"  {root}/.venv/bin/mlflow ui --backend-store-uri {ui_uri} --port 5000"
            if ui_uri.startswith("sqlite:") else f"  open {ui_uri}",
            f"  then http://127.0.0.1:5000/#/experiments/{info.experiment_id}"
            f"/runs?workflowType=machine_learning and search "
            f"tags.mlflow.parentRunId = '{parent}'",
            "its report: " + (str(self.sweep_dir / "report" / "report.md")
                              if self.recorder.online else "(none: the server was away)"),
            "write it again:",
            f"  cd {root} && .venv/bin/python -m experiments.report --parent {parent} "
            f"--tracking-uri {ui_uri}",
        ]
        if not self.recorder.online:
            lines[1:1] = [f"the server was away: replay with `python -m mmgnn.tracking.sync "
                          f"{self.sweep_dir}` once it is back"]
        return "\n".join(lines)
