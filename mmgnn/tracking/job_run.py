"""One MLflow run per Hydra job, recorded to the run folder first (:mod:`mmgnn.tracking.local`).

No fluent ``mlflow.start_run`` state is used, so nothing leaks from one job to the next when
a launcher reuses its worker processes (joblib), and jobs attach to their sweep's parent run
by id (read from the sweep folder), never through ``MLFLOW_RUN_ID``.

What goes to MLflow (:mod:`mmgnn.tracking.headline`): the resolved config as params plus each
chosen group option under its group's name (``gnn=gat``, ``skip=sum``: short columns "Group by"
can use), the headline metrics, and per-epoch curves of the loss terms, lr, temperature and the
monitored validation metric; ``tracking.log_detail=true`` logs every metric. Every final metric
is in ``metrics.csv`` and every epoch's metrics in ``history.csv`` (both artifacts).

Tracking records what it is given: the monitored metric's key and the plot files come from the
caller (:mod:`mmgnn.launch.job` resolves the one and draws the others).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.entities import RunStatus
from omegaconf import DictConfig, OmegaConf

from mmgnn import paths
from mmgnn.tracking import version
from mmgnn.tracking.headline import is_curve, is_headline, write_metrics_csv
from mmgnn.tracking.local import Recorder, connect
from mmgnn.tracking.names import (
    HISTORY_FILE,
    HYDRA_ARTIFACTS,
    METRICS_FILE,
    NO_OVERRIDES,
    PARENT_FILE,
    PLOTS_DIR,
    TAG_CODE,
    TAG_COMMIT,
    TAG_ERROR,
    TAG_FACTORS,
    TAG_HASH,
    TAG_MONITOR,
    TAG_OVERRIDES,
    TAG_RESUMED,
    TAG_REUSED,
    TAG_REUSES,
    TAG_RUN_DIR,
    TAG_STATUS,
    TAG_SWEEP,
)
from mmgnn.tracking.params import config_hash, config_params, run_name
from mmgnn.tracking.store import TrackingUnreachable, git_commit, resolve_uri

log = logging.getLogger(__name__)


@dataclass
class SweepInfo:
    """What the sweep callback wrote into the sweep folder for its jobs.

    ``parent_run_id`` and ``experiment_id`` are ``None`` when the server was away at the
    sweep's start (``tracking.offline_ok=true``); ``parent_local_id`` always names the parent.
    The callback also puts it in the environment (:data:`ENV`, which sbatch, local workers and
    the Ray launcher's ``runtime_env`` pass on), for jobs on machines without the sweep folder.
    """

    ENV = "MMGNN_SWEEP"  # the environment variable: this, as JSON

    parent_run_id: str | None
    sweep_id: str
    experiment_id: str | None
    tracking_uri: str
    parent_local_id: str | None = None
    factors: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, sweep_dir: str | Path) -> "SweepInfo | None":
        """From the sweep folder, else from the environment when it is this sweep's (a job on
        another machine: its sweep folder has the same name but not the parent's file)."""
        sweep_dir = Path(sweep_dir)
        path = sweep_dir / PARENT_FILE
        if path.exists():
            return cls(**json.loads(path.read_text()))
        shared = os.environ.get(cls.ENV)
        if shared:
            info = cls(**json.loads(shared))
            if info.sweep_id.endswith(f"/{sweep_dir.parent.name}/{sweep_dir.name}"):
                return info
        return None

    def write(self, sweep_dir: str | Path) -> Path:
        path = Path(sweep_dir) / PARENT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2))
        return path


