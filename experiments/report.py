"""The ablation report of one sweep, from its MLflow runs.

    python -m experiments.report --experiment ablate_skip            (its latest sweep)
    python -m experiments.report --parent <parent run id> [--tracking-uri URI]
        [--out DIR] [--metrics m1,m2,...] [--baseline skip=none] [--no-log]

Which runs: the sweep's parent run (tag ``mmgnn.role=sweep``), its children
(``tags.mlflow.parentRunId``) and the earlier FINISHED runs the sweep reused instead of
re-running them (tag ``mmgnn.reused_by.<parent id>``). ``--experiment`` alone takes the sweep
whose parent started last.

The factors are the override keys (``mmgnn.overrides``) whose values vary across the sweep's
runs, ``seed`` excepted (the replicate). Only FINISHED runs enter the statistics; every other
run (FAILED, KILLED, RUNNING) is counted and named in ``report.md`` and ``failed.md``.

Written into ``<sweep dir>/report/`` (``--out`` overrides) and logged to the parent run under
``report/`` (unless ``--no-log``):

- ``ablation.csv|md``: one row per configuration of the factors, mean, std (ddof 1) and n over
  seeds of each metric, best first by the primary metric (the first of ``--metrics``);
- ``ranks.csv|md``, ``ranks_long.csv``, ``ranks_<factor>.png``: GraphGym's rank view (You, Ying
  & Leskovec 2020): within each group of runs equal in every other factor and the seed, the
  factor's levels ranked by the primary metric (1 = best), and each level's rank distribution;
- ``effects.csv|md``, ``effects_<factor>.png``: each level's marginal mean (over the other
  factors and seeds) with a 95% bootstrap interval, and its paired difference from the
  factor's baseline level (pairs equal in every other factor and the seed) with a 95%
  bootstrap interval;
- ``failed.md``: the runs that did not finish, with their status, overrides and error;
- ``report.md``: all of the above in one page.

Everything but :func:`main` is a plain function of a runs DataFrame (the layout of
``mlflow.search_runs(output_format="pandas")``: ``metrics.*``, ``params.*``, ``tags.*``,
plus one column per override key, see :func:`load_runs`).
"""
from __future__ import annotations

import argparse
import difflib
import math
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mmgnn.tracking.job_run import TAG_REUSED, TAG_SWEEP
from mmgnn.tracking.store import default_tracking_uri, project_root, retry_locked

#: Metrics of the tables when ``--metrics`` is not given (those logged by some finished run).
DEFAULT_METRICS = (
    "test/retrieval/mean_recall",
    "test/retrieval/map",
    "test/fused/acc",
    "test/worst_group/retrieval/mean_recall",
    "params/total",
    "time/total_s",
)
#: The reference level of each design dimension (else the first level in sorted order).
DEFAULT_BASELINES = {"gnn": "mlp", "skip": "none", "fusion": "concat", "loss": "cosine",
                     "train": "joint"}
REPLICATE = "seed"
FINISHED = "FINISHED"
MISSING = "(default)"  # the value of an override key that a run neither overrides nor logs
N_BOOT = 2000
# Columns of the runs frame that are not override keys.
BASE_COLUMNS = ("run_id", "run_name", "experiment_id", "status", "start_time", "end_time",
                "artifact_uri", "source", "overrides", "error")
# Files this module writes (removed from the report folder before it writes them again).
OWN_FILES = re.compile(r"^(report\.md|failed\.md|ablation\.(csv|md)|ranks\.(csv|md)|ranks_long\.csv"
                       r"|effects\.(csv|md)|(ranks|effects)_.+\.png)$")


class ReportError(Exception):
    """A report that cannot be made (unknown experiment or parent run, bad arguments)."""


