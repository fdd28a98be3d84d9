"""A small real dataset that installs with the project: scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` holds 1797 digit images of 8x8 pixels (values 0..16, from
43 writers, UCI "Optical Recognition of Handwritten Digits"). Each item here has two
modalities, both real handwriting of the item's digit:

``image``  the item's own image as 16 patches of 2x2 pixels (``d = 4``, pixel values / 16),
           ``pos = (row, col)`` of the patch on the 4x4 grid.
``rows``   a *different* image of the same digit, read top to bottom as a sequence of 8 rows
           (``d = 8``, pixel values / 16), ``pos = row index``. The partner image is drawn
           by ``seed`` among the other items of the same label and the same split, so no
           test item's rows are a training image. Only an item alone in its (label, split)
           group (a small ``n_items``) takes a partner of its label from another split:
           val, else test, else train (:func:`same_label_partners`). No item is its own
           partner; a label with a single item is an error.

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


FALLBACK_SPLITS = ("val", "test", "train")
"""Where an item alone in its (label, split) group looks for a partner, in order."""


def same_label_partners(labels: np.ndarray, split: np.ndarray, seed: int) -> np.ndarray:
    """int64 ``[n]``: for each item, another item of the same label, never the item itself.

    Within every (label, split) group of >= 2 items, the group is shuffled by ``seed`` and
    each item takes the next one in that order (cyclically): a permutation of the group
    without fixed points, so partners share the split. An item alone in its group takes a
    partner drawn by ``seed`` among the other items of its label in the first split of
    :data:`FALLBACK_SPLITS` (val, test, train) that has one: a held-out item keeps a held-out
    partner when its label has another held-out item, and a training item alone in train
    shows a val image before a test one.

    Args:
        labels: int ``[n]`` class per item.
        split: ``[n]`` ``"train"`` / ``"val"`` / ``"test"`` per item.
        seed: seed of the shuffles and draws.
    Raises:
        ValueError: a label with a single item (naming the label), which has no partner.
    """
    rng = np.random.default_rng([seed, 0xD161])
    split = np.asarray(split)
    partners, alone = _partners_within_groups(labels, split, rng)
    for item in np.flatnonzero(alone):
        partners[item] = _partner_from_other_splits(item, labels, split, rng)
    return partners


def _partners_within_groups(labels: np.ndarray, split: np.ndarray, rng: np.random.Generator):
    """(partners int64 ``[n]``, alone bool ``[n]``): the next item of each item's shuffled
    (label, split) group, cyclically; ``alone`` marks groups of one (there the item itself)."""
    split_code = np.unique(split, return_inverse=True)[1].reshape(-1)
    order = np.lexsort((rng.random(labels.shape[0]), labels, split_code))
    key = (split_code * (labels.max() + 1) + labels)[order]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[start, key.shape[0]])
    group_start, size = np.repeat(start, sizes), np.repeat(sizes, sizes)
    nxt = group_start + (np.arange(key.shape[0]) - group_start + 1) % size
    partners, alone = np.empty_like(order), np.empty(order.shape[0], dtype=bool)
    partners[order], alone[order] = order[nxt], size == 1
    return partners.astype(np.int64), alone


def _partner_from_other_splits(
    item: int, labels: np.ndarray, split: np.ndarray, rng: np.random.Generator
) -> int:
    """A random other item of ``item``'s label from the first split of :data:`FALLBACK_SPLITS`
    that has one."""
    for where in FALLBACK_SPLITS:
        candidates = np.flatnonzero((labels == labels[item]) & (split == where))
        candidates = candidates[candidates != item]
        if candidates.size:
            return int(rng.choice(candidates))
    raise ValueError(f"label {labels[item]} has a single item, so no other item of its label to pair with")


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
    try:
        partners = same_label_partners(labels, split, seed)
    except ValueError as error:
        raise ValueError(f"data=digits with n_items={n_items}: {error}; raise n_items") from None
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
