"""Markdown tables of the statistics (GitHub tables, no ``tabulate`` dependency)."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from mmgnn.analysis.keys import arrow, metric_name


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


def ablation_markdown(table: pd.DataFrame, factors: Sequence[str], metrics: Sequence[str]) -> str:
    """The ablation table with one ``mean ± std (n)`` cell per metric."""
    keys = list(factors) or ["config"]
    out = table[[*keys, "runs"]].copy() if not table.empty else pd.DataFrame(columns=[*keys, "runs"])
    for metric in metrics:
        name = metric_name(metric)
        if f"{name}:mean" not in table.columns:
            continue
        out[f"{name} {arrow(metric)}"] = [
            f"{fmt(m)} ± {fmt_like(s, m) or '–'} ({n})" if n else "–"
            for m, s, n in zip(table[f"{name}:mean"], table[f"{name}:std"], table[f"{name}:n"])
        ]
    return markdown_table(out, align_right=[c for c in out.columns if c not in keys])


def ranks_markdown(table: pd.DataFrame) -> str:
    """The rank view (:func:`mmgnn.analysis.stats.rank_view`); ``rank<k>`` columns as ``#k``."""
    shown = table.rename(columns={"mean_rank": "mean rank", "median_rank": "median",
                                  "std_rank": "std"})
    shown.columns = [f"#{c[4:]}" if re.fullmatch(r"rank\d+", c) else c for c in shown.columns]
    return markdown_table(shown)


def with_interval(value: object, low: object, high: object) -> str:
    """``value [low, high]``; ``value [–, –]`` when the interval has no ends (under 2 values)."""
    return f"{fmt(value)} [{fmt(low) or '–'}, {fmt(high) or '–'}]"


def effects_markdown(table: pd.DataFrame, metric: str) -> str:
    """The effects table (:func:`mmgnn.analysis.stats.effects_table`) with intervals in cells;
    the headers name the interval (95% Student-t over a level's runs, over the pairs)."""
    mean_header = f"mean {arrow(metric)} [95% t-interval over runs]"
    diff_header = "Δ vs baseline [95% t-interval over pairs]"
    rows = []
    for r in table.itertuples(index=False):
        paired = not r.baseline and not pd.isna(r.pairs)
        rows.append({
            "factor": r.factor,
            "level": f"{r.level} (baseline)" if r.baseline else r.level,
            "n": r.n,
            mean_header: with_interval(r.mean, r.ci_low, r.ci_high) if r.n else "–",
            diff_header: "" if r.baseline else (
                with_interval(r.diff, r.diff_ci_low, r.diff_ci_high)
                if paired and r.pairs > 0 else "no pairs"),
            "pairs": int(r.pairs) if paired else "",
            "wins": int(r.wins) if paired else "",
        })
    frame = pd.DataFrame(rows, columns=["factor", "level", "n", mean_header, diff_header,
                                        "pairs", "wins"])
    return markdown_table(frame, align_right=list(frame.columns[2:]))


def failed_markdown(failed: pd.DataFrame) -> str:
    """The runs that did not finish: name, status, overrides, error and run id."""
    if failed.empty:
        return "No failed or unfinished runs."
    frame = pd.DataFrame({
        "run": failed["run_name"], "status": failed["status"],
        "overrides": [f"`{o}`" if isinstance(o, str) else "" for o in failed["overrides"]],
        "error": [e if isinstance(e, str) else "" for e in failed["error"]],
        "run id": [rid if isinstance(rid, str) and rid else "(no run)" for rid in failed["run_id"]],
    })
    return markdown_table(frame, align_right=[])
