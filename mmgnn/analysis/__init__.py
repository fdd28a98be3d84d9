"""The ablation analysis of a sweep: its runs as a tidy frame, statistics, tables, plots, report.

- :mod:`mmgnn.analysis.runs`: a sweep's MLflow runs (children, reused runs, jobs that failed
  before their run existed) as a pandas frame, one column per override key, with the detailed
  metrics a run did not log to MLflow read from its ``metrics.csv`` artifact;
- :mod:`mmgnn.analysis.keys`: a metric key's frame column and direction (higher/lower better);
- :mod:`mmgnn.analysis.stats`: ablation table, GraphGym's rank view, marginal effects and
  paired differences with 95% Student-t intervals over seeds and pairs;
- :mod:`mmgnn.analysis.tables`: markdown tables;
- :mod:`mmgnn.analysis.plots`: every PNG plot of the project (per run and per sweep);
- :mod:`mmgnn.analysis.report`: :func:`write_report` and :func:`report_sweep`.

``experiments/report.py`` is the command line over it. Names are loaded on first use, so a
training job that imports :mod:`mmgnn.analysis.plots` loads neither MLflow search nor pandas
statistics, and :mod:`mmgnn.tracking` may import the plots without an import cycle.
"""
from __future__ import annotations

import importlib

_HOMES = {
    "keys": ("higher_is_better", "metric_name"),
    "runs": ("REPLICATES", "ReportError", "load_runs", "factors_of", "finished_runs",
             "parse_overrides", "match_level", "runs_frame", "latest_sweep", "get_parent",
             "expected_jobs", "unstarted_jobs", "read_metrics_csv", "fill_detail_metrics"),
    "stats": ("ablation_table", "group_ranks", "rank_view", "marginal_effects",
              "paired_differences", "effects_table", "choose_baselines", "t_interval",
              "level_order"),
    "tables": ("markdown_table", "ablation_markdown", "ranks_markdown", "effects_markdown",
               "failed_markdown", "fmt"),
    "report": ("Report", "write_report", "choose_metrics", "default_metrics", "report_sweep",
               "log_report", "DEFAULT_METRICS"),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
