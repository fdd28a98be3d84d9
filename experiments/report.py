"""The ablation report of one sweep, from its MLflow runs (command line over
:mod:`mmgnn.analysis`).

    python -m experiments.report --experiment ablate_skip            (its latest sweep)
    python -m experiments.report --parent <parent run id> [--tracking-uri URI]
        [--out DIR] [--metrics m1,m2,...] [--baseline skip=none] [--no-log]
        [--markdown docs/results/NAME.md]

Which runs: the sweep's children, the earlier FINISHED runs it reused, and the jobs that failed
before their MLflow run existed (:func:`mmgnn.analysis.load_runs`). ``--experiment`` alone
takes the sweep whose parent started last. The factors are the override keys whose values
vary across the sweep's runs, ``data.seed`` and ``seed`` excepted (the replicate keys: runs are
paired only when equal in both). Intervals are 95% Student-t intervals over seeds or pairs
(:func:`mmgnn.analysis.stats.t_interval`). Only FINISHED runs enter the statistics; every
other run is counted and named. A metric a run did not log to MLflow is read from its
``metrics.csv`` artifact.

Written into ``<sweep dir>/report/`` (``--out`` overrides) and, unless ``--no-log``, logged to
the parent run under ``report/``, whose description becomes the ablation table (the files:
:mod:`mmgnn.analysis.report`). ``--markdown PATH`` also writes the ablation, rank and effects
tables as one page with the command, date, code versions and machine above them
(:mod:`experiments.markdown`): the results pages of ``docs/``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlflow.tracking import MlflowClient

from mmgnn.analysis.report import DEFAULT_METRICS, Report, report_sweep
from mmgnn.analysis.runs import FINISHED, ReportError, get_parent, latest_sweep
from mmgnn.tracking.store import default_tracking_uri, retry_locked


def parse_baselines(items: Sequence[str] | None) -> dict[str, str]:
    """``["skip=none", "fusion=concat,gnn=mlp"]`` -> ``{"skip": "none", ...}``."""
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
    parser.add_argument("--metrics", help="comma-separated metric keys, the primary first; a key "
                        "a run did not log to MLflow is read from its metrics.csv "
                        f"(default: {','.join(DEFAULT_METRICS)}, those logged)")
    parser.add_argument("--baseline", action="append", metavar="FACTOR=LEVEL",
                        help="a factor's baseline level (repeat or comma-separate)")
    parser.add_argument("--no-log", action="store_true",
                        help="do not log the report as artifacts of the parent run")
    parser.add_argument("--markdown", metavar="PATH",
                        help="also write the ablation, rank and effects tables as one markdown page, "
                        "with the command, date, code versions and machine above them")
    return parser


def main(argv: Sequence[str] | None = None) -> Report:
    """The CLI: find the sweep, write its report, log it to the parent run.

    Exits (``SystemExit`` with a message) for an unknown experiment or parent run, an
    experiment without sweeps and bad arguments; a sweep without finished runs still gets its
    report (with the failed runs), and exits 0.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # the command, for --markdown
    if not args.experiment and not args.parent:
        parser.error("give --experiment NAME (its latest sweep) or --parent RUN_ID")
    try:
        return _run(args)
    except ReportError as error:
        raise SystemExit(f"experiments.report: {error}") from None


def cli() -> int:
    """The ``mmgnn-report`` console command (:func:`main` returns the report for Python callers)."""
    main()
    return 0


def _run(args: argparse.Namespace) -> Report:
    client = MlflowClient(tracking_uri=args.tracking_uri or default_tracking_uri())
    parent = get_parent(client, args.parent) if args.parent else latest_sweep(client, args.experiment)
    parent_id = parent.info.run_id
    experiment = retry_locked(client.get_experiment, parent.info.experiment_id).name
    if args.experiment and args.experiment != experiment:
        raise ReportError(f"run {parent_id} belongs to experiment {experiment!r}, "
                          f"not {args.experiment!r}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    report = report_sweep(client, parent_id, out=args.out, metrics=metrics,
                          baselines=parse_baselines(args.baseline), log=not args.no_log)
    print(report.path)
    print(report.ablation_md)
    if args.markdown:
        print(write_markdown(args.markdown, report, experiment, parent_id, args.argv))
    status = report.runs["status"] if report.runs is not None else None
    not_done = int((status != FINISHED).sum()) if status is not None else 0
    if not_done:
        print(f"{not_done} of {len(status)} runs did not finish: see {report.path.parent / 'failed.md'}",
              file=sys.stderr)
    return report


def write_markdown(path: str, report: Report, experiment: str, parent_id: str,
                   argv: Sequence[str]):
    """The results page of ``report``: provenance (with the runs' code versions and commits),
    the ablation table, the rank view and the effects tables (``ranks.md``, ``effects.md`` of
    the report folder)."""
    from experiments.markdown import command_line, write_page

    runs = report.runs
    finished = runs[runs["status"] == FINISHED] if runs is not None and "status" in runs else None
    notes = [f"Sweep: parent run `{parent_id}` of MLflow experiment `{experiment}`"]
    if finished is not None and len(finished):
        def values(column: str) -> str:
            found = finished[column].dropna().unique() if column in finished else []
            return ", ".join(f"`{str(v)[:12]}`" for v in sorted(found)) or "unknown"

        notes.append(f"Runs: {len(finished)} FINISHED, of code version "
                     f"{values('tags.mmgnn.code_version')}, git commit "
                     f"{values('tags.mlflow.source.git.commit')}; their times were measured "
                     "where the sweep ran")
    notes.append("Intervals: 95% Student-t intervals over seeds (levels) or over pairs "
                 "(differences from the baseline); an interval that contains 0 means no "
                 "detectable difference")
    body = ["## Ablation table", "", report.ablation_md.strip()]
    for name in ("ranks.md", "effects.md"):
        part = report.path.parent / name
        if part.exists():  # its headings one level down, under the page's title
            text = "\n".join(("#" + line) if line.startswith("#") else line
                             for line in part.read_text().strip().splitlines())
            body += ["", text]
    return write_page(path, f"Results: {experiment}", "\n".join(body),
                      command_line("experiments.report", argv), notes=notes)


if __name__ == "__main__":
    main()
