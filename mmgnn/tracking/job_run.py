"""One MLflow run per Hydra job, through ``MlflowClient`` with explicit run ids.

No fluent ``mlflow.start_run`` state is used, so nothing leaks from one job to the next when
a launcher reuses its worker processes (joblib), and jobs attach to their sweep's parent run
by id (read from the sweep folder), never through ``MLFLOW_RUN_ID``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Metric, Param, RunStatus, RunTag
from omegaconf import DictConfig, OmegaConf

from mmgnn.tracking import plots
from mmgnn.tracking.params import config_hash, config_params, run_name
from mmgnn.tracking.store import (
    ensure_experiment,
    get_client,
    git_commit,
    resolve_uri,
    retry_locked,
)

log = logging.getLogger(__name__)

PARENT_FILE = "mlflow_parent.json"
TAG_HASH = "mmgnn.config_hash"
TAG_SWEEP = "mmgnn.sweep_id"
TAG_STATUS = "mmgnn.status"
TAG_REUSED = "mmgnn.reused_by"  # + ".<parent run id>" on a FINISHED run a later sweep reused


@dataclass
class SweepInfo:
    """What the sweep callback wrote into the sweep folder for its jobs."""

    parent_run_id: str
    sweep_id: str
    experiment_id: str
    tracking_uri: str

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


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


class MLflowJobRun:
    """The MLflow run of one job: params, per-epoch metrics, results, artifacts, status.

    Use as a context manager around the job: an exception ends the run FAILED, Ctrl-C
    (``KeyboardInterrupt``) ends it KILLED, and only a job that returned ends FINISHED.
    It is also an epoch callback of the trainer (``on_epoch_end``).

    Args:
        cfg: the job's resolved config (``cfg.tracking`` says where and what to log).
        run_dir: the job's output folder (Hydra's ``runtime.output_dir``).
        choices: group -> chosen option (Hydra's ``runtime.choices``), for the run name.
        overrides: the job's command-line overrides, logged as a tag.
        sweep: the sweep's parent run, or ``None`` for a single run.
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
        self.client = get_client(self.uri)
        self.experiment_id = (
            sweep.experiment_id if sweep else ensure_experiment(self.client, cfg.tracking.experiment)
        )
        self.choices = choices
        self.name = cfg.tracking.run_name or run_name(choices, int(cfg.seed))
        self.overrides = overrides
        self.hash = config_hash(cfg)
        self.run_id: str | None = None

    @classmethod
    def from_hydra(cls, cfg: DictConfig) -> "MLflowJobRun":
        """Build from the running Hydra job (sweep parent read from the sweep folder)."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        sweep = SweepInfo.read(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
        choices = {k: v for k, v in hc.runtime.choices.items() if v is not None}
        return cls(cfg, hc.runtime.output_dir, choices, list(hc.overrides.task), sweep)

    # ------------------------------------------------------------ resumable sweeps
    def finished_run(self):
        """A FINISHED run of the same config hash in this experiment, or ``None``."""
        if self.cfg.tracking.force or not self.cfg.tracking.skip_finished:
            return None
        runs = retry_locked(
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`{TAG_HASH}` = '{self.hash}' and attributes.status = 'FINISHED'",
            max_results=1,
        )
        return runs[0] if runs else None

    def mark_reused(self, run) -> None:
        """Record that this sweep counts an earlier FINISHED run instead of re-running it."""
        if self.sweep is not None:
            retry_locked(
                self.client.set_tag, run.info.run_id, f"{TAG_REUSED}.{self.sweep.parent_run_id}", "1"
            )
        log.info("skipping: config %s already has FINISHED run %s (%s); tracking.force=true "
                 "re-runs it", self.hash, run.info.run_id, run.info.run_name)

    # ------------------------------------------------------------ lifecycle
    def run_of_folder(self):
        """The latest run logged from this job's run folder (what ``train.resume`` continues)."""
        runs = retry_locked(
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`mmgnn.run_dir` = '{self.run_dir}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def start(self) -> str:
        previous = self.run_of_folder() if OmegaConf.select(self.cfg, "train.resume") else None
        if previous is not None:  # continue the interrupted run: same id, same params
            self.run_id = previous.info.run_id
            retry_locked(self.client.update_run, self.run_id, status="RUNNING")
            retry_locked(self.client.set_tag, self.run_id, TAG_STATUS, "running")
            retry_locked(self.client.set_tag, self.run_id, "mmgnn.resumed", "true")
            log.info("MLflow run %s (%s) resumed in %s", self.name, self.run_id, self.uri)
            return self.run_id
        tags = {
            TAG_HASH: self.hash,
            TAG_STATUS: "running",
            "mmgnn.overrides": " ".join(self.overrides) or "(defaults)",
            "mmgnn.run_dir": str(self.run_dir),
            "mlflow.source.git.commit": git_commit(),
        }
        if self.sweep is not None:
            tags["mlflow.parentRunId"] = self.sweep.parent_run_id
            tags[TAG_SWEEP] = self.sweep.sweep_id
        run = retry_locked(
            self.client.create_run, self.experiment_id, run_name=self.name, tags=tags
        )
        self.run_id = run.info.run_id
        values = config_params(self.cfg)
        for group, option in self.choices.items():  # gnn.name=gat, even where no key says so
            if "/" not in group and group != "hydra":
                values.setdefault(f"{group}.name", str(option))
        params = [Param(k, v) for k, v in values.items()]
        for chunk in _chunks(params, 100):
            retry_locked(self.client.log_batch, self.run_id, params=chunk)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
        log.info("MLflow run %s (%s) in %s", self.name, self.run_id, self.uri)
        return self.run_id

    def end(self, status: str) -> None:
        retry_locked(self.client.set_tag, self.run_id, TAG_STATUS, status.lower())
        retry_locked(self.client.set_terminated, self.run_id, status)

    def __enter__(self) -> "MLflowJobRun":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.end(RunStatus.to_string(RunStatus.FINISHED))
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.to_string(RunStatus.KILLED))
        else:
            retry_locked(self.client.set_tag, self.run_id, "mmgnn.error",
                         f"{exc_type.__name__}: {exc}"[:5000])
            self.end(RunStatus.to_string(RunStatus.FAILED))
        return False

    # ------------------------------------------------------------ logging
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        entries = [
            Metric(k, float(v), now, 0 if step is None else step)
            for k, v in metrics.items()
            if v is not None and v == v  # drop NaN (MLflow stores it, but tables choke)
        ]
        for chunk in _chunks(entries, 1000):
            retry_locked(self.client.log_batch, self.run_id, metrics=chunk)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)

    def log_result(self, result) -> None:
        """Final test metrics, summary metrics and every artifact of a finished job."""
        summary = {
            "best_epoch": float(result.best_epoch),
            f"best_{result.monitor}": result.value,
        }
        best = next((h for h in result.history if h["epoch"] == result.best_epoch), {})
        summary.update({f"best_{k}": v for k, v in best.items() if k.startswith("val/")})
        self.log_metrics({**result.test_metrics, **summary})
        tags = [RunTag("mmgnn.monitor", result.monitor)]
        retry_locked(self.client.log_batch, self.run_id, tags=tags)
        self._log_artifacts(result)

    def _log_file(self, path: Path, where: str | None = None) -> None:
        retry_locked(self.client.log_artifact, self.run_id, str(path), where)

    def _log_artifacts(self, result) -> None:
        self._log_file(self.run_dir / "config.yaml")
        hydra_dir = self.run_dir / ".hydra"
        if hydra_dir.is_dir():
            retry_locked(self.client.log_artifacts, self.run_id, str(hydra_dir), "hydra")
        for name, path in result.files.items():
            if Path(path).exists() and (name != "best_checkpoint" or self.cfg.tracking.log_checkpoint):
                self._log_file(path, "checkpoints" if name == "best_checkpoint" else None)
        standardizer = self.run_dir / "standardizer.npz"
        if standardizer.exists():
            self._log_file(standardizer)
        if self.cfg.tracking.log_plots and result.history:
            for path in self._plots(result):
                self._log_file(path, "plots")

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
            paths.append(plots.gate_distribution(out.gates, out.present, names, folder / "gates.png"))
        return paths
