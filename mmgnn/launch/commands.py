"""The commands a run or a sweep prints for what comes next: open the MLflow UI, write the
report, replay an offline folder. They name the interpreter that is running (``sys.executable``),
so they work in whatever environment the user installed mmgnn into."""
from __future__ import annotations

import shlex
import sys

UI_PORT = 5000


def python(*args: str) -> str:
    """``<this interpreter> -m ...`` as one shell-quoted line."""
    return shlex.join([sys.executable, *args])


def ui_command(tracking_uri: str) -> str:
    """How to look at ``tracking_uri`` in the MLflow UI: start one for a local store, or open
    the server's address."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return python("-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--port", str(UI_PORT))


def ui_address(tracking_uri: str) -> str:
    """The UI's address: the server's, or the one :func:`ui_command` starts."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return f"http://127.0.0.1:{UI_PORT}"


def run_link(tracking_uri: str, experiment_id: str | None, run_id: str | None) -> str:
    """The run's page in the UI (``None`` ids: the run is not on the server yet)."""
    if experiment_id is None or run_id is None:
        return "(not on the server yet: replay the run folder with mmgnn.tracking.sync)"
    return f"{ui_address(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}"


def report_command(parent_run_id: str, tracking_uri: str) -> str:
    """How to write a sweep's ablation report again."""
    return python("-m", "experiments.report", "--parent", parent_run_id, "--tracking-uri", tracking_uri)


def sync_command(folder) -> str:
    """How to replay a run or sweep folder to its server once the server is back."""
    return python("-m", "mmgnn.tracking.sync", str(folder))


def run_footer(run_dir, tracking_uri: str | None, experiment_id: str | None, run_id: str | None) -> str:
    """What a finished run prints last: its folder, its MLflow page and the UI command."""
    lines = ["", f"run folder: {run_dir}"]
    if tracking_uri is not None:
        lines += [f"MLflow run: {run_link(tracking_uri, experiment_id, run_id)}",
                  f"open the UI: {ui_command(tracking_uri)}"]
        if run_id is None:
            lines.append(f"replay it: {sync_command(run_dir)}")
    return "\n".join(lines)
