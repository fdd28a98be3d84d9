"""Which metrics go to MLflow as columns, and the tidy ``metrics.csv`` that keeps all of them.

A job computes hundreds of numbers (per retrieval direction, per group, per robustness
condition, at test and at the best validation epoch). MLflow's runs table is for comparing a
few of them across runs, so by default a run logs only:

- the headline set (:data:`HEADLINE`): retrieval mean recall / mAP / R@1 / RSUM, fused accuracy /
  mAP / macro-F1 (only computed when the loss trains the fusion: not under ``loss.fused=none``),
  the worst group's retrieval mean recall / mAP and fused accuracy, the
  robustness summaries (each single modality dropped; noise area under the curve per modality),
  parameters, time, latency and memory, the best epoch, and the best validation value of the
  monitored metric plus its retrieval / fused companions;
- per-epoch curves (:data:`CURVES` plus the monitored validation metric) with ``step=epoch``.

Everything, headline or not, is written to ``<run dir>/metrics.csv`` (:func:`tidy_metrics`),
which is also logged as an artifact at the run's root; ``tracking.log_detail=true`` logs every
key to MLflow as well.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

#: Final (single-value) metrics logged to MLflow by default.
HEADLINE = re.compile(
    r"^(test/(retrieval/(mean_recall|map|r1|rsum)|fused/(acc|map|macro_f1)"
    r"|worst_group/(retrieval/(mean_recall|map)|fused/acc)"
    r"|missing/[^/]+/(retrieval/mean_recall|fused/acc)"
    r"|noise/[^/]+/auc/(retrieval/mean_recall|fused/acc))"
    r"|best_val/(retrieval/(mean_recall|map|r1)|fused/(acc|map)|missing/[^/]+/(retrieval/mean_recall|fused/acc))"
    r"|params/.+|time/.+|latency/.+|memory/.+|best_epoch)$"
)
#: Per-epoch metrics logged as curves by default (and the monitored validation metric).
CURVES = re.compile(r"^(train/.+|lr|temperature)$")
#: Columns of ``metrics.csv`` (the contract with :mod:`mmgnn.analysis`).
COLUMNS = ("key", "split", "metric", "query", "gallery", "group", "condition", "value")
SPLITS = ("test", "best_val")
DIRECTION = re.compile(r"^(?P<query>[^/]+?)_(?P<link>to|and)_(?P<gallery>[^/]+)$")


def is_headline(key: str, monitor: str) -> bool:
    """Whether a final metric is in the default MLflow set (``best_<monitor>`` always is)."""
    return bool(HEADLINE.match(key)) or key == f"best_{monitor}"


def is_curve(key: str, monitor: str) -> bool:
    """Whether a per-epoch metric is logged as a curve by default."""
    return bool(CURVES.match(key)) or key == monitor


def parse_key(key: str) -> dict[str, str]:
    """A flat metric key as the columns of ``metrics.csv``.

    ``test/group/g1/text_to_image/r1`` -> split test, group g1, query text, gallery image,
    metric ``retrieval/r1``; ``test/noise/audio/0.3/fused/acc`` -> condition ``noise:audio:0.3``,
    metric ``fused/acc``; ``test/missing/text/retrieval/map`` -> condition ``missing:text``;
    ``test/worst_group/...`` -> group ``worst_group``; ``test/gates/text/mean`` -> metric
    ``gates/mean``, query ``text``; ``text_and_image/rsum`` -> metric ``retrieval/rsum`` over both
    directions of the pair. Run-level keys (``params/total``, ``time/train_s``, ``best_epoch``)
    have an empty split and are their own metric.
    """
    row = dict.fromkeys(COLUMNS[1:-1], "")
    parts = key.split("/")
    if parts[0] not in SPLITS:
        return {**row, "metric": key}
    row["split"], parts = parts[0], parts[1:]
    if parts[0] == "group" and len(parts) > 2:
        row["group"], parts = parts[1], parts[2:]
    elif parts[0] == "worst_group":
        row["group"], parts = "worst_group", parts[1:]
    if parts[0] == "missing" and len(parts) > 2:
        row["condition"], parts = f"missing:{parts[1]}", parts[2:]
    elif parts[0] == "noise" and len(parts) > 3:
        row["condition"], parts = f"noise:{parts[1]}:{parts[2]}", parts[3:]
    if parts[0] == "gates" and len(parts) == 3:
        row["query"], parts = parts[1], [parts[0], parts[2]]
    pair = DIRECTION.match(parts[0]) if len(parts) == 2 else None
    if pair:
        row["query"], row["gallery"] = pair["query"], pair["gallery"]
        parts = ["retrieval", parts[1]]
    row["metric"] = "/".join(parts)
    return row


def tidy_metrics(metrics: dict[str, float]) -> pd.DataFrame:
    """Flat ``{key: value}`` -> one row per key with :data:`COLUMNS`, sorted by key."""
    rows = [{"key": k, **parse_key(k), "value": float(v)} for k, v in sorted(metrics.items())]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_metrics_csv(metrics: dict[str, float], path: Path) -> Path:
    """Write :func:`tidy_metrics` to ``path`` (empty strings where a column does not apply)."""
    tidy_metrics(metrics).to_csv(path, index=False)
    return path
