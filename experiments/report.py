"""The ablation report of one sweep, from its MLflow runs (command line over
:mod:`mmgnn.analysis`).

    python -m experiments.report --experiment ablate_skip            (its latest sweep)
    python -m experiments.report --parent <parent run id> [--tracking-uri URI]
        [--out DIR] [--metrics m1,m2,...] [--baseline skip=none] [--no-log]

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
:mod:`mmgnn.analysis.report`).
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
    return parser


def main(argv: Sequence[str] | None = None) -> Report:
    """The CLI: find the sweep, write its report, log it to the parent run.

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
    status = report.runs["status"] if report.runs is not None else None
    not_done = int((status != FINISHED).sum()) if status is not None else 0
    if not_done:
        print(f"{not_done} of {len(status)} runs did not finish: see {report.path.parent / 'failed.md'}",
              file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
