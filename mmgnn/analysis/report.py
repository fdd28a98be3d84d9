"""The ablation report of one sweep: files on disk, artifacts and description of its parent run.

:func:`report_sweep` does it all from a parent run id (what the CLI ``python -m
experiments.report`` and the sweep callback call); :func:`write_report` writes the files for a
runs frame (:func:`mmgnn.analysis.runs.load_runs`):

- ``ablation.csv|md``: one row per configuration of the factors, mean, std (ddof 1) and n over
  seeds of each metric, best first by the primary metric (the first of ``metrics``);
- ``ranks.csv|md``, ``ranks_long.csv``, ``ranks_<factor>.png``: GraphGym's rank view (You, Ying
  & Leskovec 2020): within each group of runs equal in every other factor and the replicate
  keys (``data.seed``, ``seed``), the factor's levels ranked by the primary metric (1 = best),
  and each level's rank distribution;
- ``effects.csv|md``, ``effects_<factor>.png``: each level's marginal mean (over the other
  factors and seeds) with its 95% Student-t interval over the level's runs, and its paired
  difference from the factor's baseline level (pairs equal in every other factor and the
  replicate keys) with its 95% t-interval over the pairs (:func:`mmgnn.analysis.stats.t_interval`);
- ``failed.md``: the runs that did not finish and the jobs that failed before their run
  existed, with their status, overrides and error;
- ``report.md``: all of the above in one page.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from mmgnn.analysis.keys import arrow, higher_is_better, metric_name
from mmgnn.analysis.plots import plot_effects, plot_ranks
from mmgnn.analysis.runs import (
    FINISHED,
    NO_RUN,
    REPLICATES,
    ReportError,
    expected_jobs,
    factors_of,
    fill_detail_metrics,
    finished_runs,
    get_parent,
    load_runs,
)
from mmgnn.analysis.stats import (
    ablation_table,
    choose_baselines,
    effects_table,
    group_ranks,
    level_order,
    rank_view,
)
from mmgnn.analysis.tables import ablation_markdown, effects_markdown, failed_markdown, ranks_markdown
from mmgnn.paths import reports_dir
from mmgnn.tracking import retry_locked
from mmgnn.tracking.names import (
    METRICS_FILE,
    REPORT_DIR,
    TAG_MONITOR,
    TAG_NOTE,
    TAG_SWEEP,
    TAG_SWEEP_DIR,
)

#: Metrics of the tables when none are requested (those some finished run has).
DEFAULT_METRICS = (
    "test/retrieval/mean_recall",
    "test/retrieval/map",
    "test/fused/acc",
    "test/worst_group/retrieval/mean_recall",
    "params/total",
    "time/total_s",
)
# Files this module writes (removed from the report folder before it writes them again).
OWN_FILES = re.compile(r"^(report\.md|failed\.md|ablation\.(csv|md)|ranks\.(csv|md)|ranks_long\.csv"
                       r"|effects\.(csv|md)|(ranks|effects)_.+\.png)$")
STATUS_ORDER = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")
NOTE_TAG = TAG_NOTE  # the run description shown by the MLflow UI


@dataclass
class Report:
    """What :func:`write_report` wrote."""

    path: Path  # report.md
    files: list[Path] = field(default_factory=list)
    ablation: pd.DataFrame | None = None
    ablation_md: str = ""
    runs: pd.DataFrame | None = None  # the runs frame it was written from


@dataclass
class _Folder:
    """The report folder and the files written into it, in order."""

    path: Path
    files: list[Path] = field(default_factory=list)

    def text(self, name: str, text: str) -> Path:
        path = self.path / name
        path.write_text(text if text.endswith("\n") else text + "\n")
        self.files.append(path)
        return path

    def csv(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.path / name
        frame.to_csv(path, index=False)
        self.files.append(path)
        return path


def _counts(df: pd.DataFrame) -> dict[str, int]:
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    order = [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]
    return {k: int(counts[k]) for k in order if k in counts}


def _file_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name).strip("_") or "factor"


# ----------------------------------------------------------------------------- sections
def _replicates(df: pd.DataFrame) -> list[str]:
    """The replicate keys (:data:`REPLICATES`) that are columns of ``df``."""
    return [r for r in REPLICATES if r in df.columns]


def _rank_and_effects(df: pd.DataFrame, factors: list[str], primary: str | None,
                      baselines: dict[str, str], folder: _Folder,
                      experiment: str) -> tuple[str, str, list[Path]]:
    """Rank view and effects of the primary metric: CSV, markdown files and plots.

    Returns the two markdown sections (note + table) and the plots.
    """
    ranks = rank_view(df, factors, primary) if primary else pd.DataFrame()
    long = pd.concat([group_ranks(df, factors, f, primary).assign(factor=f) for f in factors]
                     ) if primary and factors else pd.DataFrame()
    effects = effects_table(df, factors, primary, baselines) if primary else pd.DataFrame()
    folder.csv("ranks.csv", ranks)
    folder.csv("ranks_long.csv", long)
    folder.csv("effects.csv", effects)
    same = ", ".join(["every other factor", *[f"`{r}`" for r in _replicates(df)]])
    rank_note = (f"Within each group of finished runs equal in {same}, "
                 f"the levels of a factor are ranked by `{primary}` (1 = best; ties share the "
                 "average rank; in the #r counts they share the better position); groups holding "
                 "one level are left out.")
    effect_note = (f"Marginal mean of `{primary}` over the finished runs at each level (over the "
                   "other factors and seeds) with its 95% Student-t interval over those n runs "
                   "(mean ± t(0.975, n−1)·sd/√n); Δ: mean paired difference level − baseline over "
                   f"runs equal in {same}, with its 95% t-interval over the pairs; no interval "
                   "([–, –]) from fewer than 2 values. wins: pairs where the level is better.")
    ranks_md = f"{rank_note}\n\n{ranks_markdown(ranks) if not ranks.empty else 'No factor to rank.'}"
    effects_md = (f"{effect_note}\n\n"
                  f"{effects_markdown(effects, primary) if not effects.empty else 'No factor to compare.'}")
    folder.text("ranks.md", f"# Rank view: {experiment}\n\n{ranks_md}")
    folder.text("effects.md", f"# Effects: {experiment}\n\n{effects_md}")

    images = []
    finished = finished_runs(df)
    for factor in factors if primary and not finished.empty else []:
        levels = level_order(finished[factor], baselines.get(factor))
        mine = long[long["factor"] == factor] if not long.empty else long
        if not mine.empty:
            images.append(plot_ranks(mine, factor, levels, primary,
                                     folder.path / f"ranks_{_file_name(factor)}.png"))
        if not effects.empty and (effects["factor"] == factor).any():
            images.append(plot_effects(effects, factor, primary,
                                       folder.path / f"effects_{_file_name(factor)}.png"))
    folder.files += images
    return ranks_md, effects_md, images


def _jobs_line(df: pd.DataFrame, expected: int | None) -> str | None:
    """``- jobs: ...`` (expected vs recorded) when the sweep said how many jobs it launched or
    some failed before their run existed; else ``None``."""
    unstarted = int((df["source"] == NO_RUN).sum()) if "source" in df.columns else 0
    if expected is None and not unstarted:
        return None
    recorded = len(df) - unstarted
    parts = [f"{expected} expected" if expected is not None else "expected: not recorded",
             f"{recorded} with an MLflow run",
             f"{unstarted} without one (failed before their run existed, or never launched)"]
    if expected is not None:
        parts.append(f"{max(expected - len(df), 0)} without any record (not run, or the sweep "
                     "was interrupted)")
    return "- jobs: " + ", ".join(parts)


def _headline(df: pd.DataFrame, not_done: pd.DataFrame, expected: int | None) -> str:
    noun = "jobs" if "source" in df.columns and (df["source"] == NO_RUN).any() else "runs"
    if df.empty:
        headline = "**The sweep has no runs.**"
    elif not_done.empty:
        headline = f"All {len(df)} {noun} finished."
    else:
        by_status = ", ".join(f"{k} {v}" for k, v in _counts(not_done).items())
        headline = (f"**{len(not_done)} of {len(df)} {noun} did not finish ({by_status}): excluded "
                    "from the statistics, listed under [Failed and unfinished runs](#failed-and-"
                    "unfinished-runs) and in [failed.md](failed.md).**")
    if expected is not None and expected > len(df):
        headline += (f"\n\n**{expected - len(df)} of the {expected} jobs the sweep launched left "
                     "no record.**")
    if finished_runs(df).empty and not df.empty:
        headline += "\n\n**No finished runs: there is nothing to compare.**"
    return headline


def _summary_lines(df: pd.DataFrame, *, experiment: str, sweep_id: str, parent_id: str,
                   factors: list[str], baselines: dict[str, str], metrics: list[str],
                   notes: Sequence[str], expected: int | None) -> list[str]:
    """The bullet list under the report's headline."""
    recorded = df[df["source"] != NO_RUN] if "source" in df.columns else df
    count_text = ", ".join(f"{k} {v}" for k, v in _counts(recorded).items()) or "none"
    reused = int((df["source"] == "reused").sum()) if "source" in df.columns else 0
    finished = finished_runs(df)
    factor_text = "; ".join(
        f"`{f}` ({', '.join(level_order(df[f], baselines.get(f)))}; baseline {baselines.get(f)})"
        for f in factors) or "none (every run has the same overrides but the seeds)"
    primary = metrics[0] if metrics else None
    jobs = _jobs_line(df, expected)
    return [
        f"- experiment `{experiment}`, sweep `{sweep_id or '?'}`, parent run `{parent_id}`",
        f"- runs: {len(recorded)} ({count_text}); reused from earlier sweeps: {reused}",
        *([jobs] if jobs else []),
        f"- factors: {factor_text}",
        "- replicates: " + ("; ".join(f"{r} ({', '.join(level_order(finished[r])) or '–'})"
                                      for r in _replicates(df)) or "–"),
        f"- primary metric: `{primary}` ({'higher' if higher_is_better(primary) else 'lower'}"
        " is better)" if primary else "- primary metric: none",
        f"- metrics: {', '.join(f'`{m}` {arrow(m)}' for m in metrics) or 'none'}",
        *[f"- note: {n}" for n in notes],
    ]


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
    notes: Sequence[str] = (),
    expected_jobs: int | None = None,
) -> Report:
    """Write every table, plot and ``report.md`` for the runs ``df`` into ``out_dir``.

    ``factors`` defaults to :func:`factors_of`, ``baselines`` to :func:`choose_baselines`; the
    first of ``metrics`` is the primary one (rank view, effects, sort order); ``expected_jobs``
    (how many jobs the sweep launched) adds the expected-vs-recorded count. Files this module
    wrote there before are removed first, so no stale plot survives. Returns a :class:`Report`.
    """
    folder = _Folder(Path(out_dir))
    folder.path.mkdir(parents=True, exist_ok=True)
    for old in folder.path.iterdir():
        if old.is_file() and OWN_FILES.match(old.name):
            old.unlink()
    factors = factors_of(df) if factors is None else list(factors)
    baselines = choose_baselines(df, factors, baselines) if factors else {}
    metrics = [metric_name(m) for m in metrics]
    primary = metrics[0] if metrics else None

    ablation = ablation_table(df, factors, metrics)
    folder.csv("ablation.csv", ablation)
    ablation_md = ablation_markdown(ablation, factors, metrics)
    folder.text("ablation.md", f"# Ablation table: {experiment}\n\n{ablation_md}")
    ranks_md, effects_md, images = _rank_and_effects(df, factors, primary, baselines, folder,
                                                     experiment)
    not_done = df[df["status"] != FINISHED] if not df.empty else df
    failed_md = failed_markdown(not_done)
    noun = "jobs" if "source" in df.columns and (df["source"] == NO_RUN).any() else "runs"
    folder.text("failed.md", f"# Failed and unfinished runs: {experiment}\n\n"
                             f"{len(not_done)} of {len(df)} {noun} did not finish; they are excluded "
                             f"from the statistics.\n\n{failed_md}")
    summary = _summary_lines(df, experiment=experiment, sweep_id=sweep_id, parent_id=parent_id,
                             factors=factors, baselines=baselines, metrics=metrics, notes=notes,
                             expected=expected_jobs)
    lines = [
        f"# Ablation report: {experiment}", "", _headline(df, not_done, expected_jobs), "",
        *summary, "",
        "## Ablation table", "",
        "Mean ± std (n) over seeds of each configuration's finished runs, best first.", "",
        ablation_md, "",
        "## Rank view", "", ranks_md, "",
        "## Effects", "", effects_md, "",
        "## Failed and unfinished runs", "", failed_md, "",
        "## Plots", "",
        *([f"![{p.stem}]({p.name})" for p in images] or ["No plots."]),
    ]
    path = folder.text("report.md", "\n".join(lines))
    files = [path, *folder.files[:-1]]
    return Report(path=path, files=files, ablation=ablation, ablation_md=ablation_md, runs=df)


