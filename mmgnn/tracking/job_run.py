"""One MLflow run per Hydra job, recorded to the run folder first (:mod:`mmgnn.tracking.local`).

No fluent ``mlflow.start_run`` state is used, so nothing leaks from one job to the next when
a launcher reuses its worker processes (joblib), and jobs attach to their sweep's parent run
by id (read from the sweep folder), never through ``MLFLOW_RUN_ID``.

What goes to MLflow (:mod:`mmgnn.tracking.headline`): the resolved config as params plus each
chosen group option under its group's name (``gnn=gat``, ``skip=sum``: short columns "Group by"
can use), the headline metrics, and per-epoch curves of the loss terms, lr, temperature and the
monitored validation metric; ``tracking.log_detail=true`` logs every metric. Every final metric
is in ``metrics.csv`` and every epoch's metrics in ``history.csv`` (both artifacts).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.entities import RunStatus
from omegaconf import DictConfig, OmegaConf

from mmgnn.analysis import plots
from mmgnn.metrics.evaluate import MONITORED
from mmgnn.tracking import version
from mmgnn.tracking.headline import is_curve, is_headline, write_metrics_csv
from mmgnn.tracking.local import Recorder, connect
from mmgnn.tracking.params import config_hash, config_params, run_name
from mmgnn.tracking.store import TrackingUnreachable, git_commit, resolve_uri

log = logging.getLogger(__name__)

PARENT_FILE = "mlflow_parent.json"
TAG_HASH = "mmgnn.config_hash"  # of the config and the code version: what a sweep reuses by
TAG_CODE = "mmgnn.code_version"  # mmgnn.tracking.version.code_version() of the run's process
TAG_COMMIT = "mlflow.source.git.commit"
TAG_SWEEP = "mmgnn.sweep_id"
TAG_STATUS = "mmgnn.status"
TAG_FACTORS = "mmgnn.factors"  # the sweep's swept override keys, comma-separated
TAG_REUSED = "mmgnn.reused_by"  # + ".<parent run id>" on a FINISHED run a later sweep reused
TAG_REUSES = "mmgnn.reuses"  # + ".<run id>" on that sweep's parent: the run's code and commit
TAG_EXPECTED = "mmgnn.expected_jobs"  # tag of a sweep parent: how many jobs the sweep launched
FAILED_JOBS_FILE = "failed_jobs.json"  # parent artifact: jobs that failed before their run existed


@dataclass
class SweepInfo:
    """What the sweep callback wrote into the sweep folder for its jobs.

    ``parent_run_id`` and ``experiment_id`` are ``None`` when the server was away at the
    sweep's start (``tracking.offline_ok=true``); ``parent_local_id`` always names the parent.
    """

    parent_run_id: str | None
    sweep_id: str
    experiment_id: str | None
    tracking_uri: str
    parent_local_id: str | None = None
    factors: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, sweep_dir: str | Path) -> "SweepInfo | None":
        path = Path(sweep_dir) / PARENT_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def write(self, sweep_dir: str | Path) -> Path:
        path = Path(sweep_dir) / PARENT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2))
        return path


def monitored_key(cfg: DictConfig) -> str:
    """The validation metric the trainer selects on (``train.monitor``, ``auto`` resolved)."""
    monitor = OmegaConf.select(cfg, "train.monitor", default="auto")
    if monitor == "auto":
        return f"val/{MONITORED[OmegaConf.select(cfg, 'data.pairing', default='item')]}"
    return monitor if monitor.startswith("val/") else f"val/{monitor}"


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
        self.monitor = monitored_key(cfg)

    @property
    def run_id(self) -> str | None:
        """The server's run id (``None`` while the server has not seen the run)."""
        return self.recorder.run_id

    @classmethod
    def from_hydra(cls, cfg: DictConfig) -> "MLflowJobRun":
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
            return cls(cfg, hc.runtime.output_dir, choices, list(hc.overrides.task), sweep)
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
            self.recorder.set_tags({TAG_STATUS: "running", "mmgnn.resumed": "true"})
            log.info("MLflow run %s (%s) resumed in %s", self.name, self.run_id, self.uri)
            return self.run_id
        tags = {
            TAG_HASH: self.hash,
            TAG_CODE: self.code_version,
            TAG_STATUS: "running",
            "mmgnn.overrides": " ".join(self.overrides) or "(defaults)",
            "mmgnn.run_dir": str(self.run_dir),
            "mmgnn.monitor": self.monitor,
            TAG_COMMIT: git_commit(),
        }
        parent = (None, None)
        if self.sweep is not None:
            tags[TAG_SWEEP] = self.sweep.sweep_id
            if self.sweep.factors:
                tags[TAG_FACTORS] = ",".join(self.sweep.factors)
            parent = (self.sweep.parent_run_id, self.sweep.parent_local_id)
        self.recorder.start(self.cfg.tracking.experiment, self.name, tags, parent)
        self.recorder.log_params(self.params())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
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
            self.recorder.set_tags({"mmgnn.error": f"{exc_type.__name__}: {exc}"[:5000]})
            self.end(RunStatus.to_string(RunStatus.FAILED))
        return False

    # ------------------------------------------------------------ logging
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Per-epoch curves (``step=epoch``): loss terms, lr, temperature, the monitored metric."""
        self.recorder.log_metrics(
            {k: v for k, v in metrics.items()
             if k != "epoch" and (self.detail or is_curve(k, self.monitor))}, step=epoch)

    def final_metrics(self, result) -> dict[str, float]:
        """Test metrics, cost, best epoch and every validation metric at the best epoch."""
        best = next((h for h in result.history if h["epoch"] == result.best_epoch), {})
        return {
            **result.test_metrics,
            "best_epoch": float(result.best_epoch),
            **{f"best_{k}": v for k, v in best.items() if k.startswith("val/")},
            f"best_{result.monitor}": result.value,
        }

    def log_result(self, result) -> None:
        """Final metrics (headline to MLflow, all to ``metrics.csv``) and every artifact."""
        final = self.final_metrics(result)
        self.recorder.log_metrics(
            {k: v for k, v in final.items() if self.detail or is_headline(k, result.monitor)})
        self.recorder.set_tags({"mmgnn.monitor": result.monitor})
        write_metrics_csv(final, self.run_dir / "metrics.csv")
        if result.history:
            pd.DataFrame(result.history).to_csv(self.run_dir / "history.csv", index=False)
        self._log_artifacts(result)

    def _log_artifacts(self, result) -> None:
        log_file = self.recorder.log_artifact
        for name in ("config.yaml", "metrics.csv", "history.csv", "standardizer.npz"):
            if (self.run_dir / name).exists():
                log_file(self.run_dir / name)
        hydra_dir = self.run_dir / ".hydra"
        if hydra_dir.is_dir():
            log_file(hydra_dir, "hydra")
        for name, path in result.files.items():
            if Path(path).exists() and (name != "best_checkpoint" or self.cfg.tracking.log_checkpoint):
                log_file(path, "checkpoints" if name == "best_checkpoint" else None)
        if self.cfg.tracking.log_plots and result.history:
            for path in self._plots(result):
                log_file(path, "plots")

    def _plots(self, result) -> list[Path]:
        folder = self.run_dir / "plots"
        folder.mkdir(exist_ok=True)
        paths = [plots.learning_curves(result.history, result.monitor, folder / "learning_curves.png")]
        out = result.outputs
        if out is not None:
            names = tuple(out.embeddings)
            both = out.present[:, 0] & out.present[:, 1]
            paths.append(plots.similarity_matrix(
                out.embeddings[names[0]][both], out.embeddings[names[1]][both],
                (names[0], names[1]), folder / "similarity_test.png",
            ))
            if out.gates is not None:  # None when the loss does not train the fusion
                paths.append(plots.gate_distribution(out.gates, out.present, names, folder / "gates.png"))
        return paths
