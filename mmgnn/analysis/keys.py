"""What a metric key says: its column in the runs frame and which direction is better.

Free of MLflow and pandas: the plots and tables use it as well as the run loader.
"""
from __future__ import annotations


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (not for ranks, times, sizes, losses)."""
    name = metric.removeprefix("metrics.")
    last = name.rsplit("/", 1)[-1]
    lower = (last in ("medr", "mean_rank") or last.endswith(("medr", "mean_rank"))
             or name.startswith(("time/", "params/")) or "/time/" in name
             or "loss" in last)
    return not lower


def arrow(metric: str) -> str:
    """``↑`` for a metric where higher is better, else ``↓``."""
    return "↑" if higher_is_better(metric) else "↓"


def metric_column(metric: str) -> str:
    """The runs frame's column of ``metric`` (``metrics.<key>``)."""
    return metric if metric.startswith("metrics.") else f"metrics.{metric}"


def metric_name(metric: str) -> str:
    """The MLflow key of ``metric`` (without the frame's ``metrics.`` prefix)."""
    return metric.removeprefix("metrics.")
