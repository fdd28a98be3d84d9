"""A sweep's runs from MLflow as one tidy pandas frame.

Which runs: the sweep's parent run (tag ``mmgnn.role=sweep``), its children
(``tags.mlflow.parentRunId``), the earlier FINISHED runs the sweep reused instead of re-running
them (tag ``mmgnn.reused_by.<parent id>``), and the jobs that failed before their MLflow run
existed (the parent's ``failed_jobs.json`` artifact). Detailed metrics that a run did not log to
MLflow come from its ``metrics.csv`` artifact (:func:`fill_detail_metrics`).

The frame has the layout of ``mlflow.search_runs(output_format="pandas")`` (``metrics.*``,
``params.*``, ``tags.*``) plus one column per override key (see :func:`load_runs`).
"""
from __future__ import annotations

import json
import math
import re
import shlex
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mmgnn.tracking import retry_locked
from mmgnn.tracking.names import (
    FAILED_JOBS_FILE,
    METRICS_FILE,
    NO_OVERRIDES,
    ROLE_SWEEP,
    TAG_ERROR,
    TAG_EXPECTED,
    TAG_OVERRIDES,
    TAG_PARENT,
    TAG_REUSED,
    TAG_ROLE,
)

SEED = "seed"  # the model's seed (initialisation, batches): a column of every runs frame
#: The replicate keys: the data's seed (split, synthesis, partners) and the model's seed.
#: Never factors; runs are compared only within groups equal in each of them (those a frame has).
REPLICATES = ("data.seed", SEED)
FINISHED = "FINISHED"
MISSING = "(default)"  # the value of an override key that a run neither overrides nor logs
NO_RUN = "no_run"  # ``source`` of a job that failed before its MLflow run existed
# Columns of the runs frame that are not override keys.
BASE_COLUMNS = ("run_id", "run_name", "experiment_id", "status", "start_time", "end_time",
                "artifact_uri", "source", "overrides", "error")


