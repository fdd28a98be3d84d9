"""A sweep in the MLflow UI, checked in a real browser (Chromium driven by Playwright).

    python -m experiments.ui_check --tracking-uri http://127.0.0.1:5000 --parent <parent id>
    python -m experiments.ui_check --backend-store-uri sqlite:///outputs/mlflow.db --parent <id>

With ``--backend-store-uri`` it starts its own ``mlflow server`` on a free local port (and
stops it at the end). It opens the sweep's experiment the way a new user does, checks that
MLflow opens it in the model-training view (the runs table, thanks to the experiment tag
``mlflow.experimentKind``), filters the sweep's children, shows the headline metric and the
swept params through the table's "Columns" menu, and checks every shown cell against the value
the MLflow API returns for that run. Screenshots go to ``--out`` (default ``docs/img``).
Uses the system Chromium (``--chromium``, default ``/usr/bin/chromium``); it never downloads
a browser. Exits non-zero, naming the mismatch, when a check fails.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from mmgnn.tracking.names import TAG_PARENT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
METRIC = "test/retrieval/mean_recall"
TIMEOUT_MS = 120_000


class UICheckError(Exception):
    """The UI does not show what the API says (or could not be driven)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(backend_store_uri: str, folder: Path) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` on a free port of 127.0.0.1; returns the process and its URL."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    process = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", backend_store_uri,
         "--artifacts-destination", str(folder / "ui_check_artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            if process.poll() is not None:
                raise UICheckError(f"mlflow server exited with {process.returncode}")
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    raise UICheckError("mlflow server did not start within 180 s")


def expected_values(client: MlflowClient, parent_id: str) -> tuple[str, list[str], dict]:
    """The experiment id, the swept factors and ``{run name: {column: value}}`` from the API."""
    parent = client.get_run(parent_id)
    factors = [f for f in parent.data.tags.get("mmgnn.factors", "").split(",") if f]
    if not factors:
        raise UICheckError(f"run {parent_id} has no mmgnn.factors tag: is it a sweep's parent?")
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.{TAG_PARENT} = '{parent_id}'")
    if not children:
        raise UICheckError(f"run {parent_id} has no child runs")
    rows = {}
    for run in children:
        rows[run.info.run_name] = {METRIC: run.data.metrics.get(METRIC),
                                   **{f: run.data.params.get(f) for f in factors}}
    return parent.info.experiment_id, factors, rows


def show_column(page, name: str) -> None:
    """Tick ``name`` in the runs table's "Columns" menu."""
    page.get_by_test_id("column-selection-dropdown").first.click()
    page.get_by_placeholder("Search").first.fill(name)
    page.wait_for_timeout(500)
    # The menu highlights the match inside longer names (data.loader.seed): take the entry
    # whose whole text is the name.
    for entry in page.get_by_text(name, exact=True).all():
        if entry.evaluate("e => e.parentElement.innerText.trim()") == name:
            entry.click()
            break
    else:
        raise UICheckError(f"the Columns menu has no entry {name!r}")
    page.keyboard.press("Escape")


def table_values(page, columns: dict[str, str]) -> dict[str, dict[str, str]]:
    """``{run name: {column: cell text}}`` of the runs table (ag-grid); ``columns`` maps each
    column name to its grid id prefix (``metrics`` or ``params``)."""
    return page.evaluate(
        """(columns) => {
          // Pinned and scrolling columns are separate row elements sharing a row-id.
          const out = {};
          for (const link of document.querySelectorAll('[col-id="attributes.`Run Name`"] a')) {
            const id = link.closest('[row-id]').getAttribute('row-id');
            const cells = out[link.innerText.trim()] = {};
            for (const [column, kind] of Object.entries(columns)) {
              const cell = document.querySelector(
                `[row-id="${id}"] [col-id="${kind}.\\`${column}\\`"]`);
              if (cell) cells[column] = cell.innerText.trim();
            }
          }
          return out;
        }""",
        columns,
    )


def same(shown: str, value) -> bool:
    if value is None:
        return shown in ("", "-")
    if isinstance(value, float):
        try:
            return math.isclose(float(shown), value, rel_tol=0, abs_tol=10 ** -3.5)
        except ValueError:
            return False
    return shown == str(value)


def check(uri: str, parent_id: str, out: Path, chromium: str) -> list[Path]:
    """Drive the UI; raise :class:`UICheckError` on a mismatch; return the screenshots."""
    from playwright.sync_api import sync_playwright

    client = MlflowClient(uri)
    experiment_id, factors, expected = expected_values(client, parent_id)
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1700, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        # MLflow 3.17 opens experiments in its GenAI view unless the address (or the
        # "Model training" switch) asks for the training view: the link the sweep prints does.
        page.goto(f"{uri}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
        page.get_by_test_id("column-selection-dropdown").first.wait_for()
        try:  # the sweep is one collapsed parent row: expand it
            page.locator(f'[row-id="{parent_id}"] [col-id="attributes.`Run Name`"] button').click()
            page.get_by_text(next(iter(expected)), exact=True).first.wait_for()
        except Exception:
            page.screenshot(path=str(out / "ui_check_failed.png"))
            raise UICheckError(f"the sweep's parent row did not expand into its children; see "
                               f"{out / 'ui_check_failed.png'}")
        close = page.get_by_role("button", name="Close")  # the assistant side panel, if any
        if close.count():
            close.first.click()
        for column in [METRIC, *factors]:
            show_column(page, column)
        page.wait_for_timeout(1500)
        found = table_values(page, {METRIC: "metrics", **{f: "params" for f in factors}})
        shots.append(out / "mlflow_sweep_headline_columns.png")
        page.screenshot(path=str(shots[-1]))
        # The parent run's page: its description is the sweep's ablation table.
        page.goto(f"{uri}/#/experiments/{experiment_id}/runs/{parent_id}"
                  "?workflowType=machine_learning")
        page.get_by_text("The full report: artifact", exact=False).first.wait_for()
        page.wait_for_timeout(1500)
        shots.append(out / "mlflow_sweep_parent_description.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
        browser.close()
    for name, values in expected.items():
        shown = found.get(name)
        if shown is None:
            raise UICheckError(f"run {name} is not in the table (rows: {sorted(found)})")
        missing = [c for c in values if c not in shown]
        if missing:
            raise UICheckError(f"run {name}: columns not shown: {missing}")
        for column, value in values.items():
            if not same(shown.get(column, ""), value):
                raise UICheckError(f"run {name}, column {column}: the UI shows "
                                   f"{shown.get(column)!r}, the API returns {value!r}")
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.ui_check",
                                     description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tracking-uri", help="a running MLflow server (http://...)")
    where.add_argument("--backend-store-uri", help="start a server on this store (sqlite:///...)")
    parser.add_argument("--parent", required=True, help="the sweep's parent run id")
    parser.add_argument("--out", default="docs/img", help="screenshot folder")
    parser.add_argument("--chromium", default=CHROMIUM, help="the Chromium executable")
    args = parser.parse_args(argv)
    if shutil.which(args.chromium) is None:
        print(f"ui_check: no Chromium at {args.chromium} (apt-get install chromium)", file=sys.stderr)
        return 2
    server = None
    try:
        uri = args.tracking_uri
        if uri is None:
            server, uri = start_server(args.backend_store_uri, Path(tempfile.mkdtemp()))
        shots = check(uri, args.parent, Path(args.out), args.chromium)
    except UICheckError as error:
        print(f"ui_check: {error}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    print("ui_check: the headline metric and swept params show the API's values; screenshots:")
    for shot in shots:
        print(f"  {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
