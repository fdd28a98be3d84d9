"""The synthetic dataset keeps the promises of its generative process, measured on the data.

Linear probes (scikit-learn's LogisticRegression, trained on the train split, scored on val +
test) compare item features that see single nodes with features that see neighbouring pairs:

- bag of nodes: the mean of the (standardised) node features, and the mean of a random ReLU
  layer over them (a per-node MLP with mean pooling);
- neighbour pairs: the mean over neighbouring node pairs of ``|x_i - x_j|`` (an
  EdgeConv-style edge message), neighbours taken from ``pos`` (consecutive tokens/frames, 4-
  neighbour patches; ``wide`` adds distance-2 tokens/frames and diagonal patches).

The mean of ``concat(x_i, x_j)`` over pairs would be linear in the node features and so no
better than the bag; a pair feature must be non-linear in the pair to see the arrangement.
Classes are read per group (one probe per culture) because a group inverts one code bit.
"""
import os


import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.synthetic import culture_flips, make_synthetic, shown_bits

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("text", "image", "audio")
DIMS = {"text": 32, "image": 24, "audio": 16}


# ------------------------------------------------------------------------------ features
def _node_items(m: ModalityData) -> np.ndarray:
    """int64 ``[total_nodes]`` item of each node."""
    return np.repeat(np.arange(m.n_items), m.counts)


