"""Cross-modal retrieval metrics on embedding matrices (numpy or torch in, numpy/floats out).

Rows are compared by cosine similarity (inputs are L2-normalised here; zero rows stay zero).
Ranks are 0-based internally: rank 0 means the match is retrieved first. Ties count against
the query (a gallery item scoring *equal* to the match is ranked before it), so a collapsed
embedding that maps everything to one point scores the worst rank, never the best.

Per-query functions return one value per query (NaN where a query has no relevant gallery
item); :func:`summarize` turns them into the reported numbers: Recall@K, MedR and mean rank
as VSE++ (Faghri et al., "VSE++: Improving Visual-Semantic Embeddings with Hard Negatives",
BMVC 2018: ``MedR = floor(median 0-based rank) + 1``, mean rank = mean 0-based rank + 1),
and mean average precision. Recalls and mAP are fractions in [0, 1].
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

CHUNK = 512  # query rows per similarity block; bounds memory at CHUNK x N_gallery


def to_numpy(x) -> np.ndarray:
    """A numpy view/copy of a numpy array, torch tensor (any device) or sequence."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def l2_normalize(x) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero. ``[N, D]``."""
    x = to_numpy(x).astype(np.float32, copy=False)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _similarity_blocks(query, gallery) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(query rows, cosine similarities [rows, N_gallery])`` block by block."""
    q, g = l2_normalize(query), l2_normalize(gallery)
    for start in range(0, len(q), CHUNK):
        rows = slice(start, min(start + CHUNK, len(q)))
        yield rows, q[rows] @ g.T


def _same_label(query_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """bool ``[Nq, Ng]``: same label; negative labels (unlabelled) match nothing."""
    return (query_labels[:, None] == gallery_labels[None, :]) & (query_labels[:, None] >= 0)


def match_ranks(query, gallery) -> np.ndarray:
    """0-based rank of gallery row ``i`` for query row ``i`` (row ``i`` = the same item).

    ``rank_i = #{j != i : cos(q_i, g_j) >= cos(q_i, g_i)}``.

    Args:
        query, gallery: ``[N, D]``.

    Returns:
        int64 ``[N]``.
    """
    if len(query) != len(gallery):
        raise ValueError(f"query and gallery must hold the same items, got {len(query)} and {len(gallery)}")
    ranks = np.empty(len(query), dtype=np.int64)
    for rows, sim in _similarity_blocks(query, gallery):
        local = np.arange(sim.shape[0])
        match = sim[local, local + rows.start]
        ranks[rows] = (sim >= match[:, None]).sum(axis=1) - 1
    return ranks


def _label_blocks(query, gallery, query_labels, gallery_labels, exclude_self):
    """Yield ``(rows, sim, relevant, candidate)``; the excluded self is no candidate."""
    ql, gl = to_numpy(query_labels), to_numpy(gallery_labels)
    if exclude_self and len(query) != len(gallery):
        raise ValueError("exclude_self needs the query and gallery to be the same set")
    for rows, sim in _similarity_blocks(query, gallery):
        relevant = _same_label(ql[rows], gl)
        candidate = np.ones_like(relevant)
        if exclude_self:
            local = np.arange(sim.shape[0])
            candidate[local, local + rows.start] = False
            relevant &= candidate
        yield rows, sim, relevant, candidate


def label_ranks(query, gallery, query_labels, gallery_labels, exclude_self: bool = False) -> np.ndarray:
    """0-based rank of the first same-label gallery item per query (NaN: none exists).

    ``rank_i = #{j not relevant : cos(q_i, g_j) >= max_{p relevant} cos(q_i, g_p)}``.

    Args:
        query: ``[Nq, D]``; gallery: ``[Ng, D]``; query_labels ``[Nq]``, gallery_labels
            ``[Ng]`` (negative = unlabelled, relevant to nothing).
        exclude_self: query and gallery are the same set; gallery row ``i`` is left out for
            query ``i``.

    Returns:
        float64 ``[Nq]``.
    """
    ranks = np.full(len(query), np.nan)
    for rows, sim, relevant, candidate in _label_blocks(
        query, gallery, query_labels, gallery_labels, exclude_self
    ):
        best = np.where(relevant, sim, -np.inf).max(axis=1, initial=-np.inf)
        ahead = (candidate & ~relevant & (sim >= best[:, None])).sum(axis=1)
        ranks[rows] = np.where(relevant.any(axis=1), ahead, np.nan)
    return ranks


def average_precision(query, gallery, query_labels, gallery_labels, exclude_self: bool = False) -> np.ndarray:
    """Average precision per query with same-label gallery items relevant (NaN: none).

    ``AP_i = 1/R_i * sum_{k : item k relevant} precision@k`` over the gallery ranked by
    similarity (ties: irrelevant items first). Arguments as :func:`label_ranks`.

    Returns:
        float64 ``[Nq]``.
    """
    ap = np.full(len(query), np.nan)
    for rows, sim, relevant, candidate in _label_blocks(
        query, gallery, query_labels, gallery_labels, exclude_self
    ):
        sim = np.where(candidate, sim, -np.inf)  # the excluded self sorts last
        order = np.lexsort((relevant, -sim), axis=1)
        hits = np.take_along_axis(relevant, order, axis=1)
        precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
        n_relevant = hits.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap[rows] = np.where(n_relevant > 0, (precision * hits).sum(axis=1) / n_relevant, np.nan)
    return ap


def recall_at_k(ranks, k: int) -> float:
    """Fraction of queries whose 0-based rank is ``< k``; NaN if none.

    A NaN rank is no query (left out); ``+inf`` is a query that found nothing (a miss).
    """
    r = to_numpy(ranks).astype(np.float64)
    r = r[~np.isnan(r)]
    return float(np.mean(r < k)) if len(r) else float("nan")


def median_rank(ranks) -> float:
    """VSE++'s MedR: ``floor(median 0-based rank) + 1`` over finite ranks; NaN if none."""
    r = to_numpy(ranks).astype(np.float64)
    r = r[np.isfinite(r)]
    return float(np.floor(np.median(r)) + 1) if len(r) else float("nan")


def mean_rank(ranks) -> float:
    """Mean 1-based rank (mean 0-based rank + 1) over finite ranks; NaN if none."""
    r = to_numpy(ranks).astype(np.float64)
    r = r[np.isfinite(r)]
    return float(np.mean(r) + 1) if len(r) else float("nan")


def mean_average_precision(ap) -> float:
    """Mean of the per-query APs over queries with a relevant item; NaN if none."""
    a = to_numpy(ap).astype(np.float64)
    a = a[np.isfinite(a)]
    return float(np.mean(a)) if len(a) else float("nan")


def summarize(
    ranks=None, label_rank=None, ap=None, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """The reported numbers of one retrieval direction; NaN inputs (non-queries) are ignored.

    Args:
        ranks: 0-based match ranks -> ``r{k}``, ``medr``, ``mean_rank``.
        label_rank: 0-based first same-label ranks -> ``label_r{k}``.
        ap: per-query average precision -> ``map``.

    Returns:
        the keys of the given inputs whose value is defined (no NaN values).
    """
    out: dict[str, float] = {}
    if ranks is not None:
        out.update({f"r{k}": recall_at_k(ranks, k) for k in ks})
        out["medr"] = median_rank(ranks)
        out["mean_rank"] = mean_rank(ranks)
    if label_rank is not None:
        out.update({f"label_r{k}": recall_at_k(label_rank, k) for k in ks})
    if ap is not None:
        out["map"] = mean_average_precision(ap)
    return {k: v for k, v in out.items() if np.isfinite(v)}
