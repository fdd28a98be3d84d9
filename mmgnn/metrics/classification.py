"""Classification metrics of the fused classifier (numpy or torch in, floats out)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from mmgnn.metrics.retrieval import to_numpy


def predictions(logits) -> np.ndarray:
    """Predicted classes ``[N]`` from logits ``[N, C]`` (arg max)."""
    return to_numpy(logits).argmax(axis=1)


def accuracy(predicted, labels) -> float:
    """Fraction of ``predicted`` ``[N]`` equal to ``labels`` ``[N]``; NaN when empty."""
    p, y = to_numpy(predicted), to_numpy(labels)
    return float(np.mean(p == y)) if len(y) else float("nan")


def macro_f1(predicted, labels) -> float:
    """Unweighted mean of the per-class F1 scores; NaN when empty.

    The classes are those occurring in ``labels`` or ``predicted`` (scikit-learn's default),
    so a class absent from an evaluation subset (a group) is not scored as F1 = 0; a class
    that is present but never predicted (or predicted but absent) scores 0. A prediction of
    ``-1`` (no prediction: the item had no modality) counts as wrong and is no class.
    """
    p, y = to_numpy(predicted), to_numpy(labels)
    if not len(y):
        return float("nan")
    classes = np.union1d(y, p[p >= 0])  # -1 (no prediction) is a miss, not a class
    return float(f1_score(y, p, labels=classes, average="macro", zero_division=0))


def classification_metrics(logits, labels) -> dict[str, float]:
    """``{"acc", "macro_f1"}`` of logits ``[N, C]`` against labels ``[N]``."""
    predicted = predictions(logits)
    return {"acc": accuracy(predicted, labels), "macro_f1": macro_f1(predicted, labels)}
