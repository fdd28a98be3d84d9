"""The hardneg beta sweep as one figure: test retrieval, floor share and weight entropy per beta.

    python run.py -m +experiment=sweep_hardneg_beta data.loader.n_items=600
    python -m experiments.plot_beta_sweep --experiment sweep_hardneg_beta \\
        [--tracking-uri URI] --out docs/img/hardneg_beta_sweep.png

Takes the experiment's latest sweep (:func:`mmgnn.analysis.runs.latest_sweep`) and its FINISHED
runs (:func:`mmgnn.analysis.runs.load_runs`). Per run: ``test/retrieval/mean_recall`` and the
per-epoch hardneg diagnostics ``train/hardneg/{floor_share,weight_entropy,top1_weight}``
averaged over the epochs after the beta warm-up (``step >= loss.alignment.beta_warmup_epochs``:
from then on the loss uses the full beta). Prints the table (markdown, one row per beta: the
mean over its runs) and writes the plot (:func:`mmgnn.analysis.plots.plot_factor_curves`).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from mmgnn.analysis.plots import plot_factor_curves
from mmgnn.analysis.runs import ReportError, as_float, finished_runs, latest_sweep, load_runs
from mmgnn.analysis.tables import markdown_table
from mmgnn.tracking.store import default_tracking_uri, retry_locked

BETA = "loss.alignment.beta"
WARMUP = "loss.alignment.beta_warmup_epochs"
RECALL = "test/retrieval/mean_recall"
CURVES = {"floor_share": "train/hardneg/floor_share",
          "weight_entropy": "train/hardneg/weight_entropy",
          "top1_weight": "train/hardneg/top1_weight"}
PANELS = {"test_mean_recall": RECALL,
          "floor_share": "share of anchors at the floor (train, after warm-up)",
          "weight_entropy": "normalised weight entropy (train, after warm-up)"}
# Settings named in the title when all runs share them.
TITLE_PARAMS = {"data.name": "data", "data.loader.n_items": "items",
                "loss.alignment.tau_plus": "tau_plus", "loss.alignment.gamma": "gamma",
                "seed": "seed"}


def after_warmup_mean(client: MlflowClient, run_id: str, key: str, warmup: int) -> float:
    """Mean of metric ``key``'s values at steps (epochs) ``>= warmup``; NaN when there are none."""
    history = retry_locked(client.get_metric_history, run_id, key)
    values = [m.value for m in history if m.step >= warmup]
    return sum(values) / len(values) if values else math.nan


def _number(value: object) -> float | None:
    """``value`` as a float; ``None`` when it is no number or NaN (a column the run lacks)."""
    number = as_float(value)
    return None if number is None or math.isnan(number) else number


def sweep_points(client: MlflowClient, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per FINISHED run of ``runs`` (a :func:`load_runs` frame) that has a beta.

    A run's beta is its override (``load_runs``' column), else its logged param; runs without
    one (another loss in the sweep) are left out. Columns: ``run_id``, ``beta``,
    ``warmup_epochs``, ``test_mean_recall`` and the :data:`CURVES` averaged after the warm-up
    (NaN where a run did not log one), sorted by beta. Raises ReportError when no run is left.
    """
    rows = []
    for _, run in finished_runs(runs).iterrows():
        beta = _number(run.get(BETA))
        beta = _number(run.get(f"params.{BETA}")) if beta is None else beta
        if beta is None:
            continue
        warmup = int(_number(run.get(f"params.{WARMUP}")) or 0)
        recall = _number(run.get(f"metrics.{RECALL}"))
        row = {"run_id": run["run_id"], "beta": beta, "warmup_epochs": warmup,
               "test_mean_recall": math.nan if recall is None else recall}
        row.update({name: after_warmup_mean(client, run["run_id"], key, warmup)
                    for name, key in CURVES.items()})
        rows.append(row)
    if not rows:
        raise ReportError(f"the sweep has no FINISHED run with {BETA} (not a hardneg sweep?)")
    return pd.DataFrame(rows).sort_values("beta", kind="stable").reset_index(drop=True)


def sweep_title(runs: pd.DataFrame, experiment: str) -> str:
    """``<experiment>: <n> runs`` and the :data:`TITLE_PARAMS` all ``runs`` share."""
    shared = []
    for key, label in TITLE_PARAMS.items():
        column = f"params.{key}"
        if column in runs.columns and runs[column].nunique(dropna=False) == 1:
            shared.append(f"{label} {runs[column].iloc[0]}")
    return f"{experiment}: {len(runs)} runs" + (f" ({', '.join(shared)})" if shared else "")


def beta_label(runs: pd.DataFrame) -> str:
    """``beta (<scale> scale)`` when all ``runs`` share ``beta_scale``, else ``beta``."""
    column = f"params.{BETA}_scale"
    if column in runs.columns and runs[column].nunique(dropna=False) == 1:
        return f"beta ({runs[column].iloc[0]} scale)"
    return "beta"


def beta_table(points: pd.DataFrame) -> str:
    """Markdown table: per beta, the number of runs and the means of each value."""
    table = points.groupby("beta").agg(
        runs=("run_id", "size"), test_mean_recall=("test_mean_recall", "mean"),
        floor_share=("floor_share", "mean"), weight_entropy=("weight_entropy", "mean"),
        top1_weight=("top1_weight", "mean")).reset_index()
    table["beta"] = table["beta"].map("{:g}".format)
    return markdown_table(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.plot_beta_sweep",
        description="Test retrieval, floor share and weight entropy per beta of a hardneg sweep.")
    parser.add_argument("--experiment", required=True, help="MLflow experiment (its latest sweep)")
    parser.add_argument("--tracking-uri", help="default: sqlite:///<project>/outputs/mlflow.db")
    parser.add_argument("--out", required=True, help="the PNG to write")
    return parser


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """The CLI; returns the per-run points. Exits with a message (``SystemExit``) for an
    unknown experiment, an experiment without sweeps, a sweep without beta runs or an
    ``--out`` that is no ``.png``; nothing is written then."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise SystemExit(f"experiments.plot_beta_sweep: --out must name a .png file, got {out}")
    client = MlflowClient(tracking_uri=args.tracking_uri or default_tracking_uri())
    try:
        runs = load_runs(client, latest_sweep(client, args.experiment).info.run_id,
                         metrics=[RECALL])
        points = sweep_points(client, runs)
    except ReportError as error:
        raise SystemExit(f"experiments.plot_beta_sweep: {error}") from None
    print(beta_table(points))
    out.parent.mkdir(parents=True, exist_ok=True)
    plotted = runs[runs["run_id"].isin(points["run_id"])]
    plot_factor_curves(points, "beta", PANELS, out, title=sweep_title(plotted, args.experiment),
                       xlabel=beta_label(plotted))
    print(f"wrote {out}")
    return points


if __name__ == "__main__":
    main()