def _neighbour_pairs(m: ModalityData, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Global node ids ``(src, dst)`` of neighbouring nodes of the same item, from ``pos``."""
    item = _node_items(m)
    if m.pos.shape[1] == 1:  # sequences: nodes are in position order
        src, dst = [], []
        for offset in (1, 2) if wide else (1,):
            a = np.arange(len(item) - offset)
            keep = item[a] == item[a + offset]
            src.append(a[keep])
            dst.append(a[keep] + offset)
        return np.concatenate(src), np.concatenate(dst)
    pos = m.pos.astype(np.int64)
    span = int(pos.max()) + 3  # room for the -1 / +1 column of a looked-up neighbour
    key = (item * span + pos[:, 0]) * span + pos[:, 1] + 1
    order = np.argsort(key)
    sorted_key = key[order]
    src, dst = [], []
    steps = ((0, 1), (1, 0)) + (((1, 1), (1, -1)) if wide else ())
    for dr, dc in steps:
        query = (item * span + pos[:, 0] + dr) * span + pos[:, 1] + dc + 1
        at = np.clip(np.searchsorted(sorted_key, query), 0, len(key) - 1)
        found = sorted_key[at] == query
        src.append(np.flatnonzero(found))
        dst.append(order[at[found]])
    return np.concatenate(src), np.concatenate(dst)


def _pool(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values`` rows per owner ``[n, d]`` (zeros for owners without rows)."""
    total = np.zeros((n, values.shape[1]))
    np.add.at(total, owner, values)
    return total / np.maximum(np.bincount(owner, minlength=n), 1)[:, None]


def _features(m: ModalityData, kind: str) -> np.ndarray:
    """Item features ``[n_items, F]`` of one modality; zeros for items lacking it."""
    x = StandardScaler().fit_transform(m.x)
    item = _node_items(m)
    if kind == "mean":
        return _pool(x, item, m.n_items)
    if kind == "node_mlp":
        rng = np.random.default_rng(0)
        weight = rng.normal(size=(m.dim, 256)) / np.sqrt(m.dim)
        return _pool(np.maximum(x @ weight + rng.normal(size=256), 0.0), item, m.n_items)
    src, dst = _neighbour_pairs(m, wide=kind == "pairs_wide")
    return _pool(np.abs(x[src] - x[dst]), item[src], m.n_items)


def _all_features(ds: MultimodalDataset, kind: str, modalities=MODALITIES) -> np.ndarray:
    return np.hstack([_features(ds.modalities[name], kind) for name in modalities])


def _probe_accuracy(
    ds: MultimodalDataset, features: np.ndarray, rows: np.ndarray, per_group: bool = True
) -> float:
    """Held-out accuracy on ``rows`` of logistic regression (one per group, or one for all)."""
    train = rows & (ds.split == "train")
    held_out = rows & (ds.split != "train")
    buckets = [ds.groups == g for g in np.unique(ds.groups)] if per_group else [np.ones_like(rows)]
    right = total = 0
    for bucket in buckets:
        scaler = StandardScaler().fit(features[train & bucket])
        probe = LogisticRegression(max_iter=3000).fit(
            scaler.transform(features[train & bucket]), ds.labels[train & bucket]
        )
        pred = probe.predict(scaler.transform(features[held_out & bucket]))
        right += int((pred == ds.labels[held_out & bucket]).sum())
        total += int((held_out & bucket).sum())
    return right / total


@pytest.fixture(scope="module")
def dataset() -> MultimodalDataset:
    return make_synthetic()


@pytest.fixture(scope="module")
def accuracies(dataset) -> dict[tuple[str, str], float]:
    """(modality or "all", feature kind) -> held-out probe accuracy."""
    result = {}
    every = np.ones(dataset.n_items, dtype=bool)
    for kind in ("mean", "node_mlp", "pairs", "pairs_wide"):
        for name in MODALITIES:
            m = dataset.modalities[name]
            result[name, kind] = _probe_accuracy(dataset, _features(m, kind), m.present)
        result["all", kind] = _probe_accuracy(dataset, _all_features(dataset, kind), every)
    print("\nprobe accuracies:", {f"{k[0]}/{k[1]}": round(v, 3) for k, v in result.items()})
    return result


# ------------------------------------------------------------------------------ layout
def test_shapes_dtypes_and_offsets(dataset):
    n = 1200
    assert dataset.n_items == n and dataset.name == "synthetic"
    assert dataset.modality_names == MODALITIES
    assert list(dataset.items.columns) == ["item_id", "label", "group", "split"]
    assert dataset.items["item_id"].is_unique and dataset.items["item_id"][42] == "item00042"
    assert dataset.labels.dtype == np.int64 and set(np.unique(dataset.labels)) == set(range(8))
    assert dataset.label_names == [str(c) for c in range(8)]
    assert dataset.group_names == ["g0", "g1", "g2"] and dataset.groups.dtype == np.int64
    group_names = np.array(["g0", "g1", "g2"])
    np.testing.assert_array_equal(dataset.items["group"], group_names[dataset.groups])
    np.testing.assert_array_equal(dataset.items["label"], dataset.labels)
    # balanced strata, and a split stratified by (class, group)
    assert np.bincount(dataset.labels * 3 + dataset.groups).tolist() == [50] * 24
    np.testing.assert_array_equal(dataset.items["split"], dataset.split)
    assert abs((dataset.split == "train").mean() - 0.7) < 0.02
    assert abs((dataset.split == "test").mean() - 0.15) < 0.02

    for name, m in dataset.modalities.items():
        assert m.name == name and m.dim == DIMS[name]
        assert m.x.dtype == np.float32 and np.isfinite(m.x).all()
        assert m.ptr.dtype == np.int64 and m.ptr.shape == (n + 1,)
        assert m.ptr[0] == 0 and m.ptr[-1] == len(m.x) and (np.diff(m.ptr) >= 0).all()
        assert m.edge_index is None and m.edge_ptr is None
        assert m.pos.dtype == np.float32 and len(m.pos) == len(m.x)
        counts = m.counts[m.present]
        local = np.arange(len(m.x)) - np.repeat(m.ptr[:-1], m.counts)
        if name == "text":
            assert counts.min() == 12 and counts.max() == 16
            np.testing.assert_array_equal(m.pos[:, 0], local)
        elif name == "audio":
            assert (counts == 20).all()
            np.testing.assert_allclose(m.pos[:, 0], local * 0.025, rtol=1e-6)
        else:
            assert (counts == 16).all() and m.pos.shape[1] == 2
            np.testing.assert_array_equal(m.pos, np.stack(np.divmod(local, 4), axis=1))


def test_same_seed_same_arrays_other_seed_other_arrays():
    a, b = make_synthetic(n_items=300, seed=3), make_synthetic(n_items=300, seed=3)
    c = make_synthetic(n_items=300, seed=4)
    assert a.fingerprint() == b.fingerprint() and a.items.equals(b.items)
    for name in MODALITIES:
        for key in ("x", "ptr", "pos"):
            np.testing.assert_array_equal(
                getattr(a.modalities[name], key), getattr(b.modalities[name], key)
            )
    assert a.fingerprint() != c.fingerprint()
    assert (a.labels != c.labels).any()
    assert not np.array_equal(a.modalities["audio"].x[:100], c.modalities["audio"].x[:100])


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 1.0])
def test_missing_fraction_is_honoured_and_no_item_lacks_everything(fraction):
    ds = make_synthetic(n_items=400, missing_fraction=fraction, seed=1)
    lacking = (~ds.present_matrix()).sum(axis=1)
    assert (lacking <= 1).all()  # exactly one modality at most, so never all three
    assert lacking.sum() == round(fraction * 400)
    if fraction >= 0.25:
        assert (~ds.present_matrix()).sum(axis=0).min() > 0.2 * fraction * 400  # every modality


