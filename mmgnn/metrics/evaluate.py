"""Every evaluation number of one split's model outputs, as a flat dict of floats.

Keys are valid MLflow metric names (letters, digits, ``_ - . /`` and spaces only), so
modality and group names are made key-safe by :func:`metric_key_part` and an ordered modality
pair is written ``<a>_to_<b>`` (``text_to_image/r1``), an unordered one ``<a>_and_<b>``.

Per ordered pair ``a_to_b`` (queries: modality ``a``, gallery: modality ``b``):

* ``pairing="item"``: items lacking ``a`` or ``b`` are removed from both sides, row ``i`` of
  each side is the same item; ``r1 r5 r10 medr mean_rank`` (VSE++) and, with labels,
  ``map`` and ``label_r1 label_r5 label_r10`` (same-label items relevant, including the
  query item's own ``b`` since query and gallery are different sets).
* ``pairing="label"``: queries are the items having ``a``, the gallery the items having ``b``,
  same-label items are the matches; ``map`` and ``label_r{k}`` only.

Per unordered pair ``a_and_b/rsum``: the sum of the pairing's R@1/5/10 (``r{k}`` for item,
``label_r{k}`` for label pairing) over both directions. ``retrieval/<metric>``: the mean of
each per-direction metric over ordered pairs; ``retrieval/rsum`` the mean over unordered
pairs; ``retrieval/mean_recall`` the mean over ordered pairs of ``(R@1 + R@5 + R@10) / 3``.
Recalls and mAP are fractions in [0, 1].

Fused embedding: ``fused/map`` and ``fused/label_r{k}`` (same-label retrieval among the items
with at least one modality, the query itself left out); ``fused/acc`` and ``fused/macro_f1``
of the classifier. Their denominator is every labelled item: an item with no modality (e.g.
when a robustness probe removes the only ones it had) is a query that misses and a wrong
class, never left out. A retrieval direction's denominator is fixed by the data (the items
having both modalities, or the query modality under label pairing); a probe that removes a
modality removes the directions that use it. Per group ``group/<name>/<key>`` holds
the same keys computed over the group's queries and items (ranks are still taken against the
whole gallery, so groups of different size stay comparable) and ``worst_group/<key>`` the
worst group's value (the maximum for ``medr``/``mean_rank``, the minimum otherwise).
``gates/<modality>/mean``: the mean gate of a modality over the items that have it.
A metric with no defined value (no query, no label) is left out rather than reported NaN.
Without a fused output (``fused=None``: a run whose loss never trains the fusion,
``loss.fused=none``) no ``fused/*`` or ``gates/*`` key is computed, in any group or condition
(:func:`is_fusion_metric`): they would describe the randomly initialised fusion.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from mmgnn.data.dataset import PAIRINGS

from mmgnn.metrics.classification import accuracy, macro_f1, predictions
from mmgnn.metrics.retrieval import (
    average_precision,
    label_ranks,
    match_ranks,
    summarize,
    to_numpy,
)

LOWER_IS_BETTER = ("medr", "mean_rank")
MONITORED = {"item": "retrieval/mean_recall", "label": "retrieval/map"}
# A key of the fused output: ``fused/*`` or ``gates/*`` after the split (``val/``, ``test/``),
# condition (``missing/<tag>/``, ``noise/<modality>/<level or auc>/``) and group prefixes.
FUSION_METRIC = re.compile(
    r"^(?:(?:val|test|best_val)/)?(?:missing/[^/]+/|noise/[^/]+/[^/]+/)?(?:group/[^/]+/|worst_group/)?"
    r"(?:fused|gates)/"
)


def metric_key_part(name: str) -> str:
    """``name`` with every character MLflow rejects in metric names replaced by ``_``.

    ``"Côte d'Ivoire"`` -> ``"Côte d_Ivoire"``; ``"a/b"`` -> ``"a_b"``; ``".."`` -> ``"_.."``.
    """
    part = re.sub(r"[^\w.\- ]", "_", str(name))
    return part if part.strip(". ") else f"_{part}"


def is_fusion_metric(key: str) -> bool:
    """Whether metric ``key`` is computed from the fused output (its retrieval, classifier or
    gates), with or without a split, group or robustness-condition prefix.

    ``"val/fused/acc"``, ``"worst_group/fused/map"``, ``"missing/text/fused/acc"``,
    ``"gates/image/mean"`` -> True; ``"retrieval/map"``, ``"group/fused/text_to_image/r1"``
    (a group named ``fused``) -> False.
    """
    return bool(FUSION_METRIC.match(key))


def _scatter(n: int, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """float64 ``[n]``: ``values`` at ``rows``, NaN elsewhere (rows that are no query)."""
    out = np.full(n, np.nan)
    out[rows] = values
    return out


def _fused_queries(fused, present, labels, logits):
    """Per-item fused retrieval values and predicted classes, every labelled item counted.

    Items with at least one modality form the gallery. The queries of same-label retrieval
    are the labelled items with another item of their label, whatever their modalities: one
    with no modality left, or whose same-label items all lost theirs, is a query that misses
    (rank ``+inf``, AP 0). A labelled item with no modality is a wrong class (prediction
    ``-1``). So removing modalities never shrinks a denominator.

    Returns:
        ``({"label_rank", "ap"} float64 [N] (empty dict without labels), predicted int64 [N]
        or None without labels or logits)``.
    """
    if labels is None:
        return {}, None
    n = len(present)
    has_any = present.any(axis=1)
    rows = np.flatnonzero(has_any)
    _, code, count = np.unique(labels, return_inverse=True, return_counts=True)
    query = (labels >= 0) & (count[code] >= 2)
    f, fl = fused[rows], labels[rows]
    label_rank = _scatter(n, rows, label_ranks(f, f, fl, fl, exclude_self=True))
    ap = _scatter(n, rows, average_precision(f, f, fl, fl, exclude_self=True))
    missed = query & np.isnan(label_rank)
    label_rank[missed], ap[missed] = np.inf, 0.0
    if logits is None:
        return {"label_rank": label_rank, "ap": ap}, None
    predicted = np.full(n, -1, dtype=np.int64)
    predicted[rows] = predictions(to_numpy(logits)[rows])
    return {"label_rank": label_rank, "ap": ap}, predicted


def _unique_parts(names: Sequence[str]) -> list[str]:
    """Key-safe names, made distinct by appending the position where two collide."""
    parts = [metric_key_part(n) for n in names]
    return [p if parts.count(p) == 1 else f"{p}_{i}" for i, p in enumerate(parts)]


def _direction_queries(
    emb: dict[str, np.ndarray],
    present: np.ndarray,
    labels: np.ndarray | None,
    pairing: str,
    keys: dict[str, str],
) -> dict[str, dict[str, np.ndarray]]:
    """Per-query values of every ordered modality pair, over all ``N`` items.

    Returns:
        ``{"<a>_to_<b>": {"ranks"?, "label_rank"?, "ap"?: float64 [N]}}``, NaN where an item
        is no query of that direction, so every subset (all items, one group) is summarised
        from the same rankings. ``ranks`` only under item pairing, the label values only
        with labels.
    """
    names = list(emb)
    n = len(present)
    per_query: dict[str, dict[str, np.ndarray]] = {}
    for ia, ib in itertools.permutations(range(len(names)), 2):
        a, b = names[ia], names[ib]
        values: dict[str, np.ndarray] = {}
        if pairing == "item":
            rows = np.flatnonzero(present[:, ia] & present[:, ib])
            query, gallery, query_rows, gallery_rows = emb[a][rows], emb[b][rows], rows, rows
            values["ranks"] = _scatter(n, rows, match_ranks(query, gallery))
        else:
            query_rows = np.flatnonzero(present[:, ia])
            gallery_rows = np.flatnonzero(present[:, ib])
            query, gallery = emb[a][query_rows], emb[b][gallery_rows]
        if labels is not None:
            ql, gl = labels[query_rows], labels[gallery_rows]
            values["label_rank"] = _scatter(n, query_rows, label_ranks(query, gallery, ql, gl))
            values["ap"] = _scatter(n, query_rows, average_precision(query, gallery, ql, gl))
        per_query[f"{keys[a]}_to_{keys[b]}"] = values
    return per_query


def _retrieval_summary(
    per_query: dict[str, dict[str, np.ndarray]],
    subset: np.ndarray,
    keys: dict[str, str],
    recall_names: Sequence[str],
    ks: Sequence[int],
) -> dict[str, float]:
    """Per-direction, per-unordered-pair ``rsum`` and ``retrieval/*`` means over ``subset``.

    Args:
        per_query: from :func:`_direction_queries`.
        subset: bool ``[N]``, the queries counted.
        keys: modality name -> key part, in modality order.
        recall_names: the pairing's recall keys (``r{k}`` or ``label_r{k}``).
    """
    out: dict[str, float] = {}
    directions = {
        d: summarize(**{k: v[subset] for k, v in values.items()}, ks=ks)
        for d, values in per_query.items()
    }
    for d, s in directions.items():
        out.update({f"{d}/{k}": v for k, v in s.items()})
    rsums = []
    for a, b in itertools.combinations(keys.values(), 2):
        both = (directions[f"{a}_to_{b}"], directions[f"{b}_to_{a}"])
        if all(r in s for s in both for r in recall_names):
            rsums.append(sum(s[r] for s in both for r in recall_names))
            out[f"{a}_and_{b}/rsum"] = rsums[-1]
    for metric in dict.fromkeys(k for s in directions.values() for k in s):
        out[f"retrieval/{metric}"] = float(
            np.mean([s[metric] for s in directions.values() if metric in s])
        )
    if rsums:
        out["retrieval/rsum"] = float(np.mean(rsums))
    mean_recalls = [
        np.mean([s[r] for r in recall_names])
        for s in directions.values()
        if all(r in s for r in recall_names)
    ]
    if mean_recalls:
        out["retrieval/mean_recall"] = float(np.mean(mean_recalls))
    return out


def _fused_summary(
    fused_query: dict[str, np.ndarray],
    predicted: np.ndarray | None,
    labels: np.ndarray | None,
    subset: np.ndarray,
    ks: Sequence[int],
) -> dict[str, float]:
    """``fused/*`` over ``subset``: same-label retrieval and, with predictions, acc/macro-F1.

    Args:
        fused_query, predicted: from :func:`_fused_queries`.
        labels: int64 ``[N]`` or None; subset: bool ``[N]``.
    """
    out: dict[str, float] = {}
    if fused_query:
        s = summarize(**{k: v[subset] for k, v in fused_query.items()}, ks=ks)
        out.update({f"fused/{k}": v for k, v in s.items()})
    if predicted is not None:
        scored = subset & (labels >= 0)
        if scored.any():
            out["fused/acc"] = accuracy(predicted[scored], labels[scored])
            out["fused/macro_f1"] = macro_f1(predicted[scored], labels[scored])
    return out


def _group_metrics(
    summary: Callable[[np.ndarray], dict[str, float]],
    groups: np.ndarray,
    group_names: Sequence[str],
) -> dict[str, float]:
    """``group/<name>/<key>`` of every non-empty group, then ``worst_group/<key>``.

    Args:
        summary: bool subset ``[N]`` -> ``{key: value}``.
        groups: int64 ``[N]`` codes into ``group_names``.

    The worst group's value is the maximum for :data:`LOWER_IS_BETTER` metrics, the minimum
    otherwise, over the groups that have the key.
    """
    out: dict[str, float] = {}
    worst: dict[str, float] = {}
    for code, part in enumerate(_unique_parts(group_names)):
        in_group = groups == code
        if not in_group.any():
            continue
        for k, v in summary(in_group).items():
            out[f"group/{part}/{k}"] = v
            if k not in worst:
                worst[k] = v
            elif k.rsplit("/", 1)[-1] in LOWER_IS_BETTER:
                worst[k] = max(worst[k], v)
            else:
                worst[k] = min(worst[k], v)
    out.update({f"worst_group/{k}": v for k, v in worst.items()})
    return out


def _gate_means(gates, present: np.ndarray, keys: dict[str, str]) -> dict[str, float]:
    """``gates/<modality>/mean``: the mean of gates ``[N, M]`` over the items having it."""
    gates = to_numpy(gates)
    return {
        f"gates/{part}/mean": float(gates[present[:, i], i].mean())
        for i, part in enumerate(keys.values())
        if present[:, i].any()
    }


def multimodal_metrics(
    embeddings: dict,
    present,
    fused,
    logits,
    labels,
    groups,
    group_names: Sequence[str],
    pairing: str = "item",
    gates=None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Retrieval, classification, per-group and gate metrics (see the module docstring).

    Args:
        embeddings: modality -> ``[N, D]`` (rows of missing modalities are ignored).
        present: bool ``[N, M]``, columns in ``embeddings`` order.
        fused: ``[N, D_f]`` fused embeddings, or None when the fusion is not trained (then
            no ``fused/*`` metric, ``logits`` and ``gates`` are ignored).
        logits: ``[N, C]`` classifier logits, or None.
        labels: int ``[N]`` class codes (negative: unlabelled), or None.
        groups: int ``[N]`` codes into ``group_names``.
        group_names: the group names (keys ``group/<name>/...``).
        pairing: ``"item"`` or ``"label"`` (what corresponds across modalities).
        gates: ``[N, M]`` fusion gates, or None.
        ks: the K of Recall@K.

    Returns:
        ``{key: float}``; every value is finite.
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    if pairing == "label" and labels is None:
        raise ValueError("pairing='label' needs labels")
    names = list(embeddings)
    emb = {m: to_numpy(e) for m, e in embeddings.items()}
    present = to_numpy(present).astype(bool)
    labels = None if labels is None else to_numpy(labels).astype(np.int64)
    keys = dict(zip(names, _unique_parts(names)))

    per_query = _direction_queries(emb, present, labels, pairing, keys)
    fused_query, predicted = {}, None
    if fused is not None:
        fused_query, predicted = _fused_queries(to_numpy(fused), present, labels, logits)
    recall_names = [f"r{k}" if pairing == "item" else f"label_r{k}" for k in ks]

    def summary(subset: np.ndarray) -> dict[str, float]:
        return {
            **_retrieval_summary(per_query, subset, keys, recall_names, ks),
            **_fused_summary(fused_query, predicted, labels, subset, ks),
        }

    metrics = summary(np.ones(len(present), dtype=bool))
    metrics.update(_group_metrics(summary, to_numpy(groups).astype(np.int64), group_names))
    if fused is not None and gates is not None:
        metrics.update(_gate_means(gates, present, keys))
    return metrics


def monitored_key(monitor: str, pairing: str, split: str | None = "val") -> str:
    """The key of the metric that chooses the best epoch (higher is better): the one home of
    ``train.monitor``'s meaning, resolved once per run (the trainer, the tracked run's curves
    and tag, and the test summary all read it from here).

    ``monitor`` is ``train.monitor``: ``"auto"`` picks the metric of ``pairing``:
    ``retrieval/mean_recall`` (mean over ordered modality pairs of (R@1+R@5+R@10)/3) for
    ``"item"``, ``retrieval/map`` (same-label mAP) for ``"label"``, metrics of the per-modality
    embeddings, so they exist whether or not the fusion is trained; any other value names a
    metric, with or without its ``val/`` prefix. ``split`` is the prefix of the returned key
    (``None``: no prefix).

    >>> monitored_key("auto", "item")
    'val/retrieval/mean_recall'
    >>> monitored_key("auto", "label", split="test")
    'test/retrieval/map'
    >>> monitored_key("val/fused/acc", "item", split=None)
    'fused/acc'
    """
    if monitor == "auto":
        if pairing not in MONITORED:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
        name = MONITORED[pairing]
    else:
        name = monitor.removeprefix("val/")
    return name if split is None else f"{split}/{name}"


def monitored_value(metrics: dict[str, float], pairing: str, monitor: str = "auto") -> tuple[str, float]:
    """The monitored metric (:func:`monitored_key`, without a split prefix) and its value in
    ``metrics`` (keys without a split prefix).

    Raises:
        KeyError: ``metrics`` lacks it (for ``auto``: the split has no item with two
            modalities, or no labels).
    """
    name = monitored_key(monitor, pairing, split=None)
    if name not in metrics:
        raise KeyError(
            f"{name} is not among the metrics: the split has no item with two modalities"
            + (" or no labels" if pairing == "label" else "")
            if monitor == "auto" else f"train.monitor={monitor!r} is not among the metrics"
        )
    return name, float(metrics[name])


def metrics_table(metrics: dict[str, float]) -> pd.DataFrame:
    """One row per metric (index ``metric``), one column ``value``, in the dict's order.

    Print it with ``print(metrics_table(m).to_string(float_format="{:.4f}".format))``.
    """
    return pd.DataFrame({"value": pd.Series(metrics, dtype=float)}).rename_axis("metric")


def robustness_auc(levels: Sequence[float], values: Sequence[float]) -> float:
    """Area under a metric-vs-noise-level curve divided by the level range (MultiBench).

    Trapezoid rule over the levels in increasing order; a curve constant at ``v`` gives
    ``v``, so the number is on the metric's own scale. Needs two or more distinct levels.
    """
    lv, va = np.asarray(levels, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if lv.ndim != 1 or lv.shape != va.shape:
        raise ValueError(f"levels and values must be equal-length lists, got {lv.shape} and {va.shape}")
    if len(np.unique(lv)) < 2:
        raise ValueError(f"robustness_auc needs at least two distinct levels, got {list(levels)}")
    order = np.argsort(lv, kind="stable")
    lv, va = lv[order], va[order]
    area = np.sum((va[1:] + va[:-1]) / 2.0 * np.diff(lv))
    return float(area / (lv[-1] - lv[0]))