# ----------------------------------------------------------------------------- one sweep
def default_metrics(df: pd.DataFrame) -> list[str]:
    """The test counterpart of the monitored metric (tag ``mmgnn.monitor``), then
    :data:`DEFAULT_METRICS`."""
    finished = finished_runs(df)
    wanted = list(DEFAULT_METRICS)
    column = f"tags.{TAG_MONITOR}"
    if column in finished.columns and finished[column].notna().any():
        monitor = finished[column].dropna().mode().iloc[0]
        wanted.insert(0, "test/" + monitor.removeprefix("val/"))
    return list(dict.fromkeys(wanted))


def choose_metrics(df: pd.DataFrame, requested: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """The report's metrics (primary first) and notes on what was left out.

    Requested metrics that no finished run has are left out with a note; a requested primary
    metric that none has is an error (a typo). Without a request: :func:`default_metrics`,
    those some finished run has.
    """
    finished = finished_runs(df)
    logged = [c[len("metrics."):] for c in df.columns
              if c.startswith("metrics.") and finished[c].notna().any()]
    if requested:
        requested = [metric_name(m) for m in requested]
        if finished.empty:
            return requested, []
        if requested[0] not in logged:
            close = difflib.get_close_matches(requested[0], logged, n=5, cutoff=0.5)
            raise ReportError(f"no finished run logged metric {requested[0]!r} (nor has it in "
                              f"its {METRICS_FILE})" + (f" (close: {', '.join(close)})" if close else ""))
        missing = [m for m in requested if m not in logged]
        notes = ([f"not logged by any finished run (nor in its {METRICS_FILE}), left out: "
                  f"{', '.join(missing)}"] if missing else [])
        return [m for m in requested if m in logged], notes
    wanted = default_metrics(df)
    if finished.empty:
        return wanted, []
    chosen = [m for m in wanted if m in logged]
    if chosen:
        return chosen, []
    fallback = sorted(m for m in logged if m.startswith("test/")) or sorted(logged)
    if not fallback:
        return [], ["the finished runs logged no metrics"]
    return fallback[:1], [f"none of the default metrics was logged; primary metric {fallback[0]}"]


def log_report(client: MlflowClient, parent_id: str, report: Report) -> None:
    """Log the report's files to the parent run under ``report/`` and make its ablation
    table the run's description (``mlflow.note.content``, shown by the MLflow UI)."""
    try:
        for path in report.files:
            retry_locked(client.log_artifact, parent_id, str(path), REPORT_DIR)
        description = (f"{report.ablation_md}\n\nThe full report: artifact `report/report.md` "
                       f"(on disk: {report.path}).")
        retry_locked(client.set_tag, parent_id, NOTE_TAG, description)
    except Exception as error:  # the report is on disk; say so and fail loudly
        raise ReportError(f"report written to {report.path}, but logging it to run "
                          f"{parent_id} failed: {type(error).__name__}: {error}") from error


def report_sweep(client: MlflowClient, parent_id: str, *, out: str | Path | None = None,
                 metrics: Sequence[str] | None = None, baselines: dict[str, str] | None = None,
                 log: bool = True) -> Report:
    """The report of sweep ``parent_id``: load its runs, write the report, log it.

    ``out`` defaults to ``<sweep dir>/report`` (the parent's ``mmgnn.sweep_dir`` tag), else
    ``<home>/reports/<parent id>`` (:func:`mmgnn.paths.reports_dir`); ``metrics`` (primary
    first) default to :func:`default_metrics`, those the finished runs have, as MLflow metrics
    or in their ``metrics.csv``; ``baselines`` are factor -> level; ``log`` logs the files to the parent
    run (:func:`log_report`). Raises ReportError for an unknown run, a bad metric or baseline.
    """
    parent = get_parent(client, parent_id)
    experiment = retry_locked(client.get_experiment, parent.info.experiment_id).name
    df = load_runs(client, parent_id)
    df = fill_detail_metrics(client, df, metrics or default_metrics(df))
    metrics, notes = choose_metrics(df, metrics)
    factors = factors_of(df)
    baselines = choose_baselines(df, factors, baselines)
    tags = parent.data.tags
    if out is None and tags.get(TAG_SWEEP_DIR):
        out = Path(tags[TAG_SWEEP_DIR]) / REPORT_DIR
    elif out is None:
        out = reports_dir() / parent_id
        notes = [*notes, f"the parent run has no {TAG_SWEEP_DIR} tag; written to {out}"]
    report = write_report(df, out, experiment=experiment, parent_id=parent_id,
                          sweep_id=tags.get(TAG_SWEEP, ""), factors=factors, metrics=metrics,
                          baselines=baselines, notes=notes,
                          expected_jobs=expected_jobs(parent))
    if log:
        log_report(client, parent_id, report)
    return report
