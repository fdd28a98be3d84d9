"""A synthetic variant whose class lives only in node positions.

Every modality has one fixed multiset of ``L`` prototype vectors (standard normal, ``d``
columns) shared by all classes; class ``c`` places them in its own order ``perm_c`` (a random
permutation per class and modality). Node ``t`` of an item of class ``c`` is
``prototype[perm_c[t]] + noise * N(0, I)``. So every item holds the same bag of features
whatever its class: a mean / sum / max readout of node features alone is at chance, and only
a model that reads where nodes sit (positional encodings, an order-aware readout, or message
passing along the structure) can classify.

Modalities: ``seq`` a sequence of ``seq_len`` nodes (``pos`` = index), ``grid`` a
``side x side`` grid (``pos`` = (row, col)). Both show the label, not the sample
(``data.pairing=label``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.splits import stratified_split


def _render(
    rng: np.random.Generator, labels: np.ndarray, n_classes: int, length: int, dim: int, noise: float
) -> np.ndarray:
    """float32 ``[n_items * length, dim]``: each class's permutation of shared prototypes."""
    prototypes = rng.normal(size=(length, dim))
    orders = np.stack([rng.permutation(length) for _ in range(n_classes)])  # [C, L]
    x = prototypes[orders[labels]] + noise * rng.normal(size=(labels.shape[0], length, dim))
    return x.reshape(-1, dim).astype(np.float32)


def make_positional(
    n_items: int = 600,
    n_classes: int = 4,
    seq_len: int = 12,
    side: int = 4,
    dim: int = 8,
    noise: float = 0.5,
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> MultimodalDataset:
    """The dataset described in the module docstring (labels balanced, split stratified)."""
    if n_classes < 2 or n_items < n_classes:
        raise ValueError(f"need n_classes >= 2 and n_items >= n_classes, got {n_classes}, {n_items}")
    rng = np.random.default_rng([seed, 0x9051])
    labels = rng.permutation(np.arange(n_items) % n_classes).astype(np.int64)
    cells = side * side
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)
    modalities = {
        "seq": ModalityData(
            "seq",
            _render(rng, labels, n_classes, seq_len, dim, noise),
            np.arange(n_items + 1, dtype=np.int64) * seq_len,
            np.tile(np.arange(seq_len), n_items)[:, None].astype(np.float32),
        ),
        "grid": ModalityData(
            "grid",
            _render(rng, labels, n_classes, cells, dim, noise),
            np.arange(n_items + 1, dtype=np.int64) * cells,
            np.tile(grid, (n_items, 1)).astype(np.float32),
        ),
    }
    split = stratified_split(labels, None, split_fractions, seed)
    items = pd.DataFrame({"item_id": [f"pos{i:05d}" for i in range(n_items)], "label": labels, "split": split})
    return MultimodalDataset(
        items=items,
        modalities=modalities,
        labels=labels,
        label_names=[str(c) for c in range(n_classes)],
        groups=np.zeros(n_items, dtype=np.int64),
        group_names=["all"],
        split=np.asarray(split),
        name="synthetic_positional",
    )