class ReportError(Exception):
    """A report that cannot be made (unknown experiment or parent run, bad arguments or files)."""


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str,
               order_by: list[str] | None = None, max_results: int | None = None) -> list:
    """``MlflowClient.search_runs`` over every page (or the first ``max_results`` runs)."""
    runs, token = [], None
    while True:
        page_size = 50_000 if max_results is None else min(max_results - len(runs), 50_000)
        page = retry_locked(client.search_runs, experiment_ids, filter_string=filter_string,
                            max_results=page_size, order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token or (max_results is not None and len(runs) >= max_results):
            return runs


def runs_frame(runs: Iterable) -> pd.DataFrame:
    """MLflow ``Run`` entities as a DataFrame in ``mlflow.search_runs``' pandas layout.

    One row per run: ``run_id``, ``run_name``, ``experiment_id``, ``status``, ``start_time``,
    ``end_time``, ``artifact_uri`` and ``metrics.<key>`` (last value), ``params.<key>``,
    ``tags.<key>``. (``mlflow.search_runs`` itself reads the global tracking URI; this takes
    the runs from an explicit client.)
    """
    records = []
    for run in runs:
        info = run.info
        record = {
            "run_id": info.run_id,
            "run_name": info.run_name,
            "experiment_id": info.experiment_id,
            "status": info.status,
            "start_time": pd.to_datetime(info.start_time, unit="ms", utc=True),
            "end_time": pd.to_datetime(info.end_time, unit="ms", utc=True),
            "artifact_uri": info.artifact_uri,
        }
        record.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        record.update({f"params.{k}": v for k, v in run.data.params.items()})
        record.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame(columns=list(BASE_COLUMNS[:7]))
    return frame


def parse_overrides(text: str | None) -> dict[str, str]:
    """``"+experiment=x skip=none seed=1"`` -> ``{"experiment": "x", "skip": "none", "seed": "1"}``.

    Hydra's ``+``/``++``/``~`` prefixes are dropped from the keys; ``(defaults)`` (a job without
    overrides) gives ``{}``. Quoted values are split as a shell would.
    """
    if not isinstance(text, str) or not text.strip() or text.strip() == NO_OVERRIDES:
        return {}
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    out: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        deleted = key.startswith("~")
        key = key.lstrip("+~")
        if key:
            out[key] = value if sep else ("(deleted)" if deleted else "")
    return out


def as_float(value: object) -> float | None:
    """``value`` as a float, ``None`` when it is not a number."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def match_level(value: str, levels: Iterable[str]) -> str:
    """``value`` spelled as one of ``levels`` when they are equal numbers (``3e-3`` ~ ``0.003``)."""
    levels = list(levels)
    if value in levels:
        return value
    number = as_float(value)
    if number is not None:
        for level in levels:
            if as_float(level) == number:
                return level
    return value


def get_parent(client: MlflowClient, parent_id: str):
    """The run ``parent_id``; ReportError when it is not a run id or no such run exists."""
    if not re.fullmatch(r"[0-9A-Za-z_-]+", parent_id or ""):
        raise ReportError(f"not a run id: {parent_id!r}")
    try:
        return retry_locked(client.get_run, parent_id)
    except MlflowException as error:
        raise ReportError(f"no run {parent_id!r} in {client.tracking_uri}") from error


def latest_sweep(client: MlflowClient, experiment: str):
    """The parent run (tag ``mmgnn.role=sweep``) that started last in ``experiment``."""
    found = retry_locked(client.get_experiment_by_name, experiment)
    if found is None or found.lifecycle_stage != "active":
        names = sorted(e.name for e in retry_locked(client.search_experiments))
        raise ReportError(f"no experiment named {experiment!r} in {client.tracking_uri} "
                          f"(experiments: {', '.join(names) or 'none'})")
    runs = search_all(client, [found.experiment_id], f"tags.`{TAG_ROLE}` = '{ROLE_SWEEP}'",
                      order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise ReportError(f"experiment {experiment!r} has no sweep (no run tagged {TAG_ROLE}={ROLE_SWEEP})")
    return runs[0]


def finished_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs (the only ones in the statistics)."""
    return df[df["status"] == FINISHED] if "status" in df.columns else df


# ----------------------------------------------------------------------------- artifacts
def _download(client: MlflowClient, run_id: str, name: str, folder: str) -> Path | None:
    """Artifact ``name`` at the root of run ``run_id`` downloaded into ``folder``; ``None``
    when the run has no such artifact."""
    try:
        present = {a.path for a in retry_locked(client.list_artifacts, run_id)}
        if name not in present:
            return None
        return Path(retry_locked(client.download_artifacts, run_id, name, folder))
    except (MlflowException, OSError) as error:
        raise ReportError(f"run {run_id}: cannot read artifact {name}: "
                          f"{type(error).__name__}: {error}") from error


def read_metrics_csv(path: str | Path, where: str = "") -> pd.Series:
    """A ``metrics.csv`` table (columns ``key``, ``value``, ...) as ``key -> value``.

    Raises ReportError naming ``where`` (the run) when a column is missing or a value is not
    a number.
    """
    where = where or str(path)
    try:
        table = pd.read_csv(path, dtype={"key": str, "value": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ReportError(f"{where}: {METRICS_FILE} is not a CSV table: {error}") from error
    missing = [c for c in ("key", "value") if c not in table.columns]
    if missing:
        raise ReportError(f"{where}: {METRICS_FILE} lacks the column(s) {', '.join(missing)} "
                          f"(columns: {', '.join(map(str, table.columns))})")
    values = pd.to_numeric(table["value"], errors="coerce")
    bad = values.isna() & ~table["value"].str.lower().isin(["nan", ""])
    if bad.any():
        row = int(bad.idxmax())
        raise ReportError(f"{where}: {METRICS_FILE} row {row + 2}: value "
                          f"{table['value'].iloc[row]!r} of {table['key'].iloc[row]!r} is not a number")
    return pd.Series(values.to_numpy(float), index=table["key"].to_numpy()).dropna()


def fill_detail_metrics(client: MlflowClient, df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``df`` with ``metrics.<key>`` completed from each run's ``metrics.csv`` artifact.

    Only FINISHED runs lacking one of ``keys`` among their MLflow metrics are read, each
    once; a value logged as an MLflow metric is never replaced. Runs without the artifact
    (older runs) keep NaN. A key no run has adds no column.
    """
    names = list(dict.fromkeys(k.removeprefix("metrics.") for k in keys))
    if not names or df.empty:
        return df
    df = df.copy()
    columns = [f"metrics.{k}" for k in names]
    added = [c for c in columns if c not in df.columns]
    for column in added:
        df[column] = math.nan
    lacking = (df["status"] == FINISHED) & df[columns].isna().any(axis=1)
    with tempfile.TemporaryDirectory() as folder:
        for i in df.index[lacking]:
            run_id = df.at[i, "run_id"]
            path = _download(client, run_id, METRICS_FILE, f"{folder}/{run_id}")
            if path is None:
                continue
            values = read_metrics_csv(path, f"run {run_id} ({df.at[i, 'run_name']})")
            for name, column in zip(names, columns):
                if pd.isna(df.at[i, column]) and name in values.index:
                    df.at[i, column] = values[name]
    return df.drop(columns=[c for c in added if df[c].isna().all()])


def expected_jobs(parent) -> int | None:
    """How many jobs the sweep launched (``mmgnn.expected_jobs``, a tag or param of its parent
    run), ``None`` when the parent does not say."""
    value = parent.data.tags.get(TAG_EXPECTED, parent.data.params.get(TAG_EXPECTED))
    if value is None:
        return None
    number = as_float(value)
    if number is None or number < 0 or number != int(number):
        raise ReportError(f"run {parent.info.run_id}: {TAG_EXPECTED}={value!r} is not a job count")
    return int(number)


def unstarted_jobs(client: MlflowClient, parent_id: str) -> pd.DataFrame:
    """The jobs that failed before their MLflow run existed, one FAILED row each.

    Read from the parent's ``failed_jobs.json`` artifact (a list of ``{"job": int,
    "overrides": [str, ...], "error": str}``); no artifact gives no rows. Rows have
    ``run_id`` '', ``run_name`` ``job <n>``, ``source`` ``no_run``.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = _download(client, parent_id, FAILED_JOBS_FILE, folder)
        text = path.read_text() if path is not None else "[]"
    where = f"run {parent_id}: {FAILED_JOBS_FILE}"
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReportError(f"{where} is not JSON: {error}") from error
    if not isinstance(entries, list):
        raise ReportError(f"{where} must be a list of jobs, got {type(entries).__name__}")
    rows = []
    for n, entry in enumerate(entries):
        ok = (isinstance(entry, dict) and isinstance(entry.get("job"), int)
              and isinstance(entry.get("overrides"), list)
              and all(isinstance(o, str) for o in entry["overrides"])
              and isinstance(entry.get("error"), str))
        if not ok:
            raise ReportError(f"{where} entry {n}: expected {{'job': int, 'overrides': [str], "
                              f"'error': str}}, got {entry!r}")
        rows.append({"run_id": "", "run_name": f"job {entry['job']}", "status": "FAILED",
                     "overrides": " ".join(entry["overrides"]) or NO_OVERRIDES,
                     "error": entry["error"], "source": NO_RUN})
    return pd.DataFrame(rows, columns=["run_id", "run_name", "status", "overrides", "error", "source"])


# ----------------------------------------------------------------------------- the frame
def _override_columns(df: pd.DataFrame) -> pd.DataFrame:
    """One column per override key of any run, holding each run's value (see :func:`load_runs`)."""
    parsed = [parse_overrides(text) for text in df["overrides"]]
    keys = list(dict.fromkeys(key for p in parsed for key in p))
    if SEED not in keys:
        keys.append(SEED)
    columns = {}
    for key in keys:
        if key in BASE_COLUMNS or key.startswith(("metrics.", "params.", "tags.")):
            continue  # cannot be a config key of this project; never shadow MLflow's columns
        levels = {p[key] for p in parsed if key in p}
        values = []
        for i, p in enumerate(parsed):
            value = p.get(key)
            if value is None:
                for column in (f"params.{key}.name", f"params.{key}"):
                    logged = df[column].iloc[i] if column in df.columns else None
                    if isinstance(logged, str):
                        value = match_level(logged, levels)
                        break
            values.append(MISSING if value is None else value)
        columns[key] = values
    return pd.DataFrame(columns, index=df.index, dtype=object)


def load_runs(client: MlflowClient, parent_id: str, metrics: Sequence[str] = ()) -> pd.DataFrame:
    """The runs of sweep ``parent_id``: its children, the runs it reused and the jobs that
    failed before their run existed, one row each.

    Columns: those of :func:`runs_frame`, plus ``source`` (``child``; ``reused``: an earlier
    FINISHED run tagged ``mmgnn.reused_by.<parent_id>``; ``no_run``: a job of the parent's
    ``failed_jobs.json`` that has no run), ``overrides`` (the ``mmgnn.overrides`` tag),
    ``error`` (the ``mmgnn.error`` tag), and one column per override key of any run (``skip``,
    ``fusion``, ``seed``, ``optim.lr``, ...) holding the run's value. A run that does not
    override a key (a reused run launched by another command) gets the value it logged as a
    param (``<key>.name`` for a config group, else ``<key>``), spelled like the other runs'
    values when numerically equal, else ``(default)``. ``seed`` is always there (``data.seed``
    when some run overrides it). ``metrics`` not logged to MLflow by a finished run are read
    from its ``metrics.csv`` (:func:`fill_detail_metrics`).

    Raises ReportError when ``parent_id`` is no run, or is neither tagged as a sweep nor has
    children.
    """
    parent = get_parent(client, parent_id)
    experiment = [parent.info.experiment_id]
    children = search_all(client, experiment, f"tags.{TAG_PARENT} = '{parent_id}'")
    reused = search_all(client, experiment, f"tags.`{TAG_REUSED}.{parent_id}` = '1'")
    if not children and not reused and parent.data.tags.get(TAG_ROLE) != ROLE_SWEEP:
        raise ReportError(f"run {parent_id} is not a sweep's parent run (no tag "
                          f"{TAG_ROLE}={ROLE_SWEEP} and no child runs)")
    child_ids = {run.info.run_id for run in children}
    runs = children + [run for run in reused if run.info.run_id not in child_ids]
    df = runs_frame(runs)
    df["source"] = ["child" if rid in child_ids else "reused" for rid in df["run_id"]]
    df["overrides"] = df.get(f"tags.{TAG_OVERRIDES}", pd.Series(None, index=df.index, dtype=object))
    df["error"] = df.get(f"tags.{TAG_ERROR}", pd.Series(None, index=df.index, dtype=object))
    df = df.sort_values(["start_time", "run_name"], kind="stable").reset_index(drop=True)
    unstarted = unstarted_jobs(client, parent_id)
    unstarted = unstarted[~unstarted["overrides"].isin(set(df["overrides"].dropna()))]
    if not unstarted.empty:
        df = pd.concat([df, unstarted], ignore_index=True)
    df = pd.concat([df, _override_columns(df)], axis=1)
    return fill_detail_metrics(client, df, metrics)


def factors_of(df: pd.DataFrame) -> list[str]:
    """The sweep's factors: override keys whose values vary across its runs, the replicate
    keys (:data:`REPLICATES`: ``data.seed``, ``seed``) excepted.

    A key varies when the runs that override it give it more than one value (a key that only
    some runs override, with one value, e.g. ``+experiment=...`` missing from a reused run of
    another sweep, is no factor). Keys come in the order the overrides name them.
    """
    parsed = [parse_overrides(text) for text in df.get("overrides", [])]
    keys = list(dict.fromkeys(key for p in parsed for key in p))
    return [
        key for key in keys
        if key not in REPLICATES and key in df.columns
        and len({p[key] for p in parsed if key in p}) > 1
    ]
