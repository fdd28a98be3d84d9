"""MLflow tracking, local-first: one run per Hydra job and a parent run per sweep, each recorded
to its folder before MLflow sees it (``tracking/events.jsonl``), a curated headline set of
MLflow metrics with the full detail in ``metrics.csv``, resumable sweeps that reuse only runs of
the same code version (:mod:`mmgnn.tracking.version`), and
``python -m mmgnn.tracking.sync`` to replay folders to a server that was away."""
from mmgnn.tracking.job_run import MLflowJobRun
from mmgnn.tracking.store import TrackingUnreachable, default_tracking_uri, project_root
from mmgnn.tracking.sync import sync
from mmgnn.tracking.version import code_version

__all__ = ["MLflowJobRun", "TrackingUnreachable", "code_version", "default_tracking_uri",
           "project_root", "sync"]
