"""The bundled real dataset (scikit-learn digits as patch graphs + rows of another sample) and
the positional synthetic variant: derivation, pairing, and what a linear control reads."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from experiments.bench_pe import ordered_logreg
from mmgnn.data.digits import image_patches, load_digits_pairs, same_label_partners
from mmgnn.data.positional import make_positional


def test_patches_are_2x2_blocks_on_a_4x4_grid():
    image = np.arange(64, dtype=float).reshape(1, 8, 8)
    x, pos = image_patches(image)
    assert x.shape == (16, 4) and pos.shape == (16, 2)
    assert x[0].tolist() == [0, 1, 8, 9]
    at = int(np.flatnonzero((pos[:, 0] == 1) & (pos[:, 1] == 2))[0])
    assert x[at].tolist() == [20, 21, 28, 29]  # rows 2-3, cols 4-5


def expected_partner_splits(labels: np.ndarray, split: np.ndarray, i: int) -> set[str]:
    """The split rule of ``same_label_partners``: an item's own split when its (label, split)
    group has another item, else the first of val, test, train with another item of its label."""
    others = (labels == labels[i]) & (np.arange(labels.shape[0]) != i)
    if np.any(others & (split == split[i])):
        return {split[i]}
    return {next(s for s in ("val", "test", "train") if np.any(others & (split == s)))}


def check_partners(labels: np.ndarray, split: np.ndarray, partners: np.ndarray) -> None:
    """No item is its own partner, partners share the label and follow the split rule, and
    within a (label, split) group of >= 2 items the partners are a permutation of the group."""
    assert np.all(partners != np.arange(labels.shape[0]))
    assert np.all(labels[partners] == labels)
    for i, j in enumerate(partners):
        assert split[j] in expected_partner_splits(labels, split, i)
    for key in set(zip(labels.tolist(), split.tolist())):
        group = np.flatnonzero((labels == key[0]) & (split == key[1]))
        if group.shape[0] >= 2:
            assert sorted(partners[group].tolist()) == group.tolist()


def test_partners_share_label_and_split_and_are_other_items():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0, 1])
    split = np.array(["train"] * 3 + ["test", "train", "train", "test", "test", "val"])
    partners = same_label_partners(labels, split, seed=5)
    check_partners(labels, split, partners)
    assert partners[7] in (0, 1, 2)  # alone in (0, test), no val item of label 0: train
    assert partners[8] in (3, 6)  # alone in (1, val): a test item of label 1 first


def test_small_digits_datasets_pair_no_item_with_itself():
    """At ``n_items=40`` most (label, split) groups hold one item (4 images per digit, at least
    one in val and one in test); each still gets another image of its digit."""
    for seed in range(4):
        data = load_digits_pairs(seed=seed, n_items=40)
        partners = data.items["rows_source"].str[5:].astype(int).to_numpy()
        check_partners(data.labels, np.asarray(data.split), partners)
        images = load_digits().images[:40] / 16.0
        assert np.allclose(data.modalities["rows"].x.reshape(40, 8, 8), images[partners])


def test_a_digit_with_a_single_image_is_an_error():
    with pytest.raises(ValueError, match="n_items=5: label [0-4] has a single item"):
        load_digits_pairs(seed=0, n_items=5)


def test_digits_dataset_is_the_real_images():
    data = load_digits_pairs(seed=0, n_items=300)
    images = load_digits().images[:300] / 16.0
    image, rows = data.modalities["image"], data.modalities["rows"]
    assert data.n_items == 300 and image.dim == 4 and rows.dim == 8
    assert np.allclose(image.x[:16].reshape(4, 4, 2, 2).transpose(0, 2, 1, 3).reshape(8, 8), images[0])
    partner = data.items["rows_source"].str[5:].astype(int).to_numpy()
    assert np.all(data.labels[partner] == data.labels) and np.all(partner != np.arange(300))
    assert np.allclose(rows.x[8:16], images[partner[1]])
    assert rows.pos[:8, 0].tolist() == list(range(8))


def test_a_linear_model_on_ordered_digit_patches_reads_them_well():
    acc = ordered_logreg(load_digits_pairs(seed=0, n_items=600), "image")
    assert acc > 0.85


def test_positional_variant_hides_the_class_from_a_bag_of_features():
    data = make_positional(n_items=400, n_classes=4, noise=0.3, seed=2)
    train, test = data.indices("train"), data.indices("test")
    seq = data.modalities["seq"]
    # each class has the same multiset of prototypes: item means agree up to noise
    means = seq.x.reshape(data.n_items, -1, seq.dim).mean(1)
    bag = LogisticRegression(max_iter=2000).fit(means[train], data.labels[train])
    assert (bag.predict(means[test]) == data.labels[test]).mean() < 0.5
    assert ordered_logreg(data, "seq") > 0.95 and ordered_logreg(data, "grid") > 0.95
