"""Statistics of a sweep's runs frame (see :mod:`mmgnn.analysis.runs`): the ablation table,
GraphGym's rank view (You, Ying & Leskovec 2020, "Design Space for Graph Neural Networks"),
marginal effects and paired differences with 95% Student-t intervals of the mean.

A sweep has few replicates (3-10 seeds); over so few values a percentile bootstrap has few
distinct resamples (10 for 3 values) and its interval is far too narrow, so every interval here
is the t-interval :func:`t_interval`. Runs are compared within groups equal in every other
factor and in the replicate keys (:data:`mmgnn.analysis.runs.REPLICATES`: ``data.seed`` and
``seed``). Only FINISHED runs enter the statistics. Every function is a plain function of the
frame.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from mmgnn.analysis.keys import higher_is_better, metric_column, metric_name
from mmgnn.analysis.runs import REPLICATES, ReportError, as_float, finished_runs, match_level

#: The reference level of each design dimension (else the first level in sorted order).
DEFAULT_BASELINES = {"gnn": "mlp", "skip": "none", "fusion": "concat", "loss": "cosine",
                     "train": "joint"}
#: The two-sided coverage of every interval.
LEVEL = 0.95


def level_order(levels: Iterable, baseline: str | None = None) -> list[str]:
    """Levels sorted (numerically when all are numbers), the baseline first when given."""
    levels = list(dict.fromkeys(str(v) for v in levels))
    numbers = [as_float(v) for v in levels]
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
            level = match_level(given[factor], every)
            if level not in every:
                raise ReportError(f"--baseline {factor}={given[factor]}: no such level "
                                  f"(levels: {', '.join(every)})")
            out[factor] = level
        elif DEFAULT_BASELINES.get(factor) in done:
            out[factor] = DEFAULT_BASELINES[factor]
        else:
            out[factor] = done[0]
    return out


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95% Student-t interval of the mean of ``values`` (1-D; NaN left out):
    ``mean ± t(0.975, n-1) · sd / sqrt(n)``, ``sd`` with ddof 1.

    Returns ``(low, high)``; NaN ends for fewer than two values (no spread to measure),
    ``(mean, mean)`` for equal values.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size < 2:
        return math.nan, math.nan
    half = student_t.ppf((1 + LEVEL) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    mean = x.mean()
    return float(mean - half), float(mean + half)


def _cells(df: pd.DataFrame, factors: Sequence[str], factor: str, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """Finished runs' ``metric`` averaged per (other factors, replicate keys, level): one value
    per cell. Returns the cells (columns: the group keys, ``factor``, the metric column) and the
    group keys: the other factors, then each replicate key of :data:`REPLICATES` the frame has
    (``data.seed``, ``seed``), so a cell's runs share both seeds.
    """
    col = metric_column(metric)
    runs = finished_runs(df)
    others = [f for f in factors if f != factor]
    others += [r for r in REPLICATES if r in runs.columns and r not in others and r != factor]
    if col not in runs.columns or runs.empty:
        return pd.DataFrame(columns=[*others, factor, col]), others
    runs = runs[runs[col].notna()]
    if not others:  # one factor and no replicate column: one group
        runs = runs.assign(_all="all")
        others = ["_all"]
    cells = runs.groupby([*others, factor], sort=False)[col].mean().reset_index()
    return cells, others


# ----------------------------------------------------------------------------- tables of statistics
def ablation_table(df: pd.DataFrame, factors: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per configuration of ``factors`` (finished runs only): ``runs`` and, for each
    metric, ``<metric>:mean``, ``<metric>:std`` (ddof 1, over seeds) and ``<metric>:n``;
    sorted best first by the first metric (missing values last).
    """
    runs = finished_runs(df)
    keys = list(factors) or ["config"]
    if not factors:
        runs = runs.assign(config="(all runs)")
    cols = [metric_column(m) for m in metrics if metric_column(m) in runs.columns]
    names = [f"{metric_name(c)}:{stat}" for c in cols for stat in ("mean", "std", "n")]
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
    if metrics and metric_column(metrics[0]) in runs.columns:
        table = table.sort_values(f"{metric_name(metrics[0])}:mean", ascending=not higher_is_better(metrics[0]),
                                  na_position="last", kind="stable")
    return table.reset_index(drop=True)


