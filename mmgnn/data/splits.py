"""Train/val/test splits stratified by label and group jointly."""
from __future__ import annotations

import os


from typing import Sequence

import numpy as np

from mmgnn.data.dataset import SPLITS


def check_fractions(fractions: Sequence[float]) -> np.ndarray:
    """Validate ``(train, val, test)`` fractions and return them as a float64 ``[3]`` array.

    Raises:
        ValueError: unless there are three finite non-negative fractions that sum to 1
            with a positive train fraction.
    """
    values = np.asarray(list(fractions), dtype=np.float64)
    if values.shape != (3,):
        raise ValueError(
            f"split fractions must be three numbers (train, val, test), got {list(fractions)}"
        )
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"split fractions must be finite and non-negative, got {values.tolist()}")
    if abs(values.sum() - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {values.tolist()} (sum {values.sum():g})")
    if values[0] <= 0:
        raise ValueError(f"the train fraction must be positive, got {values.tolist()}")
    return values


def _stratum_sizes(sizes: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """int64 ``[S, 3]`` train/val/test counts for strata of ``sizes`` items.

    Largest-remainder rounding of ``size * fraction``; then every stratum keeps at least one
    train item, and a stratum of three or more items at least one val and one test item
    (for each of val/test whose fraction is positive), taken from the largest other split.
    """
    quotas = sizes[:, None] * fractions[None, :]
    counts = np.floor(quotas + 1e-9).astype(np.int64)
    remainders = quotas - counts
    left = sizes - counts.sum(axis=1)
    # Stable sort on the negated remainders: ties go to train, then val, then test.
    order = np.argsort(-remainders, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(3)[None, :].repeat(len(sizes), axis=0), axis=1)
    counts += rank < left[:, None]

    for s in np.flatnonzero((counts[:, 0] == 0) & (sizes > 0)):
        donor = 1 if counts[s, 1] >= counts[s, 2] else 2
        counts[s, donor] -= 1
        counts[s, 0] += 1
    for k in (1, 2):
        if fractions[k] <= 0:
            continue
        for s in np.flatnonzero((counts[:, k] == 0) & (sizes >= 3)):
            others = [j for j in (0, 1, 2) if j != k and counts[s, j] > 1]
            donor = max(others, key=lambda j: (counts[s, j], j == 0))
            counts[s, donor] -= 1
            counts[s, k] += 1
    return counts


def stratified_split(
    labels: np.ndarray | None,
    groups: np.ndarray | None,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> np.ndarray:
    """Assign every item to ``"train"``, ``"val"`` or ``"test"``, stratified by (label, group).

    Items are partitioned into strata by their (label, group) pair; each stratum is shuffled
    with ``seed`` and cut by ``fractions`` (largest-remainder rounding). Every stratum keeps at
    least one train item, and every stratum of three or more items gets at least one val and
    one test item (for a split whose fraction is positive). The result depends only on the
    inputs and ``seed``.

    Args:
        labels: ``[n_items]`` class labels (any dtype), or ``None`` to stratify by group only.
        groups: ``[n_items]`` group labels (any dtype), or ``None`` to stratify by label only.
        fractions: (train, val, test), non-negative, summing to 1, train > 0.
        seed: seed of the shuffles.

    Returns:
        ``[n_items]`` array of ``"train" | "val" | "test"`` (dtype ``<U5``).
    """
    fractions = check_fractions(fractions)
    keys = [np.asarray(a) for a in (labels, groups) if a is not None]
    if not keys:
        raise ValueError("stratified_split needs labels or groups (both are None)")
    if any(k.ndim != 1 for k in keys) or len({len(k) for k in keys}) != 1:
        raise ValueError(
            f"labels and groups must be 1-D of one length, got shapes {[k.shape for k in keys]}"
        )
    n = len(keys[0])
    stratum = np.zeros(n, dtype=np.int64)
    for key in keys:
        _, codes = np.unique(key, return_inverse=True)
        stratum = stratum * (int(codes.max(initial=0)) + 1) + codes.reshape(-1)
    _, stratum, sizes = np.unique(stratum, return_inverse=True, return_counts=True)
    stratum = stratum.reshape(-1)
    counts = _stratum_sizes(sizes, fractions)

    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(n)
    order = shuffled[np.argsort(stratum[shuffled], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(n) - starts[stratum[order]]
    train_end = counts[stratum[order], 0]
    val_end = train_end + counts[stratum[order], 1]
    which = np.where(rank < train_end, 0, np.where(rank < val_end, 1, 2))
    split = np.empty(n, dtype="<U5")
    split[order] = np.asarray(SPLITS, dtype="<U5")[which]
    return split
