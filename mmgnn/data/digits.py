"""A small real dataset that installs with the project: scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` holds 1797 digit images of 8x8 pixels (values 0..16, from
43 writers, UCI "Optical Recognition of Handwritten Digits"). Each item here has two
modalities, both real handwriting of the item's digit:

``image``  the item's own image as 16 patches of 2x2 pixels (``d = 4``, pixel values / 16),
           ``pos = (row, col)`` of the patch on the 4x4 grid.
``rows``   a *different* image of the same digit, read top to bottom as a sequence of 8 rows
           (``d = 8``, pixel values / 16), ``pos = row index``. The partner image is drawn
           by ``seed`` among the other items of the same label and the same split (so no
           test item's rows are a training image, and no item is its own partner).

The two modalities share the label, not the sample, so the dataset is meant for
``data.pairing=label`` (only same-label items correspond). Splits are stratified by label.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.splits import stratified_split

PATCH = 2
SIDE = 8


def image_patches(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``images`` float ``[n, 8, 8]`` as patch nodes: x float32 ``[n * 16, 4]`` (patches in
    row-major grid order, pixels row-major within a patch) and pos float32 ``[n * 16, 2]``."""
    n, cells = images.shape[0], SIDE // PATCH
    blocks = images.reshape(n, cells, PATCH, cells, PATCH).transpose(0, 1, 3, 2, 4)
    x = blocks.reshape(n * cells * cells, PATCH * PATCH)
    grid = np.stack(np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij"), -1)
    pos = np.tile(grid.reshape(-1, 2), (n, 1))
    return x.astype(np.float32), pos.astype(np.float32)


def image_rows(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``images`` float ``[n, 8, 8]`` as row nodes: x float32 ``[n * 8, 8]``, pos ``[n * 8, 1]``."""
    n = images.shape[0]
    pos = np.tile(np.arange(SIDE), n)[:, None]
    return images.reshape(n * SIDE, SIDE).astype(np.float32), pos.astype(np.float32)


def same_label_partners(labels: np.ndarray, split: np.ndarray, seed: int) -> np.ndarray:
    """int64 ``[n]``: for each item, another item of the same (split, label) group.

    Each group is shuffled and every item takes the next one in that order (cyclically), so
    partners are a random permutation without fixed points within every group of >= 2 items.
    """
    rng = np.random.default_rng([seed, 0xD161])
    split_code = np.unique(np.asarray(split), return_inverse=True)[1].reshape(-1)
    order = np.lexsort((rng.random(labels.shape[0]), labels, split_code))
    key = (split_code * (labels.max() + 1) + labels)[order]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    size = np.diff(np.r_[start, key.shape[0]])
    group_start = np.repeat(start, size)
    rank = np.arange(key.shape[0]) - group_start
    nxt = group_start + (rank + 1) % np.repeat(size, size)
    partners = np.empty_like(order)
    partners[order] = order[nxt]
    return partners.astype(np.int64)


def load_digits_pairs(
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    n_items: int | None = None,
) -> MultimodalDataset:
    """The digits dataset described in the module docstring.

    Args:
        seed: seed of the stratified split and of the partner draw.
        split_fractions: (train, val, test).
        n_items: keep only the first ``n_items`` images (``None``: all 1797).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images[:n_items] / 16.0
    labels = digits.target[:n_items].astype(np.int64)
    n = labels.shape[0]
    split = stratified_split(labels, None, split_fractions, seed)
    partners = same_label_partners(labels, split, seed)
    x_img, pos_img = image_patches(images)
    x_rows, pos_rows = image_rows(images[partners])
    cells = (SIDE // PATCH) ** 2
    modalities = {
        "image": ModalityData("image", x_img, np.arange(n + 1, dtype=np.int64) * cells, pos_img),
        "rows": ModalityData("rows", x_rows, np.arange(n + 1, dtype=np.int64) * SIDE, pos_rows),
    }
    items = pd.DataFrame(
        {
            "item_id": [f"digit{i:04d}" for i in range(n)],
            "label": labels,
            "split": split,
            "rows_source": [f"digit{j:04d}" for j in partners],
        }
    )
    return MultimodalDataset(
        items=items,
        modalities=modalities,
        labels=labels,
        label_names=[str(c) for c in range(10)],
        groups=np.zeros(n, dtype=np.int64),
        group_names=["all"],
        split=np.asarray(split),
        name="digits",
    )