def group_ranks(df: pd.DataFrame, factors: Sequence[str], factor: str, metric: str) -> pd.DataFrame:
    """The levels of ``factor`` ranked within each group of finished runs that are equal in
    every other factor and the replicate keys (``data.seed``, ``seed``), by ``metric``
    (1 = best; ties get the average rank).

    One row per (group, level): the group's keys, ``factor``, the value (runs repeated in a
    cell are averaged), ``rank``, ``rank_min`` (ties share the better position) and
    ``group_size``. Groups holding a single level compare nothing and are left out.
    """
    cells, others = _cells(df, factors, factor, metric)
    col = metric_column(metric)
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


def marginal_effects(df: pd.DataFrame, factors: Sequence[str], metric: str) -> pd.DataFrame:
    """Each level's marginal mean of ``metric``: the mean over the finished runs at that level
    (so over the other factors and the seeds), with the 95% t-interval over those runs
    (:func:`t_interval`).

    One row per (factor, level): ``n`` (runs), ``mean``, ``std``, ``ci_low``, ``ci_high``.
    """
    col = metric_column(metric)
    runs = finished_runs(df)
    rows = []
    for factor in factors:
        for level in level_order(runs[factor]):
            values = runs.loc[runs[factor] == level, col].dropna() if col in runs.columns else pd.Series(dtype=float)
            low, high = t_interval(values.to_numpy())
            rows.append({"factor": factor, "level": level, "n": int(values.size),
                         "mean": values.mean(), "std": values.std(), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["factor", "level", "n", "mean", "std", "ci_low", "ci_high"])


def paired_differences(df: pd.DataFrame, factors: Sequence[str], metric: str,
                       baselines: dict[str, str]) -> pd.DataFrame:
    """Each level's difference from its factor's baseline, paired: ``level - baseline`` in
    every group of finished runs equal in the other factors and the replicate keys
    (``data.seed`` and ``seed``, those the frame has) that holds both.

    One row per (factor, non-baseline level): ``baseline``, ``pairs``, ``diff`` (mean paired
    difference), ``diff_ci_low``/``diff_ci_high`` (95% t-interval over the pairs,
    :func:`t_interval`) and ``wins`` (pairs where the level is better, in the metric's
    direction).
    """
    col = metric_column(metric)
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
            low, high = t_interval(diffs)
            rows.append({"factor": factor, "level": level, "baseline": base,
                         "pairs": int(diffs.size),
                         "diff": float(diffs.mean()) if diffs.size else math.nan,
                         "diff_ci_low": low, "diff_ci_high": high,
                         "wins": int((better * diffs > 0).sum())})
    return pd.DataFrame(rows, columns=["factor", "level", "baseline", "pairs", "diff",
                                       "diff_ci_low", "diff_ci_high", "wins"])


def effects_table(df: pd.DataFrame, factors: Sequence[str], metric: str,
                  baselines: dict[str, str]) -> pd.DataFrame:
    """:func:`marginal_effects` joined with :func:`paired_differences` (baseline first)."""
    marginal = marginal_effects(df, factors, metric)
    paired = paired_differences(df, factors, metric, baselines).drop(columns="baseline")
    table = marginal.merge(paired, on=["factor", "level"], how="left")
    table[["pairs", "wins"]] = table[["pairs", "wins"]].astype("Int64")  # NaN on baseline rows
    table.insert(2, "baseline", [baselines.get(f) == lv for f, lv in zip(table["factor"], table["level"])])
    table["_f"] = table["factor"].map({f: i for i, f in enumerate(factors)})
    table["_b"] = ~table["baseline"]
    table = table.sort_values(["_f", "_b"], kind="stable").drop(columns=["_f", "_b"])
    return table.reset_index(drop=True)


