"""Where runs are stored: the default SQLite store, experiments, retries on a locked database,
bounded HTTP requests and the test of an unreachable tracking server."""
from __future__ import annotations

import logging
import os
import random
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mmgnn import paths
from mmgnn.paths import project_root  # noqa: F401  (tracking's public name for the project root)
from mmgnn.tracking.names import EXPERIMENT_KIND_TRAINING, TAG_EXPERIMENT_KIND

log = logging.getLogger(__name__)
T = TypeVar("T")


def default_tracking_uri() -> str:
    """``sqlite:///<home>/mlflow.db`` (:func:`mmgnn.paths.default_store`): a local store that
    needs no server."""
    path = paths.default_store()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def resolve_uri(uri: str | None) -> str:
    return uri or default_tracking_uri()


def is_local_store(uri: str) -> bool:
    """SQLite and file stores keep artifacts on this machine (:func:`mmgnn.paths.artifacts_dir`)."""
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


# MLflow's own HTTP settings (read at every request), bounded so that an unreachable server
# costs seconds, not MLflow's default of 7 retries with exponential back-off (minutes). A value
# the user exported wins.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# Experiment tag that makes MLflow 3's UI open the experiment in its model-training view
# (runs table with params and metrics) rather than the GenAI view.
EXPERIMENT_KIND = (TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING)


class TrackingUnreachable(RuntimeError):
    """The MLflow tracking server did not answer (connection refused, timeout, 5xx)."""


def bound_http_requests() -> None:
    """Set :data:`HTTP_BOUNDS` in this process's environment where the user has not."""
    for key, value in HTTP_BOUNDS.items():
        os.environ.setdefault(key, value)
    # urllib3 warns at each retry; the recorder says once, in one line, what happened.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the server is away (as opposed to a request it refused)."""
    import requests

    if isinstance(error, (requests.ConnectionError, requests.Timeout, ConnectionError,
                          TimeoutError)):
        return True
    text = str(error)
    return isinstance(error, MlflowException) and (
        "failed with exception" in text or "Max retries exceeded" in text
    )


def unreachable_reason(error: BaseException) -> str:
    text = str(error)
    for phrase in ("Connection refused", "timed out", "Name or service not known",
                   "too many 5", "Connection reset", "Remote end closed"):
        if phrase in text:
            return phrase
    return type(error).__name__


def unreachable_message(uri: str, error: BaseException) -> str:
    """One line: what failed and the two ways on."""
    reason = unreachable_reason(error)
    return (f"MLflow tracking server {uri} is unreachable ({reason}): start it or fix "
            "tracking.uri, or add tracking.offline_ok=true to record to the run folder only "
            "and replay later with `python -m mmgnn.tracking.sync <run or sweep folder>`")


def get_client(uri: str | None) -> MlflowClient:
    uri = resolve_uri(uri)
    if uri.startswith(("http://", "https://")):
        bound_http_requests()
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when missing (race-safe across processes).

    With a local store, artifacts go to :func:`mmgnn.paths.artifacts_dir` rather than a
    ``mlruns`` folder in whatever directory the job happens to run in.
    """
    found = retry_locked(client.get_experiment_by_name, name)
    if found is not None:
        if found.tags.get(EXPERIMENT_KIND[0]) is None:
            retry_locked(client.set_experiment_tag, found.experiment_id, *EXPERIMENT_KIND)
        return found.experiment_id
    location = None
    if is_local_store(client.tracking_uri):
        location = paths.artifacts_dir().as_uri()
    try:
        return retry_locked(client.create_experiment, name, artifact_location=location,
                            tags=dict([EXPERIMENT_KIND]))
    except MlflowException as error:
        if is_unreachable(error):
            raise
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
