"""Hydra callback that gives every multirun sweep one MLflow parent run and its report.

It runs in the launching process, whatever the launcher (basic, joblib, submitit): at the
sweep's start it creates the experiment and the parent run (recorded to the sweep folder first,
like every run: :mod:`mmgnn.tracking.local`), tags it with the expected job count
(``mmgnn.expected_jobs``, planned by :mod:`mmgnn.launch.sweep_plan`), the swept factors
(``mmgnn.factors``) and the code version (``mmgnn.code_version``,
:mod:`mmgnn.tracking.version`), and writes the parent's id into the sweep folder
(``mlflow_parent.json``), where every job reads it and nests its own run. Each job, where it
runs, writes its outcome to ``<sweep dir>/jobs/<n>.json``. At the end the callback logs
``failed_jobs.json`` (jobs that failed before their MLflow run existed, and jobs never
launched, with their overrides and error), writes the ablation report into
``<sweep dir>/report/`` with :func:`mmgnn.analysis.report_sweep`, which logs its tables and
plots to the parent and makes the ablation table the parent's description
(``mlflow.note.content``), closes the parent with the children's outcome and prints the
commands that open the sweep in the MLflow UI. (Tag and file names:
:mod:`mmgnn.tracking.names`.)

Jobs on other machines (a Ray cluster, SLURM; :func:`runs_elsewhere`): the sweep refuses a
store only this machine can write (``sqlite:``, ``file:``) before anything starts, with the
command of a tracking server to use instead. The parent's id also reaches the jobs through the
environment (:attr:`SweepInfo.ENV`: sbatch and local workers inherit it, the Ray launcher's
``runtime_env`` carries it to every node), so a job nests under the parent, and is skipped when
FINISHED, even where the sweep folder is not shared; such a job also logs its outcome to the
parent (artifact ``jobs/<n>.json``), from where the end of the sweep reads it. See docs/sweeps.md.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from mlflow.entities import RunStatus
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from mmgnn import paths
from mmgnn.analysis import report_sweep
from mmgnn.launch.commands import report_command, sync_command, ui_address, ui_command
from mmgnn.launch.sweep_plan import compose_error, config_loader, planned_jobs, swept_factors
from mmgnn.tracking import (
    EVENTS,
    Recorder,
    SweepInfo,
    TrackingUnreachable,
    code_version,
    connect,
    git_commit,
    resolve_uri,
)
from mmgnn.tracking.names import (
    FAILED_JOBS_FILE,
    JOBS_DIR,
    NO_OVERRIDES,
    PARENT_FILE,
    REPORT_DIR,
    ROLE_SWEEP,
    TAG_CODE,
    TAG_COMMIT,
    TAG_EXPECTED,
    TAG_FACTORS,
    TAG_JOBS,
    TAG_OVERRIDES,
    TAG_PARENT,
    TAG_REUSED,
    TAG_ROLE,
    TAG_SWEEP,
    TAG_SWEEP_DIR,
)
from mmgnn.tracking.store import get_client

log = logging.getLogger(__name__)


def runs_elsewhere(launcher: DictConfig) -> bool:
    """Whether a launcher may run jobs on other machines: SLURM (submitit), Ray on AWS, and
    Ray unless it starts its own local Ray (``ray.init.address=local``, ``hydra/launcher=ray``)."""
    target = str(OmegaConf.select(launcher, "_target_", default="") or "")
    if target.endswith(("SlurmLauncher", "RayAWSLauncher")):
        return True
    if target.endswith(".RayLauncher"):
        return OmegaConf.select(launcher, "ray.init.address", default=None) != "local"
    return False


def per_machine_store(uri: str) -> bool:
    """Whether only this machine can write the tracking store (an SQLite file, a folder)."""
    return urlparse(uri).scheme in ("", "file", "sqlite")


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
        if runs_elsewhere(config.hydra.launcher) and per_machine_store(uri):
            launcher = config.hydra.runtime.choices.get("hydra/launcher")
            raise SystemExit(
                f"error: hydra/launcher={launcher} may run jobs on other machines, which cannot "
                f"write to this machine's tracking store {uri}: start a tracking server they "
                f"reach, mlflow server --host 0.0.0.0 --port 5000 --backend-store-uri "
                f"sqlite:///{paths.home() / 'mlflow-server.db'}, and pass "
                f"tracking.uri=http://<its host>:5000 (docs/sweeps.md)")
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
            TAG_ROLE: ROLE_SWEEP,
            TAG_SWEEP_DIR: str(self.sweep_dir.resolve()),
            TAG_OVERRIDES: " ".join(config.hydra.overrides.task) or NO_OVERRIDES,
            TAG_CODE: code_version(),
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
        self._share_with_jobs(config)
        atexit.register(self._close, "interrupted")
        log.info("sweep %s: MLflow parent run %s", sweep_id, run_id or "(offline)")

    def _share_with_jobs(self, config: DictConfig) -> None:
        """The parent for jobs without this sweep folder: in this process's environment (which
        sbatch and local workers inherit) and in the Ray launcher's ``runtime_env`` (a Ray
        cluster's workers have their node's environment, not this one)."""
        shared = json.dumps(self.info.__dict__)
        os.environ[SweepInfo.ENV] = shared
        if OmegaConf.select(config, "hydra.launcher.ray.init") is not None:
            with read_write(config.hydra), open_dict(config.hydra):
                OmegaConf.update(config, f"hydra.launcher.ray.init.runtime_env.env_vars."
                                 f"{SweepInfo.ENV}", shared, force_add=True)

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
        if not (Path(hc.sweep.dir) / PARENT_FILE).exists():  # not the launching machine's folder
            self._send_record(record, SweepInfo.read(hc.sweep.dir))

    @staticmethod
    def _send_record(record: dict, info: SweepInfo | None) -> None:
        """A job's outcome, from a machine without the sweep folder, to the parent run."""
        if info is None or not info.parent_run_id:
            log.warning("job %s: its outcome stays on this machine (no parent run to send it "
                        "to)", record["job"])
            return
        try:
            client = get_client(info.tracking_uri)
            client.log_text(info.parent_run_id, json.dumps(record, indent=2),
                            f"{JOBS_DIR}/{record['job']}.json")
        except Exception as error:  # the job's own run is what matters; the sweep's end says
            log.warning("job %s: could not send its outcome to the parent run (%s: %s)",
                        record["job"], type(error).__name__, error)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close("completed")

    # ------------------------------------------------------------ the end of the sweep
    def _fetch_records(self) -> None:
        """Into ``<sweep dir>/jobs``: the outcomes that jobs on other machines sent the parent."""
        folder = self.sweep_dir / JOBS_DIR
        have = {p.stem for p in folder.glob("*.json")}
        if not self.recorder.online or (self.plan is not None and len(have) >= len(self.plan)):
            return
        client, parent = self.recorder.client, self.info.parent_run_id
        sent = self.recorder.call(client.list_artifacts, parent, JOBS_DIR) or []
        missing = [a.path for a in sent if Path(a.path).stem not in have]
        if missing:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                for artifact in missing:
                    local = self.recorder.call(client.download_artifacts, parent, artifact, tmp)
                    if local:
                        Path(local).replace(folder / Path(artifact).name)

    def failed_jobs(self) -> list[dict]:
        """Jobs that failed before their run existed, and planned jobs that never ran."""
        self._fetch_records()
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
        self.recorder.set_tags({f"{TAG_JOBS}.{k.lower()}": str(v)
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
            filter_string=f"tags.{TAG_PARENT} = '{parent}'", max_results=50_000,
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
        try:
            report = report_sweep(self.recorder.client, self.info.parent_run_id,
                                  out=self.sweep_dir / REPORT_DIR)
            log.info("sweep %s: report %s", self.info.sweep_id, report.path)
        except Exception as error:  # a sweep's runs are never lost to a report that failed
            log.warning("sweep %s: the report failed (%s: %s); write it with the command "
                        "printed below", self.info.sweep_id, type(error).__name__, error)

    def commands(self, counts: dict[str, int], reused: int) -> str:
        info = self.info
        ui_uri = info.tracking_uri
        parent = info.parent_run_id or "<parent id, after the sync>"
        lines = [
            "",
            f"sweep {info.sweep_id}: parent run {parent}; jobs "
            + ", ".join(f"{k.lower()}={v}" for k, v in sorted(counts.items()))
            + (f", reused={reused}" if reused else ""),
            "open it in the MLflow UI:",
            f"  {ui_command(ui_uri)}",
            f"  then {ui_address(ui_uri)}/#/experiments/{info.experiment_id}"
            f"/runs?workflowType=machine_learning and search "
            f"tags.{TAG_PARENT} = '{parent}'",
            "its report: " + (str(self.sweep_dir / REPORT_DIR / "report.md")
                              if self.recorder.online else "(none: the server was away)"),
            "write it again:",
            f"  {report_command(parent, ui_uri)}",
        ]
        if not self.recorder.online:
            lines[1:1] = [f"the server was away: replay with `{sync_command(self.sweep_dir)}` once it is back"]
        return "\n".join(lines)
