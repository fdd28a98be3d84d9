"""Where runs are stored: the default SQLite store, experiments, retries on a locked database."""
from __future__ import annotations

import logging
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
T = TypeVar("T")


def project_root() -> Path:
    """The repository root (the folder holding ``run.py``), whatever the current directory."""
    return Path(__file__).resolve().parents[2]


def default_tracking_uri() -> str:
    """``sqlite:///<project>/outputs/mlflow.db``: a local store that needs no server."""
    path = project_root() / "outputs" / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def resolve_uri(uri: str | None) -> str:
    return uri or default_tracking_uri()


def is_local_store(uri: str) -> bool:
    """SQLite and file stores keep artifacts on this machine (under ``outputs/``)."""
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def _is_locked(error: Exception) -> bool:
    text = str(error).lower()
    return "database is locked" in text or "database table is locked" in text


def retry_locked(fn: Callable[..., T], *args, attempts: int = 12, **kwargs) -> T:
    """Call ``fn``, retrying with jittered exponential back-off while SQLite is locked.

    Parallel jobs writing one SQLite store make SQLAlchemy raise "database is locked"; the
    write is retried instead of losing the run. Any other error is raised at once.
    """
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # MlflowException or sqlalchemy's OperationalError
            if not _is_locked(error) or attempt == attempts - 1:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def get_client(uri: str | None) -> MlflowClient:
    return MlflowClient(tracking_uri=resolve_uri(uri))


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when missing (race-safe across processes).

    With a local store, artifacts go to ``<project>/outputs/mlartifacts`` rather than a
    ``mlruns`` folder in whatever directory the job happens to run in.
    """
    found = retry_locked(client.get_experiment_by_name, name)
    if found is not None:
        return found.experiment_id
    location = None
    if is_local_store(client.tracking_uri):
        location = (project_root() / "outputs" / "mlartifacts").as_uri()
    try:
        return retry_locked(client.create_experiment, name, artifact_location=location)
    except MlflowException:
        found = retry_locked(client.get_experiment_by_name, name)
        if found is None:
            raise
        return found.experiment_id


def git_commit() -> str:
    """The project's current git commit (``unknown`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
