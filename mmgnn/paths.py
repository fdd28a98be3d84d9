"""Where mmgnn writes, in one place: the root of every output and a run folder's files.

The root (:func:`home`) is ``$MMGNN_HOME`` when set, else ``<project>/outputs``. Under it:

- ``runs/<day>/<time>/``: single runs, ``multirun/<day>/<time>/<job>/``: sweeps (Hydra's
  ``hydra.run.dir`` and ``hydra.sweep.dir`` in ``conf/config.yaml`` read ``MMGNN_HOME``, which
  ``run.py`` sets to :func:`home` when it is not set, so Hydra and this module agree);
- ``mlflow.db``: the default MLflow store (``tracking.uri=null``), ``mlartifacts/``: the
  artifacts of a local store, ``reports/``: sweep reports written outside a sweep folder.

A run folder holds what :mod:`mmgnn.train` writes (the names below) and what
:mod:`mmgnn.tracking` records (:mod:`mmgnn.tracking.names`).
"""
from __future__ import annotations

import os
from pathlib import Path

#: The environment variable that moves every output (run folders, the store, reports).
HOME_ENV = "MMGNN_HOME"
#: The root when it is not set, in the project folder.
DEFAULT_HOME = "outputs"

# A run folder's files, as training writes them and inference reads them.
HYDRA_DIR = ".hydra"  # Hydra's record of the job: CONFIG_FILE (the composed config), overrides
CONFIG_FILE = "config.yaml"  # the composed config in HYDRA_DIR; the resolved one at the root
MODEL_META_FILE = "model_meta.json"  # the data summary the model is built from (mmgnn.models.factory)
STANDARDIZER_FILE = "standardizer.npz"  # the train split's feature statistics
TEST_METRICS_FILE = "test_metrics.json"  # the test split's metrics and the monitored values
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.pt"  # in CHECKPOINT_DIR: the best validation epoch's weights
LAST_CHECKPOINT = "last.pt"  # in CHECKPOINT_DIR: the last epoch's state (train.resume)


def project_root() -> Path:
    """The repository root (the folder holding ``run.py``), whatever the current directory."""
    return Path(__file__).resolve().parents[1]


def home() -> Path:
    """The root of every output: ``$MMGNN_HOME``, else ``<project>/outputs`` (absolute)."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser().resolve() if value else project_root() / DEFAULT_HOME


def default_store() -> Path:
    """The SQLite file of the default MLflow store."""
    return home() / "mlflow.db"


def artifacts_dir() -> Path:
    """Where a local MLflow store keeps its artifacts."""
    return home() / "mlartifacts"


def reports_dir() -> Path:
    """Where a sweep's report goes when its parent run names no sweep folder."""
    return home() / "reports"
