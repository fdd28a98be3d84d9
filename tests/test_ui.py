"""The MLflow UI in a real browser: a sweep's headline metric and swept params can be shown as
runs-table columns and hold the API's values (``experiments/ui_check.py``, which starts its own
``mlflow server`` on the sweep's store). The sweep is conftest's ``served_sweep`` (2 x 2 tiny
jobs, shared with test_tracking). Skipped where no Chromium or Playwright is installed
(``.ci/run`` installs both)."""
import os
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT
from test_tracking import SERVER_ENV

pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="no system Chromium")


def test_sweep_columns_in_the_mlflow_ui_hold_the_api_values(served_sweep, tmp_path):
    uri = f"sqlite:///{served_sweep.folder / 'server.db'}"
    client = MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("test").experiment_id],
                                   filter_string="tags.`mmgnn.role` = 'sweep'")
    check = subprocess.run(
        [sys.executable, "-m", "experiments.ui_check", "--backend-store-uri", uri,
         "--parent", parent.info.run_id, "--out", str(tmp_path / "img")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, **SERVER_ENV})
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-3000:]
    assert "show the API's values" in check.stdout
    assert (tmp_path / "img" / "mlflow_sweep_headline_columns.png").stat().st_size > 10_000
