"""stratified_split (strata, minimum val/test, determinism) and the train-only Standardizer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.normalize import Standardizer
from mmgnn.data.splits import stratified_split

# ----------------------------------------------------------------------------- splits


def strata_counts(split, labels, groups):
    table = pd.DataFrame({"label": labels, "group": groups, "split": split})
    return table.groupby(["label", "group"])["split"].value_counts().unstack(fill_value=0)


def test_split_is_stratified_by_label_and_group_jointly():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=2000)
    groups = rng.choice(np.array(["en", "fr", "jp"]), size=2000)
    split = stratified_split(labels, groups, (0.6, 0.2, 0.2), seed=5)
    assert split.shape == (2000,) and set(split) == {"train", "val", "test"}
    counts = strata_counts(split, labels, groups)
    assert len(counts) == 12
    sizes = counts.sum(axis=1)
    # largest-remainder rounding: every stratum is within one item of its quota
    for name, fraction in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        assert (np.abs(counts[name] - sizes * fraction) <= 1).all(), name


def test_small_strata_get_val_and_test():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 3])
    groups = np.zeros(10, dtype=int)
    split = stratified_split(labels, groups, (0.7, 0.15, 0.15), seed=0)
    counts = strata_counts(split, labels, groups)
    for label in (0, 1):  # strata of 3 and 4 items
        assert counts.loc[(label, 0), "val"] >= 1 and counts.loc[(label, 0), "test"] >= 1
        assert counts.loc[(label, 0), "train"] >= 1
    assert split[9] == "train"  # a single-item stratum trains
    assert (split[7:9] == "train").sum() >= 1  # a two-item stratum keeps a train item


def test_groups_split_separately_for_the_same_label():
    labels = np.zeros(6, dtype=int)
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    split = stratified_split(labels, groups, seed=1)
    for g in ("a", "b"):
        assert sorted(split[groups == g]) == ["test", "train", "val"]


def test_split_deterministic_per_seed():
    labels = np.repeat(np.arange(5), 40)
    a = stratified_split(labels, None, seed=3)
    np.testing.assert_array_equal(a, stratified_split(labels, None, seed=3))
    assert (a != stratified_split(labels, None, seed=4)).any()


def test_split_zero_fraction_is_empty():
    split = stratified_split(np.repeat([0, 1], 10), None, (0.8, 0.0, 0.2), seed=0)
    assert (split == "val").sum() == 0
    assert (split == "test").sum() == 4


@pytest.mark.parametrize(
    "fractions, problem",
    [
        ((0.7, 0.3), "three numbers"),
        ((0.7, 0.4, -0.1), "non-negative"),
        ((0.7, 0.2, 0.2), "sum to 1"),
        ((0.0, 0.5, 0.5), "train fraction must be positive"),
        ((np.nan, 0.5, 0.5), "finite"),
    ],
)
def test_split_rejects_bad_fractions(fractions, problem):
    with pytest.raises(ValueError, match=problem):
        stratified_split(np.zeros(10), None, fractions)


def test_split_needs_labels_or_groups():
    with pytest.raises(ValueError, match="labels or groups"):
        stratified_split(None, None)


# ----------------------------------------------------------------------------- standardizer


def tiny_dataset(seed=0):
    """5 items; text has scale 10 around 3, image around -2; item 2 lacks image."""
    rng = np.random.default_rng(seed)
    text = ModalityData(
        "text",
        (3 + 10 * rng.normal(size=(12, 3))).astype(np.float32),
        np.array([0, 2, 5, 7, 9, 12]),
        pos=np.arange(12, dtype=np.float32)[:, None],
    )
    image = ModalityData(
        "image",
        np.concatenate([-2 + rng.normal(size=(8, 1)), np.full((8, 1), 4.0)], axis=1).astype(np.float32),
        np.array([0, 2, 4, 4, 6, 8]),
    )
    return MultimodalDataset(
        items=pd.DataFrame({"item_id": [f"i{k}" for k in range(5)]}),
        modalities={"text": text, "image": image},
        labels=np.array([0, 1, 0, 1, 0]),
        label_names=["a", "b"],
        groups=np.zeros(5, dtype=np.int64),
        group_names=["all"],
        split=np.array(["train", "train", "train", "val", "test"]),
    )


def train_nodes(dataset, name):
    m = dataset.modalities[name]
    return np.concatenate([m.x[m.ptr[i] : m.ptr[i + 1]] for i in dataset.indices("train")])


def test_statistics_come_from_train_rows_only():
    ds = tiny_dataset()
    fitted = Standardizer.fit(ds, ds.indices("train"))
    np.testing.assert_allclose(fitted.state["text"][0], train_nodes(ds, "text").mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(fitted.state["text"][1], train_nodes(ds, "text").std(axis=0), rtol=1e-5)

    changed = tiny_dataset()
    changed.modalities["text"].x[9:12] += 1000.0  # the test item i4's text nodes
    changed.modalities["image"].x[6:8] -= 1000.0
    refitted = Standardizer.fit(changed, changed.indices("train"))
    for name in ("text", "image"):
        for a, b in zip(fitted.state[name], refitted.state[name]):
            np.testing.assert_array_equal(a, b)
    # a bool mask gives the same statistics as indices
    masked = Standardizer.fit(ds, ds.split == "train")
    np.testing.assert_array_equal(masked.state["text"][0], fitted.state["text"][0])


def test_transformed_train_nodes_are_standard_and_rest_is_shared():
    ds = tiny_dataset()
    fingerprint = ds.fingerprint()
    out = Standardizer.fit(ds, ds.indices("train")).transform(ds)
    assert out is not ds
    text = train_nodes(out, "text")
    np.testing.assert_allclose(text.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(text.std(axis=0), 1.0, atol=1e-5)
    image = train_nodes(out, "image")
    np.testing.assert_allclose(image[:, 0].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(image[:, 0].std(), 1.0, atol=1e-5)
    # a constant feature: std floored, maps to 0 instead of NaN
    np.testing.assert_array_equal(out.modalities["image"].x[:, 1], 0.0)
    assert out.modalities["text"].x.dtype == np.float32
    # only x changes; the input is untouched and the fingerprint is recomputed
    assert out.modalities["text"].ptr is ds.modalities["text"].ptr
    assert out.modalities["text"].pos is ds.modalities["text"].pos
    assert out.items is ds.items and out.labels is ds.labels and out.split is ds.split
    np.testing.assert_array_equal(ds.modalities["text"].x, tiny_dataset().modalities["text"].x)
    assert ds.fingerprint() == fingerprint
    assert out.fingerprint() != fingerprint


def test_save_load_round_trip(tmp_path):
    ds = tiny_dataset()
    fitted = Standardizer.fit(ds, ds.indices("train"))
    path = tmp_path / "standardizer.stats"
    fitted.save(path)
    assert set(np.load(path).files) == {"mean_text", "std_text", "mean_image", "std_image"}
    loaded = Standardizer.load(path)
    assert list(loaded.state) == ["text", "image"]
    other = tiny_dataset(seed=1)
    for name in ("text", "image"):
        np.testing.assert_array_equal(
            loaded.transform(other).modalities[name].x, fitted.transform(other).modalities[name].x
        )


def test_modality_without_train_nodes_is_an_error():
    ds = tiny_dataset()
    with pytest.raises(ValueError, match="'image' has no nodes"):
        Standardizer.fit(ds, np.array([2]))  # item i2 lacks image


def test_transform_rejects_unknown_modality_and_dimension():
    ds = tiny_dataset()
    fitted = Standardizer.fit(ds, ds.indices("train"))
    with pytest.raises(ValueError, match="no statistics for modality 'text'"):
        Standardizer({"image": fitted.state["image"]}).transform(ds)
    wrong = Standardizer({"text": (np.zeros(2, np.float32), np.ones(2, np.float32)), "image": fitted.state["image"]})
    with pytest.raises(ValueError, match="3 features"):
        wrong.transform(ds)
