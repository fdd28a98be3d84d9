"""Every PNG plot of the project.

Per run (drawn by :mod:`mmgnn.launch.plots`, logged by :mod:`mmgnn.tracking.job_run`):
:func:`learning_curves`, :func:`similarity_matrix`, :func:`gate_distribution`. Per sweep (in
the ablation report): :func:`plot_ranks` (GraphGym's rank view, You et al. 2020) and
:func:`plot_effects`; per numeric factor: :func:`plot_factor_curves`.

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot``: no global backend
or figure state, so plotting is safe in worker processes and never opens a window.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmgnn.analysis.keys import arrow, metric_column, metric_name


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi)
    return path


# ----------------------------------------------------------------------------- per run
def learning_curves(history: list[dict[str, float]], monitor: str, path: Path) -> Path:
    """Training loss terms, the monitored validation metric and the learning rate per epoch.

    ``history``: one dict per epoch with ``epoch`` (0-based), ``train/<term>``, ``monitor``
    and ``lr``; missing values are gaps.
    """
    epochs = [h["epoch"] + 1 for h in history]
    fig = Figure(figsize=(13, 3.6), layout="tight")
    axes = fig.subplots(1, 3)
    for key in sorted({k for h in history for k in h if k.startswith("train/")}):
        axes[0].plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key[6:])
    axes[0].set_title("training loss")
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [h.get(monitor, np.nan) for h in history], marker="o", color="C2")
    axes[1].set_title(monitor)
    axes[2].plot(epochs, [h.get("lr", np.nan) for h in history], marker="o", color="C3")
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return _save(fig, path, 110)


def similarity_matrix(
    query: np.ndarray, gallery: np.ndarray, names: tuple[str, str], path: Path, n: int = 32
) -> Path:
    """Cosine similarities of the first ``n`` test items' embeddings (``[N, D]`` each, rows
    L2-normalised, so ``query @ gallery.T`` is the cosine)."""
    sim = query[:n] @ gallery[:n].T
    fig = Figure(figsize=(5.2, 4.6), layout="tight")
    ax = fig.subplots()
    image = ax.imshow(sim, cmap="viridis", vmin=-1, vmax=1)
    ax.set_xlabel(f"{names[1]} (test item)")
    ax.set_ylabel(f"{names[0]} (test item)")
    ax.set_title(f"cosine similarity {names[0]} -> {names[1]}")
    fig.colorbar(image, ax=ax)
    return _save(fig, path, 110)


def gate_distribution(
    gates: np.ndarray, present: np.ndarray, modalities: tuple[str, ...], path: Path
) -> Path:
    """Box plot of each modality's gate over the test items that have the modality.

    ``gates``: float ``[N, M]``; ``present``: bool ``[N, M]``; ``modalities``: the M names.
    """
    fig = Figure(figsize=(5.5, 3.6), layout="tight")
    ax = fig.subplots()
    data = [gates[present[:, j], j] for j in range(len(modalities))]
    ax.boxplot(data, tick_labels=list(modalities))
    ax.set_ylabel("gate / attention mass")
    ax.set_title("fusion gates per modality (test)")
    ax.grid(alpha=0.3)
    return _save(fig, path, 110)


# ----------------------------------------------------------------------------- per sweep
def plot_ranks(ranks: pd.DataFrame, factor: str, levels: Sequence[str], metric: str, path: Path) -> Path:
    """Box plot (with the single ranks as points) of each level's rank; rank 1 on top."""
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
    value_columns = (factor, metric_column(metric), "rank", "rank_min", "group_size")
    groups = ranks.drop_duplicates([c for c in ranks.columns if c not in value_columns])
    ax.set_title(f"{factor}: rank by {metric_name(metric)}\n({len(groups)} groups)", fontsize=9)
    return _save(fig, path, 120)


def plot_factor_curves(points: pd.DataFrame, factor: str, panels: dict[str, str], path: Path,
                       title: str = "", xlabel: str = "") -> Path:
    """One panel per metric column of ``points`` against a numeric factor's levels.

    ``points``: one row per run, the column ``factor`` (numbers) and the ``panels`` columns
    (``column -> panel title``). The levels sit evenly spaced in increasing order; each
    panel shows the mean over a level's runs (NaN runs left out), with bars from the minimum
    to the maximum when a level has several runs; ``xlabel`` defaults to ``factor``. Used for
    the hardneg beta sweep (``experiments/plot_beta_sweep.py``).
    """
    levels = np.sort(points[factor].astype(float).unique())
    x = np.arange(len(levels))
    fig = Figure(figsize=(4 * max(len(panels), 1), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (column, panel_title) in zip(axes, panels.items()):
        by_level = points.groupby(points[factor].astype(float))[column].agg(["mean", "min", "max"])
        by_level = by_level.reindex(levels)
        mean = by_level["mean"].to_numpy(float)
        spread = np.vstack([mean - by_level["min"].to_numpy(float),
                            by_level["max"].to_numpy(float) - mean])
        ax.errorbar(x, mean, yerr=np.nan_to_num(spread), marker="o", capsize=3)
        ax.set_xticks(x, [f"{v:g}" for v in levels])
        ax.set_xlabel(xlabel or factor)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, 110)


def plot_effects(effects: pd.DataFrame, factor: str, metric: str, path: Path) -> Path:
    """Bars of each level's marginal mean with its 95% t-interval over the level's runs; the
    paired differences from the baseline with their 95% t-interval over the pairs beside them
    (``effects``: :func:`mmgnn.analysis.stats.effects_table`; an interval without ends, from
    fewer than two values, draws no bar)."""
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
    left.set_ylabel(f"{metric_name(metric)} {arrow(metric)}")
    left.set_title(f"{factor}: marginal mean,\n95% t-interval over runs", fontsize=9)
    diffs = mine[~mine["baseline"] & (mine["pairs"].fillna(0) > 0)]
    if diffs.empty:
        right.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=right.transAxes)
        right.set_axis_off()
    else:
        xd = np.arange(len(diffs))
        d = diffs["diff"].to_numpy(float)
        derr = np.clip(np.vstack([d - diffs["diff_ci_low"].to_numpy(float),
                                  diffs["diff_ci_high"].to_numpy(float) - d]), 0, None)
        right.bar(xd, d, yerr=np.nan_to_num(derr), capsize=4, color="tab:orange")
        right.axhline(0, color="black", lw=0.8)
        right.set_xticks(xd, diffs["level"])
        base = mine.loc[mine["baseline"], "level"]
        right.set_title(f"paired difference vs {base.iloc[0] if len(base) else 'baseline'},\n"
                        "95% t-interval over pairs", fontsize=9)
    return _save(fig, path, 120)
