"""MLflow tracking: one run per Hydra job, a parent run per sweep, resumable sweeps."""
from mmgnn.tracking.job_run import MLflowJobRun
from mmgnn.tracking.store import default_tracking_uri, project_root

__all__ = ["MLflowJobRun", "default_tracking_uri", "project_root"]