# ----------------------------------------------------------------------------- loading
def _search(client: MlflowClient, experiment_ids: list[str], filter_string: str,
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
    if not isinstance(text, str) or not text.strip() or text.strip() == "(defaults)":
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


def _as_float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _match_level(value: str, levels: Iterable[str]) -> str:
    """``value`` spelled as one of ``levels`` when they are equal numbers (``3e-3`` ~ ``0.003``)."""
    levels = list(levels)
    if value in levels:
        return value
    number = _as_float(value)
    if number is not None:
        for level in levels:
            if _as_float(level) == number:
                return level
    return value


def _get_parent(client: MlflowClient, parent_id: str):
    if not re.fullmatch(r"[0-9A-Za-z_-]+", parent_id or ""):
        raise ReportError(f"not a run id: {parent_id!r}")
    try:
        return retry_locked(client.get_run, parent_id)
    except MlflowException as error:
        raise ReportError(f"no run {parent_id!r} in {client.tracking_uri}") from error


def load_runs(client: MlflowClient, parent_id: str) -> pd.DataFrame:
    """The runs of sweep ``parent_id``: its children plus the runs it reused, one row each.

    Columns: those of :func:`runs_frame`, plus ``source`` (``child`` or ``reused``: an earlier
    FINISHED run tagged ``mmgnn.reused_by.<parent_id>``), ``overrides`` (the
    ``mmgnn.overrides`` tag), ``error`` (the ``mmgnn.error`` tag), and one column per override
    key of any run (``skip``, ``fusion``, ``seed``, ``optim.lr``, ...) holding the run's value.
    A run that does not override a key (a reused run launched by another command) gets the
    value it logged as a param (``<key>.name`` for a config group, else ``<key>``), spelled like
    the other runs' values when numerically equal, else ``(default)``. ``seed`` is always there.

    Raises ReportError when ``parent_id`` is no run, or is neither tagged as a sweep nor has
    children.
    """
    parent = _get_parent(client, parent_id)
    experiment = [parent.info.experiment_id]
    children = _search(client, experiment, f"tags.mlflow.parentRunId = '{parent_id}'")
    reused = _search(client, experiment, f"tags.`{TAG_REUSED}.{parent_id}` = '1'")
    if not children and not reused and parent.data.tags.get("mmgnn.role") != "sweep":
        raise ReportError(f"run {parent_id} is not a sweep's parent run (no tag "
                          "mmgnn.role=sweep and no child runs)")
    child_ids = {run.info.run_id for run in children}
    runs = children + [run for run in reused if run.info.run_id not in child_ids]
    df = runs_frame(runs)
    df["source"] = ["child" if rid in child_ids else "reused" for rid in df["run_id"]]
    df["overrides"] = df.get("tags.mmgnn.overrides", pd.Series(None, index=df.index, dtype=object))
    df["error"] = df.get("tags.mmgnn.error", pd.Series(None, index=df.index, dtype=object))

    parsed = [parse_overrides(text) for text in df["overrides"]]
    keys = list(dict.fromkeys(key for p in parsed for key in p))
    if REPLICATE not in keys:
        keys.append(REPLICATE)
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
                        value = _match_level(logged, levels)
                        break
            values.append(MISSING if value is None else value)
        columns[key] = values
    df = pd.concat([df, pd.DataFrame(columns, index=df.index, dtype=object)], axis=1)
    return df.sort_values(["start_time", "run_name"], kind="stable").reset_index(drop=True)


def factors_of(df: pd.DataFrame) -> list[str]:
    """The sweep's factors: override keys whose values vary across its runs, ``seed`` excepted.

    A key varies when the runs that override it give it more than one value (a key that only
    some runs override, with one value, e.g. ``+experiment=...`` missing from a reused run of
    another sweep, is no factor). Keys come in the order the overrides name them.
    """
    parsed = [parse_overrides(text) for text in df.get("overrides", [])]
    keys = list(dict.fromkeys(key for p in parsed for key in p))
    return [
        key for key in keys
        if key != REPLICATE and key in df.columns
        and len({p[key] for p in parsed if key in p}) > 1
    ]


# ----------------------------------------------------------------------------- helpers
def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (not for ranks, times, sizes, losses)."""
    name = metric.removeprefix("metrics.")
    last = name.rsplit("/", 1)[-1]
    lower = (last in ("medr", "mean_rank") or last.endswith(("medr", "mean_rank"))
             or name.startswith(("time/", "params/")) or "/time/" in name
             or "loss" in last)
    return not lower


def _col(metric: str) -> str:
    return metric if metric.startswith("metrics.") else f"metrics.{metric}"


def _name(metric: str) -> str:
    return metric.removeprefix("metrics.")


def finished_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs (the only ones in the statistics)."""
    return df[df["status"] == FINISHED] if "status" in df.columns else df


def level_order(levels: Iterable, baseline: str | None = None) -> list[str]:
    """Levels sorted (numerically when all are numbers), the baseline first when given."""
    levels = list(dict.fromkeys(str(v) for v in levels))
    numbers = [_as_float(v) for v in levels]
    if all(n is not None for n in numbers):
        ordered = [v for _, v in sorted(zip(numbers, levels))]
    else:
        ordered = sorted(levels)
    if baseline is not None and baseline in ordered:
        ordered.remove(baseline)
        ordered.insert(0, baseline)
    return ordered


def choose_baselines(df: pd.DataFrame, factors: Sequence[str],
                     given: dict[str, str] | None = None) -> dict[str, str]:
    """The baseline level of each factor: ``given``, else :data:`DEFAULT_BASELINES` when that
    level was run, else the first level in sorted order (levels of finished runs preferred).

    Raises ReportError for a ``given`` factor or level the sweep does not have.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(factors))
    if unknown:
        raise ReportError(f"--baseline names {unknown}, which the sweep does not vary "
                          f"(factors: {list(factors) or 'none'})")
    finished = finished_runs(df)
    out = {}
    for factor in factors:
        every = level_order(df[factor])
        done = level_order(finished[factor]) or every
        if factor in given:
            level = _match_level(given[factor], every)
            if level not in every:
                raise ReportError(f"--baseline {factor}={given[factor]}: no such level "
                                  f"(levels: {', '.join(every)})")
            out[factor] = level
        elif DEFAULT_BASELINES.get(factor) in done:
            out[factor] = DEFAULT_BASELINES[factor]
        else:
            out[factor] = done[0]
    return out


def bootstrap_ci(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement).

    Each call draws from its own ``numpy.random.default_rng(seed)``, so the interval does not
    depend on what else was computed. NaN for no values; degenerate for equal values.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _cells(df: pd.DataFrame, factors: Sequence[str], factor: str, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """Finished runs' ``metric`` averaged per (other factors, seed, level): one value per cell."""
    col = _col(metric)
    runs = finished_runs(df)
    others = [f for f in factors if f != factor]
    if REPLICATE in runs.columns and REPLICATE not in others:
        others.append(REPLICATE)
    if col not in runs.columns or runs.empty:
        return pd.DataFrame(columns=[*others, factor, col]), others
    runs = runs[runs[col].notna()]
    if not others:  # one factor and no replicate column: one group
        runs = runs.assign(_all="all")
        others = ["_all"]
    cells = runs.groupby([*others, factor], sort=False)[col].mean().reset_index()
    return cells, others


# ----------------------------------------------------------------------------- tables
def ablation_table(df: pd.DataFrame, factors: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per configuration of ``factors`` (finished runs only): ``runs`` and, for each
    metric, ``<metric>:mean``, ``<metric>:std`` (ddof 1, over seeds) and ``<metric>:n``;
    sorted best first by the first metric (missing values last).
    """
    runs = finished_runs(df)
    keys = list(factors) or ["config"]
    if not factors:
        runs = runs.assign(config="(all runs)")
    cols = [_col(m) for m in metrics if _col(m) in runs.columns]
    names = [f"{_name(c)}:{stat}" for c in cols for stat in ("mean", "std", "n")]
    if runs.empty:
        return pd.DataFrame(columns=[*keys, "runs", *names])
    grouped = runs.groupby(keys, sort=False)
    table = grouped[cols].agg(["mean", "std", "count"]) if cols else pd.DataFrame(index=grouped.size().index)
    table.columns = names
    table.insert(0, "runs", grouped.size())
    for name in names:
        if name.endswith(":n"):
            table[name] = table[name].astype(int)
    table = table.reset_index()
    if metrics and _col(metrics[0]) in runs.columns:
        table = table.sort_values(f"{_name(metrics[0])}:mean", ascending=not higher_is_better(metrics[0]),
                                  na_position="last", kind="stable")
    return table.reset_index(drop=True)


def group_ranks(df: pd.DataFrame, factors: Sequence[str], factor: str, metric: str) -> pd.DataFrame:
    """The levels of ``factor`` ranked within each group of finished runs that are equal in
    every other factor and the seed, by ``metric`` (1 = best; ties get the average rank).

    One row per (group, level): the group's keys, ``factor``, the value (runs repeated in a
    cell are averaged), ``rank``, ``rank_min`` (ties share the better position) and
    ``group_size``. Groups holding a single level compare nothing and are left out.
    """
    cells, others = _cells(df, factors, factor, metric)
    col = _col(metric)
    if cells.empty:
        return cells.assign(rank=pd.Series(dtype=float), rank_min=pd.Series(dtype=float),
                            group_size=pd.Series(dtype=int))
    cells["group_size"] = cells.groupby(others, sort=False)[factor].transform("size")
    cells = cells[cells["group_size"] >= 2].copy()
    ascending = not higher_is_better(metric)
    by_group = cells.groupby(others, sort=False)[col]
    cells["rank"] = by_group.rank(method="average", ascending=ascending)
    cells["rank_min"] = by_group.rank(method="min", ascending=ascending)
    return cells.drop(columns=["_all"], errors="ignore").reset_index(drop=True)


def rank_view(df: pd.DataFrame, factors: Sequence[str], metric: str) -> pd.DataFrame:
    """GraphGym's rank view (You et al. 2020) of every factor, from :func:`group_ranks`.

    One row per (factor, level): ``groups`` (how many groups ranked it), ``mean_rank``,
    ``median_rank``, ``std_rank`` (average ranks) and ``rank1``, ``rank2``, ... (in how many
    groups it came first, second, ...; ties share the better position). Levels by mean rank.
    """
    rows = []
    width = max((finished_runs(df)[f].nunique() for f in factors), default=0)
    for factor in factors:
        ranks = group_ranks(df, factors, factor, metric)
        for level in level_order(finished_runs(df)[factor]):
            mine = ranks.loc[ranks[factor] == level]
            row = {
                "factor": factor, "level": level, "groups": len(mine),
                "mean_rank": mine["rank"].mean(), "median_rank": mine["rank"].median(),
                "std_rank": mine["rank"].std(),
            }
            for r in range(1, width + 1):
                row[f"rank{r}"] = int((mine["rank_min"] == r).sum())
            rows.append(row)
    columns = ["factor", "level", "groups", "mean_rank", "median_rank", "std_rank",
               *[f"rank{r}" for r in range(1, width + 1)]]
    table = pd.DataFrame(rows, columns=columns)
    if table.empty:
        return table
    table["_order"] = table["factor"].map({f: i for i, f in enumerate(factors)})
    table = table.sort_values(["_order", "mean_rank"], na_position="last", kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def marginal_effects(df: pd.DataFrame, factors: Sequence[str], metric: str, seed: int = 0,
                     n_boot: int = N_BOOT) -> pd.DataFrame:
    """Each level's marginal mean of ``metric``: the mean over the finished runs at that level
    (so over the other factors and the seeds), with a 95% bootstrap interval (runs resampled).

    One row per (factor, level): ``n``, ``mean``, ``std``, ``ci_low``, ``ci_high``.
    """
    col = _col(metric)
    runs = finished_runs(df)
    rows = []
    for factor in factors:
        for level in level_order(runs[factor]):
            values = runs.loc[runs[factor] == level, col].dropna() if col in runs.columns else pd.Series(dtype=float)
            low, high = bootstrap_ci(values.to_numpy(), n_boot, seed)
            rows.append({"factor": factor, "level": level, "n": int(values.size),
                         "mean": values.mean(), "std": values.std(), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["factor", "level", "n", "mean", "std", "ci_low", "ci_high"])


def paired_differences(df: pd.DataFrame, factors: Sequence[str], metric: str,
                       baselines: dict[str, str], seed: int = 0, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Each level's difference from its factor's baseline, paired: ``level - baseline`` in
    every group of finished runs equal in the other factors and the seed that holds both.

    One row per (factor, non-baseline level): ``baseline``, ``pairs``, ``diff`` (mean paired
    difference), ``diff_ci_low``/``diff_ci_high`` (95% bootstrap, pairs resampled) and ``wins``
    (pairs where the level is better, in the metric's direction).
    """
    col = _col(metric)
    better = 1.0 if higher_is_better(metric) else -1.0
    rows = []
    for factor in factors:
        base = baselines.get(factor)
        cells, others = _cells(df, factors, factor, metric)
        if cells.empty:
            continue
        wide = cells.set_index([*others, factor])[col].unstack(factor)
        for level in level_order(cells[factor], base):
            if level == base:
                continue
            if base in wide.columns:
                diffs = (wide[level] - wide[base]).dropna().to_numpy()
            else:
                diffs = np.array([])
            low, high = bootstrap_ci(diffs, n_boot, seed)
            rows.append({"factor": factor, "level": level, "baseline": base,
                         "pairs": int(diffs.size),
                         "diff": float(diffs.mean()) if diffs.size else math.nan,
                         "diff_ci_low": low, "diff_ci_high": high,
                         "wins": int((better * diffs > 0).sum())})
    return pd.DataFrame(rows, columns=["factor", "level", "baseline", "pairs", "diff",
                                       "diff_ci_low", "diff_ci_high", "wins"])


def effects_table(df: pd.DataFrame, factors: Sequence[str], metric: str, baselines: dict[str, str],
                  seed: int = 0, n_boot: int = N_BOOT) -> pd.DataFrame:
    """:func:`marginal_effects` joined with :func:`paired_differences` (baseline first)."""
    marginal = marginal_effects(df, factors, metric, seed, n_boot)
    paired = paired_differences(df, factors, metric, baselines, seed, n_boot).drop(columns="baseline")
    table = marginal.merge(paired, on=["factor", "level"], how="left")
    table[["pairs", "wins"]] = table[["pairs", "wins"]].astype("Int64")  # NaN on baseline rows
    table.insert(2, "baseline", [baselines.get(f) == lv for f, lv in zip(table["factor"], table["level"])])
    table["_f"] = table["factor"].map({f: i for i, f in enumerate(factors)})
    table["_b"] = ~table["baseline"]
    table = table.sort_values(["_f", "_b"], kind="stable").drop(columns=["_f", "_b"])
    return table.reset_index(drop=True)


# ----------------------------------------------------------------------------- markdown
def fmt(value: object, digits: int = 4) -> str:
    """A table cell: numbers with ``digits`` decimals (fewer for large ones), '' for missing."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        size = abs(float(value))
        if size >= 1000:
            return f"{value:,.0f}"
        if size >= 100:
            return f"{value:.1f}"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_like(value: object, like: object) -> str:
    """``value`` with the decimals :func:`fmt` gives ``like`` (a std beside its mean)."""
    if not isinstance(value, (float, np.floating)) or math.isnan(value):
        return fmt(value)
    size = abs(float(like)) if isinstance(like, (int, float, np.number)) and like == like else 0.0
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    return f"{value:.4f}"


def _cell(value: object) -> str:
    return fmt(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, align_right: Iterable[str] | None = None) -> str:
    """A GitHub markdown table of ``frame`` (``tabulate``-free ``DataFrame.to_markdown``)."""
    columns = [str(c) for c in frame.columns]
    if align_right is None:
        align_right = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
                       and not pd.api.types.is_bool_dtype(frame[c])]
    right = {str(c) for c in align_right}
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if c in right else "---" for c in columns) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _arrow(metric: str) -> str:
    return "↑" if higher_is_better(metric) else "↓"


def ablation_markdown(table: pd.DataFrame, factors: Sequence[str], metrics: Sequence[str]) -> str:
    """The ablation table with one ``mean ± std (n)`` cell per metric."""
    keys = list(factors) or ["config"]
    out = table[[*keys, "runs"]].copy() if not table.empty else pd.DataFrame(columns=[*keys, "runs"])
    for metric in metrics:
        name = _name(metric)
        if f"{name}:mean" not in table.columns:
            continue
        out[f"{name} {_arrow(metric)}"] = [
            f"{fmt(m)} ± {fmt_like(s, m) or '–'} ({n})" if n else "–"
            for m, s, n in zip(table[f"{name}:mean"], table[f"{name}:std"], table[f"{name}:n"])
        ]
    return markdown_table(out, align_right=[c for c in out.columns if c not in keys])


def ranks_markdown(table: pd.DataFrame) -> str:
    shown = table.rename(columns={"mean_rank": "mean rank", "median_rank": "median",
                                  "std_rank": "std"})
    shown.columns = [f"#{c[4:]}" if re.fullmatch(r"rank\d+", c) else c for c in shown.columns]
    return markdown_table(shown)


def effects_markdown(table: pd.DataFrame, metric: str) -> str:
    rows = []
    for r in table.itertuples(index=False):
        paired = not r.baseline and not pd.isna(r.pairs)
        rows.append({
            "factor": r.factor,
            "level": f"{r.level} (baseline)" if r.baseline else r.level,
            "n": r.n,
            f"mean {_arrow(metric)} [95% CI]": f"{fmt(r.mean)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}]"
            if r.n else "–",
            "Δ vs baseline [95% CI]": "" if r.baseline else (
                f"{fmt(r.diff, 4)} [{fmt(r.diff_ci_low)}, {fmt(r.diff_ci_high)}]"
                if paired and r.pairs > 0 else "no pairs"),
            "pairs": int(r.pairs) if paired else "",
            "wins": int(r.wins) if paired else "",
        })
    frame = pd.DataFrame(rows, columns=["factor", "level", "n", f"mean {_arrow(metric)} [95% CI]",
                                        "Δ vs baseline [95% CI]", "pairs", "wins"])
    return markdown_table(frame, align_right=list(frame.columns[2:]))


def failed_markdown(failed: pd.DataFrame) -> str:
    if failed.empty:
        return "No failed or unfinished runs."
    frame = pd.DataFrame({
        "run": failed["run_name"], "status": failed["status"],
        "overrides": [f"`{o}`" if isinstance(o, str) else "" for o in failed["overrides"]],
        "error": [e if isinstance(e, str) else "" for e in failed["error"]],
        "run id": failed["run_id"],
    })
    return markdown_table(frame, align_right=[])


# ----------------------------------------------------------------------------- plots
def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name).strip("_") or "factor"


def plot_ranks(ranks: pd.DataFrame, factor: str, levels: Sequence[str], metric: str, path: Path) -> Path:
    """Box plot (with the single ranks as points) of each level's rank; rank 1 on top."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    levels = [lv for lv in levels if (ranks[factor] == lv).any()]
    data = [ranks.loc[ranks[factor] == lv, "rank"].to_numpy() for lv in levels]
    fig = Figure(figsize=(1.2 + 1.1 * max(len(levels), 2), 3.6), layout="constrained")
    ax = fig.subplots()
    ax.boxplot(data, showmeans=True, widths=0.5)
    ax.set_xticks(range(1, len(levels) + 1), levels)
    jitter = np.random.default_rng(0)
    for i, values in enumerate(data, start=1):
        ax.scatter(i + jitter.uniform(-0.12, 0.12, len(values)), values, s=12, alpha=0.6, zorder=3)
    top = int(math.ceil(max((v.max() for v in data), default=1)))
    ax.set_yticks(range(1, top + 1))
    ax.set_ylim(top + 0.5, 0.5)
    ax.set_ylabel("rank (1 = best)")
    ax.set_xlabel(factor)
    groups = ranks.drop_duplicates([c for c in ranks.columns if c not in (factor, _col(metric), "rank",
                                                                          "rank_min", "group_size")])
    ax.set_title(f"{factor}: rank by {_name(metric)}\n({len(groups)} groups)", fontsize=9)
    fig.savefig(path, dpi=120)
    return path


def plot_effects(effects: pd.DataFrame, factor: str, metric: str, path: Path) -> Path:
    """Bars of each level's marginal mean with its 95% CI; the paired differences beside them."""
    from matplotlib.figure import Figure

    mine = effects[effects["factor"] == factor]
    fig = Figure(figsize=(3 + 1.6 * max(len(mine), 2), 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    x = np.arange(len(mine))
    mean = mine["mean"].to_numpy(float)
    err = np.clip(np.vstack([mean - mine["ci_low"].to_numpy(float),
                             mine["ci_high"].to_numpy(float) - mean]), 0, None)  # float noise
    colors = ["tab:gray" if b else "tab:blue" for b in mine["baseline"]]
    left.bar(x, mean, yerr=np.nan_to_num(err), capsize=4, color=colors)
    left.set_xticks(x, mine["level"])
    left.set_ylabel(f"{_name(metric)} {_arrow(metric)}")
    left.set_title(f"{factor}: marginal mean, 95% CI", fontsize=9)
    diffs = mine[~mine["baseline"] & (mine["pairs"].fillna(0) > 0)]
    if diffs.empty:
        right.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=right.transAxes)
        right.set_axis_off()
    else:
        xd = np.arange(len(diffs))
        d = diffs["diff"].to_numpy(float)
        derr = np.clip(np.vstack([d - diffs["diff_ci_low"].to_numpy(float),
                                  diffs["diff_ci_high"].to_numpy(float) - d]), 0, None)
        right.bar(xd, d, yerr=derr, capsize=4, color="tab:orange")
        right.axhline(0, color="black", lw=0.8)
        right.set_xticks(xd, diffs["level"])
        base = mine.loc[mine["baseline"], "level"]
        right.set_title(f"paired difference vs {base.iloc[0] if len(base) else 'baseline'}, 95% CI",
                        fontsize=9)
    fig.savefig(path, dpi=120)
    return path


# ----------------------------------------------------------------------------- report
@dataclass
class Report:
    """What :func:`write_report` wrote."""

    path: Path  # report.md
    files: list[Path] = field(default_factory=list)
    ablation: pd.DataFrame | None = None
    ablation_md: str = ""


def _counts(df: pd.DataFrame) -> dict[str, int]:
    order = ["FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED"]
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    return {k: int(counts[k]) for k in [*order, *sorted(set(counts) - set(order))] if k in counts}


def write_report(
    df: pd.DataFrame,
    out_dir: str | Path,
    *,
    experiment: str,
    parent_id: str,
    sweep_id: str = "",
    factors: Sequence[str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    baselines: dict[str, str] | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
    notes: Sequence[str] = (),
) -> Report:
    """Write every table, plot and ``report.md`` for the runs ``df`` into ``out_dir``.

    ``factors`` defaults to :func:`factors_of`, ``baselines`` to :func:`choose_baselines`; the
    first of ``metrics`` is the primary one (rank view, effects, sort order). Files this module
    wrote there before are removed first, so no stale plot survives. Returns a :class:`Report`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file() and OWN_FILES.match(old.name):
            old.unlink()
    factors = factors_of(df) if factors is None else list(factors)
    baselines = choose_baselines(df, factors, baselines) if factors else {}
    metrics = [_name(m) for m in metrics]
    primary = metrics[0] if metrics else None
    files: list[Path] = []

    def write(name: str, text: str) -> Path:
        path = out / name
        path.write_text(text if text.endswith("\n") else text + "\n")
        files.append(path)
        return path

    finished = finished_runs(df)
    counts = _counts(df)
    not_done = df[df["status"] != FINISHED] if not df.empty else df
    reused = int((df["source"] == "reused").sum()) if "source" in df.columns else 0

    # ablation table
    ablation = ablation_table(df, factors, metrics)
    ablation.to_csv(out / "ablation.csv", index=False)
    files.append(out / "ablation.csv")
    ablation_md = ablation_markdown(ablation, factors, metrics)
    write("ablation.md", f"# Ablation table: {experiment}\n\n{ablation_md}")

    # rank view and effects (primary metric)
    ranks = rank_view(df, factors, primary) if primary else pd.DataFrame()
    long = pd.concat([group_ranks(df, factors, f, primary).assign(factor=f) for f in factors]
                     ) if primary and factors else pd.DataFrame()
    effects = effects_table(df, factors, primary, baselines, seed, n_boot) if primary else pd.DataFrame()
    ranks.to_csv(out / "ranks.csv", index=False)
    long.to_csv(out / "ranks_long.csv", index=False)
    effects.to_csv(out / "effects.csv", index=False)
    files += [out / "ranks.csv", out / "ranks_long.csv", out / "effects.csv"]
    rank_note = (f"Within each group of finished runs equal in every other factor and the seed, "
                 f"the levels of a factor are ranked by `{primary}` (1 = best; ties share the "
                 "average rank; in the #r counts they share the better position); groups holding "
                 "one level are left out.")
    effect_note = (f"Marginal mean of `{primary}` over the finished runs at each level (over the "
                   "other factors and seeds), 95% percentile bootstrap interval over runs; Δ: mean "
                   "paired difference level − baseline over runs equal in the other factors and the "
                   f"seed, 95% bootstrap interval over pairs ({n_boot} resamples, seed {seed}); "
                   "wins: pairs where the level is better.")
    ranks_md = ranks_markdown(ranks) if not ranks.empty else "No factor to rank."
    effects_md = effects_markdown(effects, primary) if not effects.empty else "No factor to compare."
    write("ranks.md", f"# Rank view: {experiment}\n\n{rank_note}\n\n{ranks_md}")
    write("effects.md", f"# Effects: {experiment}\n\n{effect_note}\n\n{effects_md}")

    images = []
    if primary and not finished.empty:
        for factor in factors:
            levels = level_order(finished[factor], baselines.get(factor))
            mine = long[long["factor"] == factor] if not long.empty else long
            if not mine.empty:
                images.append(plot_ranks(mine, factor, levels, primary, out / f"ranks_{_safe(factor)}.png"))
            if not effects.empty and (effects["factor"] == factor).any():
                images.append(plot_effects(effects, factor, primary, out / f"effects_{_safe(factor)}.png"))
    files += images

    # failed jobs
    failed_md = failed_markdown(not_done)
    write("failed.md", f"# Failed and unfinished runs: {experiment}\n\n"
                       f"{len(not_done)} of {len(df)} runs did not finish; they are excluded from "
                       f"the statistics.\n\n{failed_md}")

    # report.md
    count_text = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
    if df.empty:
        headline = "**The sweep has no runs.**"
    elif not_done.empty:
        headline = f"All {len(df)} runs finished."
    else:
        by_status = ", ".join(f"{k} {v}" for k, v in _counts(not_done).items())
        headline = (f"**{len(not_done)} of {len(df)} runs did not finish ({by_status}): excluded "
                    "from the statistics, listed under [Failed and unfinished runs](#failed-and-"
                    "unfinished-runs) and in [failed.md](failed.md).**")
    if finished.empty and not df.empty:
        headline += "\n\n**No finished runs: there is nothing to compare.**"
    seeds = level_order(finished[REPLICATE]) if REPLICATE in finished.columns else []
    factor_text = "; ".join(
        f"`{f}` ({', '.join(level_order(df[f], baselines.get(f)))}; baseline {baselines.get(f)})"
        for f in factors) or "none (every run has the same overrides but the seed)"
    lines = [
        f"# Ablation report: {experiment}",
        "",
        headline,
        "",
        f"- experiment `{experiment}`, sweep `{sweep_id or '?'}`, parent run `{parent_id}`",
        f"- runs: {len(df)} ({count_text}); reused from earlier sweeps: {reused}",
        f"- factors: {factor_text}",
        f"- replicates: {REPLICATE} ({', '.join(seeds) or '–'})",
        f"- primary metric: `{primary}` ({'higher' if primary and higher_is_better(primary) else 'lower'}"
        " is better)" if primary else "- primary metric: none",
        f"- metrics: {', '.join(f'`{m}` {_arrow(m)}' for m in metrics) or 'none'}",
        *[f"- note: {n}" for n in notes],
        "",
        "## Ablation table",
        "",
        "Mean ± std (n) over seeds of each configuration's finished runs, best first.",
        "",
        ablation_md,
        "",
        "## Rank view",
        "",
        rank_note,
        "",
        ranks_md,
        "",
        "## Effects",
        "",
        effect_note,
        "",
        effects_md,
        "",
        "## Failed and unfinished runs",
        "",
        failed_md,
        "",
        "## Plots",
        "",
        *([f"![{p.stem}]({p.name})" for p in images] or ["No plots."]),
    ]
    path = write("report.md", "\n".join(lines))
    files.remove(path)
    files.insert(0, path)
    return Report(path=path, files=files, ablation=ablation, ablation_md=ablation_md)


# ----------------------------------------------------------------------------- CLI
def latest_sweep(client: MlflowClient, experiment: str):
    """The parent run (tag ``mmgnn.role=sweep``) that started last in ``experiment``."""
    found = retry_locked(client.get_experiment_by_name, experiment)
    if found is None or found.lifecycle_stage != "active":
        names = sorted(e.name for e in retry_locked(client.search_experiments))
        raise ReportError(f"no experiment named {experiment!r} in {client.tracking_uri} "
                          f"(experiments: {', '.join(names) or 'none'})")
    runs = _search(client, [found.experiment_id], "tags.`mmgnn.role` = 'sweep'",
                   order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise ReportError(f"experiment {experiment!r} has no sweep (no run tagged mmgnn.role=sweep)")
    return runs[0]


def choose_metrics(df: pd.DataFrame, requested: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """The report's metrics (primary first) and notes on what was left out.

    Requested metrics that no finished run logged are left out with a note; a requested
    primary metric that none logged is an error (a typo). Without a request: the test
    counterpart of the monitored metric, then :data:`DEFAULT_METRICS`, those logged.
    """
    finished = finished_runs(df)
    logged = [c[len("metrics."):] for c in df.columns
              if c.startswith("metrics.") and finished[c].notna().any()]
    if requested:
        requested = [_name(m) for m in requested]
        if finished.empty:
            return requested, []
        if requested[0] not in logged:
            close = difflib.get_close_matches(requested[0], logged, n=5, cutoff=0.5)
            raise ReportError(f"no finished run logged metric {requested[0]!r}"
                              + (f" (close: {', '.join(close)})" if close else ""))
        missing = [m for m in requested if m not in logged]
        notes = [f"not logged by any finished run, left out: {', '.join(missing)}"] if missing else []
        return [m for m in requested if m in logged], notes
    wanted = list(DEFAULT_METRICS)
    if "tags.mmgnn.monitor" in finished.columns and finished["tags.mmgnn.monitor"].notna().any():
        monitor = finished["tags.mmgnn.monitor"].dropna().mode().iloc[0]
        wanted.insert(0, "test/" + monitor.removeprefix("val/"))
    wanted = list(dict.fromkeys(wanted))
    if finished.empty:
        return wanted[1:] if len(wanted) > len(DEFAULT_METRICS) else wanted, []
    chosen = [m for m in wanted if m in logged]
    if chosen:
        return chosen, []
    fallback = sorted(m for m in logged if m.startswith("test/")) or sorted(logged)
    if not fallback:
        return [], ["the finished runs logged no metrics"]
    return fallback[:1], [f"none of the default metrics was logged; primary metric {fallback[0]}"]


def _parse_baselines(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        for part in item.split(","):
            key, sep, value = part.strip().partition("=")
            if not sep or not key.strip():
                raise ReportError(f"--baseline expects factor=level, got {part!r}")
            out[key.strip().lstrip("+~")] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.report",
        description="Ablation report of a sweep: tables, rank view, effects, failed jobs.",
    )
    parser.add_argument("--experiment", help="MLflow experiment; alone: its latest sweep")
    parser.add_argument("--parent", help="the sweep's parent run id")
    parser.add_argument("--tracking-uri", help="default: sqlite:///<project>/outputs/mlflow.db")
    parser.add_argument("--out", help="output folder (default: <sweep dir>/report)")
    parser.add_argument("--metrics", help="comma-separated metric keys, the primary first "
                        f"(default: {','.join(DEFAULT_METRICS)}, those logged)")
    parser.add_argument("--baseline", action="append", metavar="FACTOR=LEVEL",
                        help="a factor's baseline level (repeat or comma-separate)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples")
    parser.add_argument("--no-log", action="store_true",
                        help="do not log the report as artifacts of the parent run")
    return parser


def main(argv: Sequence[str] | None = None) -> Report:
    """The CLI: find the sweep, load its runs, write the report, log it to the parent run.

    Exits (``SystemExit`` with a message) for an unknown experiment or parent run, an
    experiment without sweeps and bad arguments; a sweep without finished runs still gets its
    report (with the failed runs), and exits 0.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.experiment and not args.parent:
        parser.error("give --experiment NAME (its latest sweep) or --parent RUN_ID")
    try:
        return _run(args)
    except ReportError as error:
        raise SystemExit(f"experiments.report: {error}") from None


def _run(args: argparse.Namespace) -> Report:
    client = MlflowClient(tracking_uri=args.tracking_uri or default_tracking_uri())
    if args.parent:
        parent = _get_parent(client, args.parent)
    else:
        parent = latest_sweep(client, args.experiment)
    parent_id = parent.info.run_id
    experiment = retry_locked(client.get_experiment, parent.info.experiment_id).name
    if args.experiment and args.experiment != experiment:
        raise ReportError(f"run {parent_id} belongs to experiment {experiment!r}, "
                          f"not {args.experiment!r}")
    df = load_runs(client, parent_id)
    requested = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    metrics, notes = choose_metrics(df, requested)
    factors = factors_of(df)
    baselines = choose_baselines(df, factors, _parse_baselines(args.baseline))
    tags = parent.data.tags
    if args.out:
        out = Path(args.out)
    elif tags.get("mmgnn.sweep_dir"):
        out = Path(tags["mmgnn.sweep_dir"]) / "report"
    else:
        out = project_root() / "outputs" / "reports" / parent_id
        notes = [*notes, f"the parent run has no mmgnn.sweep_dir tag; written to {out}"]
    report = write_report(df, out, experiment=experiment, parent_id=parent_id,
                          sweep_id=tags.get(TAG_SWEEP, ""), factors=factors, metrics=metrics,
                          baselines=baselines, seed=args.seed, n_boot=args.n_boot, notes=notes)
    if not args.no_log:
        try:
            for path in report.files:
                retry_locked(client.log_artifact, parent_id, str(path), "report")
        except Exception as error:  # the report is on disk; say so and fail loudly
            raise ReportError(f"report written to {report.path}, but logging it to run "
                              f"{parent_id} failed: {type(error).__name__}: {error}") from error
    print(report.path)
    print(report.ablation_md)
    not_done = int((df["status"] != FINISHED).sum()) if not df.empty else 0
    if not_done:
        print(f"{not_done} of {len(df)} runs did not finish: see {report.path.parent / 'failed.md'}",
              file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
