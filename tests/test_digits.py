"""The bundled real dataset (scikit-learn digits as patch graphs + rows of another sample) and
the positional synthetic variant: derivation, pairing, and what a linear control reads."""
from __future__ import annotations

import numpy as np
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


def test_partners_share_label_and_split_and_are_other_items():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    split = np.array(["train"] * 6 + ["test"] * 2)
    split[3] = "test"
    partners = same_label_partners(labels, split, seed=5)
    assert np.all(labels[partners] == labels) and np.all(split[partners] == split)
    group_sizes = {(s, l): np.sum((split == s) & (labels == l)) for s, l in zip(split, labels)}
    for i, j in enumerate(partners):
        assert j != i or group_sizes[(split[i], labels[i])] == 1
    assert sorted(partners.tolist()) == list(range(8))  # a permutation within each group


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