class MLflowJobRun:
    """The MLflow run of one job: params, per-epoch curves, results, artifacts, status.

    Use as a context manager around the job: an exception ends the run FAILED, Ctrl-C
    (``KeyboardInterrupt``) ends it KILLED, and only a job that returned ends FINISHED.
    It is also an epoch callback of the trainer (``on_epoch_end``). Everything is recorded to
    ``<run dir>/tracking/`` first; a server that stops answering costs one bounded request,
    after which the job records locally only (replay: ``python -m mmgnn.tracking.sync``).

    Args:
        cfg: the job's resolved config (``cfg.tracking`` says where and what to log).
        run_dir: the job's output folder (Hydra's ``runtime.output_dir``).
        choices: group -> chosen option (Hydra's ``runtime.choices``), for the run name.
        overrides: the job's command-line overrides, logged as a tag.
        sweep: the sweep's parent run, or ``None`` for a single run.
        monitor: the validation metric that chooses the best epoch (``val/...``,
            :func:`mmgnn.metrics.monitored_key`): tagged at the start and logged as a curve;
            ``None``: tagged from the result (:meth:`log_result`), no curve.

    Raises:
        TrackingUnreachable: the server is away at the start and ``tracking.offline_ok`` is off.
    """

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: str | Path,
        choices: dict[str, str],
        overrides: list[str],
        sweep: SweepInfo | None = None,
        monitor: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.sweep = sweep
        self.uri = sweep.tracking_uri if sweep else resolve_uri(cfg.tracking.uri)
        self.experiment_id = sweep.experiment_id if sweep else None
        if self.experiment_id is None:
            offline_ok = bool(OmegaConf.select(cfg, "tracking.offline_ok", default=False))
            self.experiment_id = connect(self.uri, cfg.tracking.experiment, offline_ok)
        self.recorder = Recorder(self.run_dir, self.uri, self.experiment_id)
        self.client = self.recorder.client
        self.choices = choices
        self.name = cfg.tracking.run_name or run_name(choices, int(cfg.seed))
        self.overrides = overrides
        self.hash = config_hash(cfg)
        self.code_version = version.code_version()
        self.detail = bool(OmegaConf.select(cfg, "tracking.log_detail", default=False))
        self.monitor = monitor

    @property
    def run_id(self) -> str | None:
        """The server's run id (``None`` while the server has not seen the run)."""
        return self.recorder.run_id

    @classmethod
    def from_hydra(cls, cfg: DictConfig, monitor: str | None = None) -> "MLflowJobRun":
        """Build from the running Hydra job (sweep parent read from the sweep folder).

        A single run whose server is away exits with the one-line message (no traceback);
        in a sweep the job fails and the sweep records it.
        """
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        sweep = SweepInfo.read(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
        choices = {k: v for k, v in hc.runtime.choices.items() if v is not None}
        try:
            return cls(cfg, hc.runtime.output_dir, choices, list(hc.overrides.task), sweep, monitor)
        except TrackingUnreachable as error:
            if sweep is None:
                raise SystemExit(f"error: {error}") from None
            raise

    # ------------------------------------------------------------ resumable sweeps
    def finished_run(self):
        """A FINISHED run of the same config hash in this experiment, or ``None``.

        The hash includes the code version, so only a run of the same code counts (never one
        of a process whose package sources or torch/dgl versions differed, nor one recorded
        before runs had a code version)."""
        if self.cfg.tracking.force or not self.cfg.tracking.skip_finished:
            return None
        runs = self.recorder.call(
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`{TAG_HASH}` = '{self.hash}' and attributes.status = 'FINISHED'",
            max_results=1,
        )
        return runs[0] if runs else None

    def mark_reused(self, run) -> None:
        """Record that this sweep counts an earlier FINISHED run instead of re-running it.

        The reused run gets ``mmgnn.reused_by.<parent id>=1`` and the sweep's parent
        ``mmgnn.reuses.<run id>``, which names the code version and git commit that produced it.
        """
        produced_by = (f"code version {run.data.tags.get(TAG_CODE, 'unknown')}, "
                       f"git commit {run.data.tags.get(TAG_COMMIT, 'unknown')}")
        if self.sweep is not None and self.sweep.parent_run_id:
            self.recorder.call(self.client.set_tag, run.info.run_id,
                               f"{TAG_REUSED}.{self.sweep.parent_run_id}", "1")
            self.recorder.call(self.client.set_tag, self.sweep.parent_run_id,
                               f"{TAG_REUSES}.{run.info.run_id}", produced_by)
        log.info("skipping: config %s already has FINISHED run %s (%s) of %s; tracking.force=true "
                 "re-runs it", self.hash, run.info.run_id, run.info.run_name, produced_by)

    # ------------------------------------------------------------ lifecycle
    def params(self) -> dict[str, str]:
        """The resolved config at dot keys, and each chosen group option at its group's name."""
        values = config_params(self.cfg)
        for group, option in self.choices.items():
            if "/" not in group and group != "hydra":
                values.setdefault(f"{group}.name", str(option))  # gnn.name=gat
                values.setdefault(group, str(option))  # gnn=gat: a short column to group by
        return values

    def start(self) -> str | None:
        if OmegaConf.select(self.cfg, "train.resume") and self.recorder.resume():
            self.recorder.set_tags({TAG_STATUS: "running", TAG_RESUMED: "true"})
            log.info("MLflow run %s (%s) resumed in %s", self.name, self.run_id, self.uri)
            return self.run_id
        tags = {
            TAG_HASH: self.hash,
            TAG_CODE: self.code_version,
            TAG_STATUS: "running",
            TAG_OVERRIDES: " ".join(self.overrides) or NO_OVERRIDES,
            TAG_RUN_DIR: str(self.run_dir),
            TAG_COMMIT: git_commit(),
        }
        if self.monitor is not None:
            tags[TAG_MONITOR] = self.monitor
        parent = (None, None)
        if self.sweep is not None:
            tags[TAG_SWEEP] = self.sweep.sweep_id
            if self.sweep.factors:
                tags[TAG_FACTORS] = ",".join(self.sweep.factors)
            parent = (self.sweep.parent_run_id, self.sweep.parent_local_id)
        self.recorder.start(self.cfg.tracking.experiment, self.name, tags, parent)
        self.recorder.log_params(self.params())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / paths.CONFIG_FILE).write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
        log.info("MLflow run %s (%s) in %s", self.name, self.run_id or "offline", self.uri)
        return self.run_id

    def end(self, status: str) -> None:
        self.recorder.set_tags({TAG_STATUS: status.lower()})
        self.recorder.end(status)

    def __enter__(self) -> "MLflowJobRun":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.end(RunStatus.to_string(RunStatus.FINISHED))
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.to_string(RunStatus.KILLED))
        else:
            self.recorder.set_tags({TAG_ERROR: f"{exc_type.__name__}: {exc}"[:5000]})
            self.end(RunStatus.to_string(RunStatus.FAILED))
        return False

    # ------------------------------------------------------------ logging
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Per-epoch curves (``step=epoch``): loss terms, lr, temperature, the monitored metric."""
        self.recorder.log_metrics(
            {k: v for k, v in metrics.items()
             if k != "epoch" and (self.detail or is_curve(k, self.monitor or ""))}, step=epoch)

    def final_metrics(self, result) -> dict[str, float]:
        """Test metrics, cost, best epoch and every validation metric at the best epoch."""
        best = next((h for h in result.history if h["epoch"] == result.best_epoch), {})
        return {
            **result.test_metrics,
            "best_epoch": float(result.best_epoch),
            **{f"best_{k}": v for k, v in best.items() if k.startswith("val/")},
            f"best_{result.monitor}": result.value,
        }

    def log_result(self, result, plots: Sequence[str | Path] = ()) -> None:
        """Final metrics (headline to MLflow, all to ``metrics.csv``) and every artifact.

        ``result``: what the job produced (:class:`mmgnn.train.job.JobResult`: ``monitor``,
        ``value``, ``best_epoch``, ``history``, ``test_metrics``, ``files``); ``plots``: image
        files the caller drew, logged under ``plots/`` when ``tracking.log_plots``.
        """
        final = self.final_metrics(result)
        self.recorder.log_metrics(
            {k: v for k, v in final.items() if self.detail or is_headline(k, result.monitor)})
        self.recorder.set_tags({TAG_MONITOR: result.monitor})
        write_metrics_csv(final, self.run_dir / METRICS_FILE)
        if result.history:
            pd.DataFrame(result.history).to_csv(self.run_dir / HISTORY_FILE, index=False)
        self._log_artifacts(result, plots)

    def _log_artifacts(self, result, plots: Sequence[str | Path]) -> None:
        log_file = self.recorder.log_artifact
        for name in (paths.CONFIG_FILE, METRICS_FILE, HISTORY_FILE, paths.STANDARDIZER_FILE):
            if (self.run_dir / name).exists():
                log_file(self.run_dir / name)
        hydra_dir = self.run_dir / paths.HYDRA_DIR
        if hydra_dir.is_dir():
            log_file(hydra_dir, HYDRA_ARTIFACTS)
        for path in map(Path, result.files.values()):
            checkpoint = path.parent.name == paths.CHECKPOINT_DIR
            if path.exists() and (not checkpoint or self.cfg.tracking.log_checkpoint):
                log_file(path, paths.CHECKPOINT_DIR if checkpoint else None)  # as in the run folder
        if self.cfg.tracking.log_plots:
            for path in plots:
                log_file(Path(path), PLOTS_DIR)

    @property
    def plots_dir(self) -> Path:
        """The run folder's ``plots/``: where the caller draws the run's plots."""
        return self.run_dir / PLOTS_DIR
