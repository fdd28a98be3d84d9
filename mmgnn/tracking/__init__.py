"""MLflow tracking, local-first: one run per Hydra job and a parent run per sweep, each recorded
to its folder before MLflow sees it (``tracking/events.jsonl``), a curated headline set of
MLflow metrics with the full detail in ``metrics.csv``, resumable sweeps that reuse only runs of
the same code version (:mod:`mmgnn.tracking.version`), and
``python -m mmgnn.tracking.sync`` to replay folders to a server that was away.

Tracking records what it is given (metrics, the monitored key, plot files) and imports nothing
above its layer; every tag and file name it uses is in :mod:`mmgnn.tracking.names`. The names
below are its public interface: :mod:`mmgnn.analysis` reads runs and :mod:`mmgnn.launch`
drives them through them.
"""
from mmgnn.tracking import names
from mmgnn.tracking.headline import tidy_metrics, write_metrics_csv
from mmgnn.tracking.job_run import MLflowJobRun, SweepInfo
from mmgnn.tracking.local import EVENTS, Recorder, connect
from mmgnn.tracking.store import (
    TrackingUnreachable,
    default_tracking_uri,
    git_commit,
    project_root,
    resolve_uri,
    retry_locked,
)
from mmgnn.tracking.sync import sync
from mmgnn.tracking.version import code_version

__all__ = ["EVENTS", "MLflowJobRun", "Recorder", "SweepInfo", "TrackingUnreachable", "code_version",
           "connect", "default_tracking_uri", "git_commit", "names", "project_root", "resolve_uri",
           "retry_locked", "sync", "tidy_metrics", "write_metrics_csv"]
