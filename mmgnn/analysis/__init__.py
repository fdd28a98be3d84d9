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

``experiments/report.py`` is the command line over it. Analysis reads what tracking recorded,
through :mod:`mmgnn.tracking`'s public names (tags and files: :mod:`mmgnn.tracking.names`);
nothing below it imports it (the per-run plots are drawn by :mod:`mmgnn.launch`).
"""
from mmgnn.analysis.keys import higher_is_better, metric_name
from mmgnn.analysis.report import (
    DEFAULT_METRICS,
    Report,
    choose_metrics,
    default_metrics,
    log_report,
    report_sweep,
    write_report,
)
from mmgnn.analysis.runs import (
    REPLICATES,
    ReportError,
    expected_jobs,
    factors_of,
    fill_detail_metrics,
    finished_runs,
    get_parent,
    latest_sweep,
    load_runs,
    match_level,
    parse_overrides,
    read_metrics_csv,
    runs_frame,
    unstarted_jobs,
)
from mmgnn.analysis.stats import (
    ablation_table,
    choose_baselines,
    effects_table,
    group_ranks,
    level_order,
    marginal_effects,
    paired_differences,
    rank_view,
    t_interval,
)
from mmgnn.analysis.tables import (
    ablation_markdown,
    effects_markdown,
    failed_markdown,
    fmt,
    markdown_table,
    ranks_markdown,
)

__all__ = [
    "DEFAULT_METRICS", "REPLICATES", "Report", "ReportError", "ablation_markdown",
    "ablation_table", "choose_baselines", "choose_metrics", "default_metrics", "effects_markdown",
    "effects_table", "expected_jobs", "factors_of", "failed_markdown", "fill_detail_metrics",
    "finished_runs", "fmt", "get_parent", "group_ranks", "higher_is_better", "latest_sweep",
    "level_order", "load_runs", "log_report", "marginal_effects", "markdown_table",
    "match_level", "metric_name", "paired_differences", "parse_overrides", "rank_view",
    "ranks_markdown", "read_metrics_csv", "report_sweep", "runs_frame", "t_interval",
    "unstarted_jobs", "write_report",
]