@pytest.mark.parametrize("n_classes", [8, 16])
def test_every_class_uses_the_same_multiset_of_prototypes(n_classes):
    """Without noise equal node vectors are the same prototype: in every item each shown bit
    owns a segment (a grid stripe) of near-equal size whose two prototypes split it half and
    half, whatever the class, so a bag of nodes cannot see the class."""
    ds = make_synthetic(n_items=240, n_classes=n_classes, noise=0.0, missing_fraction=0.0, seed=5)
    n_bits = int(np.log2(n_classes))
    for index, (name, m) in enumerate(ds.modalities.items()):
        n_regions = len(shown_bits(index, n_bits))
        side = 4  # grid stripes split the 4 rows (or columns) like a sequence of 4
        for i in range(ds.n_items):
            _, counts = np.unique(m.x[m.ptr[i] : m.ptr[i + 1]], axis=0, return_counts=True)
            length = int(m.counts[i]) if name != "image" else side
            bounds = [j * length // n_regions for j in range(n_regions + 1)]
            sizes = np.diff(bounds) * (side if name == "image" else 1)
            expected = sorted([(s + 1) // 2 for s in sizes] + [s // 2 for s in sizes])
            assert sorted(counts.tolist()) == expected, (name, i, counts, expected)


def test_shown_bits_need_two_modalities_for_every_bit():
    assert [shown_bits(m, 3).tolist() for m in range(3)] == [[0, 1], [1, 2], [0, 2]]
    for n_bits in range(3, 8):
        shown = [set(shown_bits(m, n_bits).tolist()) for m in range(3)]
        assert all(len(s) < n_bits for s in shown)
        assert all(sum(k in s for s in shown) == 2 for k in range(n_bits))
    assert culture_flips(4, 3).tolist() == [0, 1, 2, 4]


# ------------------------------------------------------------------------------ signal
def test_bag_of_nodes_is_uninformative_neighbour_pairs_are(accuracies):
    chance = 1 / 8
    for name in (*MODALITIES, "all"):
        bag = max(accuracies[name, "mean"], accuracies[name, "node_mlp"])
        assert bag <= chance + 0.1, (name, bag)
        assert accuracies[name, "pairs"] >= bag + 0.25, (name, accuracies[name, "pairs"], bag)


def test_one_modality_confuses_classes_all_together_separate_them(accuracies, dataset):
    for name in MODALITIES:
        # each modality shows 2 of 3 bits: classes confused in pairs (ideal 1/2)
        assert 0.35 <= accuracies[name, "pairs"] <= 0.65, (name, accuracies[name, "pairs"])
    assert accuracies["all", "pairs"] >= 0.9
    assert accuracies["all", "pairs_wide"] >= 0.75  # window-2 chains, 8-neighbour grids
    for pair in (("text", "image"), ("text", "audio"), ("image", "audio")):
        both = dataset.modalities[pair[0]].present & dataset.modalities[pair[1]].present
        two = _probe_accuracy(dataset, _all_features(dataset, "pairs", pair), both)
        assert two >= 0.85, (pair, two)


def _nearest_same_class(features: np.ndarray, labels: np.ndarray, allowed: np.ndarray) -> float:
    distance = ((features[:, None, :] - features[None, :, :]) ** 2).sum(-1)
    distance[~allowed] = np.inf
    np.fill_diagonal(distance, np.inf)
    return float((labels[distance.argmin(axis=1)] == labels).mean())


def test_hard_negatives_across_cultures(dataset, accuracies):
    ds = dataset
    same_group = ds.groups[:, None] == ds.groups[None, :]
    same_class = ds.labels[:, None] == ds.labels[None, :]
    # 1. style: in the bag-of-nodes space a same-class item of another group is farther
    #    away than a different-class item of the same group
    bag = StandardScaler().fit_transform(_all_features(ds, "mean"))
    distance = np.sqrt(((bag[:, None, :] - bag[None, :, :]) ** 2).sum(-1))
    far_positive = distance[same_class & ~same_group].mean()
    near_negative = distance[~same_class & same_group].mean()
    assert far_positive > 1.3 * near_negative, (far_positive, near_negative)
    # 2. culture flips: in the (style-free) pair space the nearest item of the own group
    #    shares the class, the nearest item of another group almost never does: it is a
    #    different class drawn with the same arrangement
    pairs = StandardScaler().fit_transform(_all_features(ds, "pairs"))
    assert _nearest_same_class(pairs, ds.labels, same_group) >= 0.9
    assert _nearest_same_class(pairs, ds.labels, ~same_group) <= 0.1
    code = ds.labels ^ culture_flips(3, 3)[ds.groups]
    assert _nearest_same_class(pairs, code, ~same_group) >= 0.9
    # 3. a probe that ignores the culture confuses classes; one per culture does not
    every = np.ones(ds.n_items, dtype=bool)
    pooled = _probe_accuracy(ds, _all_features(ds, "pairs"), every, per_group=False)
    assert pooled <= accuracies["all", "pairs"] - 0.4, (pooled, accuracies["all", "pairs"])


def test_without_culture_flip_classes_agree_across_groups():
    ds = make_synthetic(n_items=600, culture_flip=False, seed=2)
    pairs = StandardScaler().fit_transform(_all_features(ds, "pairs"))
    other_group = ds.groups[:, None] != ds.groups[None, :]
    assert _nearest_same_class(pairs, ds.labels, other_group) >= 0.8


def test_hard_variant_differs_from_the_default_only_by_the_group_style():
    default = make_synthetic(n_items=120, seed=3)
    hard = make_synthetic(n_items=120, seed=3, style_scale=0.0)
    np.testing.assert_array_equal(default.labels, hard.labels)
    for name in MODALITIES:
        d, h = default.modalities[name], hard.modalities[name]
        np.testing.assert_array_equal(d.ptr, h.ptr)
        offset = (d.x - h.x).astype(np.float64)
        group = default.groups[_node_items(d)]
        per_group = np.stack([offset[group == g].mean(axis=0) for g in range(3)])
        # one constant shift per group (the style), the same for every node of the group
        np.testing.assert_allclose(offset, per_group[group], atol=1e-4)
        assert np.linalg.norm(per_group[0] - per_group[1]) > 1.0


def _mean_cosine(features: np.ndarray, pairs: np.ndarray) -> float:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(pairs, False)
    return float(cosine[pairs].mean())


@pytest.mark.parametrize("style_scale, hard", [(2.0, False), (0.0, True)])
def test_hard_variant_makes_other_culture_negatives_as_close_as_own_culture(style_scale, hard):
    ds = make_synthetic(n_items=600, seed=4, missing_fraction=0.0, style_scale=style_scale)
    bag = StandardScaler().fit_transform(_all_features(ds, "mean"))
    same_group = ds.groups[:, None] == ds.groups[None, :]
    within, across = _mean_cosine(bag, same_group.copy()), _mean_cosine(bag, ~same_group)
    if hard:
        assert abs(within - across) < 0.05, (within, across)
    else:
        assert within > across + 0.3, (within, across)
    # in the arrangement (pair) space, an item's nearest neighbour in another culture shares
    # its arrangement code but not its class, with or without style
    pairs = StandardScaler().fit_transform(_all_features(ds, "pairs"))
    code = ds.labels ^ culture_flips(3, 3)[ds.groups]
    assert _nearest_same_class(pairs, code, ~same_group) >= 0.9
    assert _nearest_same_class(pairs, ds.labels, ~same_group) <= 0.1


# ------------------------------------------------------------------------------ options, CLI
@pytest.mark.parametrize("n_classes,n_groups,shown", [(2, 1, 1), (5, 2, 2), (16, 12, 3)])
def test_other_class_and_group_counts(n_classes, n_groups, shown):
    ds = make_synthetic(n_items=200, n_classes=n_classes, n_groups=n_groups, noise=0.0, seed=1)
    assert set(np.unique(ds.labels)) == set(range(n_classes)) and ds.num_classes == n_classes
    assert len(ds.group_names) == n_groups and sorted(ds.group_names) == ds.group_names
    text = ds.modalities["text"]
    # 2 prototypes per shown bit (16 classes: text shows bits 0, 1, 3)
    distinct = len(np.unique(text.x[text.ptr[0] : text.ptr[1]], axis=0))
    assert distinct == 2 * shown


@pytest.mark.parametrize(
    "kwargs",
    [{"n_items": 0}, {"n_classes": 1}, {"n_groups": 0}, {"missing_fraction": 1.5}, {"noise": -1.0},
     {"style_scale": -1.0}],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        make_synthetic(**kwargs)


def test_cli_writes_a_dataset_folder(tmp_path):
    folder_module = pytest.importorskip("mmgnn.data.folder")
    out = tmp_path / "synthetic"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--out", str(out), "--n-items", "90", "--seed", "7", "--missing-fraction", "0.2",
            "--style-scale", "0.5"]
    subprocess.run(
        [sys.executable, "-m", "mmgnn.data.synthetic", *args],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    written = sorted(p.name for p in out.iterdir())
    assert written == ["audio.npz", "image.npz", "items.csv", "text.npz"]
    loaded = folder_module.load_folder(out, modalities=list(MODALITIES))
    expected = make_synthetic(n_items=90, seed=7, missing_fraction=0.2, style_scale=0.5)
    np.testing.assert_array_equal(loaded.labels, expected.labels)
    np.testing.assert_array_equal(loaded.groups, expected.groups)
    np.testing.assert_array_equal(loaded.split, expected.split)
    assert loaded.items["item_id"].tolist() == expected.items["item_id"].tolist()
    for name in MODALITIES:
        for key in ("x", "ptr", "pos"):
            np.testing.assert_array_equal(
                getattr(loaded.modalities[name], key), getattr(expected.modalities[name], key)
            )
