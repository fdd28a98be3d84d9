"""Dataset folder contract: load_folder's validation, encodings and the write/load round trip."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.folder import DatasetError, load_folder, write_folder


def valid_parts():
    """A valid 4-item folder's parts: items table and arrays of `text` and `image`.

    Item a2 (row 2) lacks `text`; `image` has pos and user-given edges (local ids).
    """
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "item_id": ["a0", "a1", "a2", "a3"],
            "label": ["cat", "dog", "cat", "dog"],
            "group": ["en", "en", "fr", "fr"],
            "split": ["train", "train", "val", "test"],
            "note": [1.5, 2.5, 3.5, 4.5],
        }
    )
    text = {"x": rng.normal(size=(7, 3)).astype(np.float32), "ptr": np.array([0, 2, 5, 5, 7])}
    image = {
        "x": rng.normal(size=(6, 2)).astype(np.float32),
        "ptr": np.array([0, 1, 2, 4, 6]),
        "pos": rng.normal(size=(6, 2)).astype(np.float32),
        "edge_index": np.array([[0, 0, 1, 0, 1], [0, 1, 0, 1, 0]]),
        "edge_ptr": np.array([0, 1, 1, 3, 5]),
    }
    return table, {"text": text, "image": image}


def write_parts(folder, table, modalities):
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "items.csv", index=False)
    for name, arrays in modalities.items():
        np.savez(folder / f"{name}.npz", **arrays)
    return folder


def load_broken(tmp_path, mutate, **kwargs):
    table, modalities = valid_parts()
    table = mutate(table, modalities)
    folder = write_parts(tmp_path / "ds", table, modalities)
    with pytest.raises(DatasetError) as info:
        load_folder(folder, **kwargs)
    return str(info.value)


def assert_names(message, *words):
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def set_array(modality, key, value):
    def mutate(table, modalities):
        modalities[modality][key] = value
        return table

    return mutate


def drop_array(modality, key):
    def mutate(table, modalities):
        del modalities[modality][key]
        return table

    return mutate


# ----------------------------------------------------------------------------- folder level


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as info:
        load_folder(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_missing_items_csv(tmp_path):
    table, modalities = valid_parts()
    folder = write_parts(tmp_path / "ds", table, modalities)
    (folder / "items.csv").unlink()
    with pytest.raises(DatasetError) as info:
        load_folder(folder)
    assert_names(str(info.value), "items.csv", "missing")


def test_missing_modality_file(tmp_path):
    table, modalities = valid_parts()
    folder = write_parts(tmp_path / "ds", table, modalities)
    with pytest.raises(DatasetError) as info:
        load_folder(folder, modalities=["text", "audio"])
    assert_names(str(info.value), "audio.npz", "missing modality file")


def test_fewer_than_two_modalities(tmp_path):
    table, modalities = valid_parts()
    del modalities["image"]
    folder = write_parts(tmp_path / "ds", table, modalities)
    with pytest.raises(DatasetError) as info:
        load_folder(folder)
    assert_names(str(info.value), "at least 2 modalities", "text.npz")


# ----------------------------------------------------------------------------- items.csv


def test_missing_item_id_column(tmp_path):
    message = load_broken(tmp_path, lambda t, m: t.drop(columns="item_id"))
    assert_names(message, "items.csv", "missing column 'item_id'")


def test_duplicate_item_id_names_both_rows(tmp_path):
    def mutate(table, modalities):
        table.loc[3, "item_id"] = "a1"
        return table

    message = load_broken(tmp_path, mutate)
    assert_names(message, "items.csv", "duplicate item_id 'a1'", "rows 1 and 3", "lines 3 and 5")


def test_empty_item_id(tmp_path):
    def mutate(table, modalities):
        table.loc[2, "item_id"] = ""
        return table

    assert_names(load_broken(tmp_path, mutate), "items.csv", "missing item_id", "row 2")


def test_unknown_split_value(tmp_path):
    def mutate(table, modalities):
        table.loc[2, "split"] = "valid"
        return table

    assert_names(load_broken(tmp_path, mutate), "items.csv", "'a2'", "row 2", "unknown split", "'valid'")


def test_missing_labels_name_the_rows(tmp_path):
    def mutate(table, modalities):
        table.loc[[1, 3], "label"] = np.nan
        return table

    message = load_broken(tmp_path, mutate)
    assert_names(message, "items.csv", "'label'", "missing values", "'a1'", "row 1", "'a3'", "row 3")
    assert "'a2'" not in message


def test_missing_group_values(tmp_path):
    def mutate(table, modalities):
        table.loc[0, "group"] = ""
        return table

    assert_names(load_broken(tmp_path, mutate), "items.csv", "'group'", "missing values", "'a0'")


# ----------------------------------------------------------------------------- x and ptr


def test_npz_missing_x(tmp_path):
    assert_names(load_broken(tmp_path, drop_array("text", "x")), "text.npz", "missing array 'x'")


def test_npz_missing_ptr(tmp_path):
    assert_names(load_broken(tmp_path, drop_array("image", "ptr")), "image.npz", "missing array 'ptr'")


def test_npz_unknown_array(tmp_path):
    message = load_broken(tmp_path, set_array("text", "edges", np.zeros((2, 0), dtype=np.int64)))
    assert_names(message, "text.npz", "unexpected arrays ['edges']")


def test_ptr_not_1d(tmp_path):
    message = load_broken(tmp_path, set_array("text", "ptr", np.array([[0, 2, 5, 5, 7]])))
    assert_names(message, "text.npz", "ptr must be 1-D", "(1, 5)")


def test_ptr_wrong_length(tmp_path):
    message = load_broken(tmp_path, set_array("text", "ptr", np.array([0, 2, 5, 7])))
    assert_names(message, "text.npz", "ptr has length 4", "n_items + 1 = 5")


def test_ptr_not_starting_at_zero(tmp_path):
    message = load_broken(tmp_path, set_array("text", "ptr", np.array([1, 2, 5, 5, 7])))
    assert_names(message, "text.npz", "ptr[0] must be 0")


def test_ptr_decreasing_names_first_offending_item(tmp_path):
    message = load_broken(tmp_path, set_array("text", "ptr", np.array([0, 2, 5, 4, 7])))
    assert_names(message, "text.npz", "decreases", "'a2'", "row 2", "ptr[3] = 4 < ptr[2] = 5")


def test_ptr_last_not_rows_of_x(tmp_path):
    message = load_broken(tmp_path, set_array("text", "ptr", np.array([0, 2, 5, 5, 6])))
    assert_names(message, "text.npz", "ptr[-1] = 6", "rows of x (7)")


def test_ptr_float(tmp_path):
    message = load_broken(tmp_path, set_array("text", "ptr", np.array([0.0, 2, 5, 5, 7])))
    assert_names(message, "text.npz", "ptr must hold integers")


def test_x_not_2d(tmp_path):
    message = load_broken(tmp_path, set_array("text", "x", np.zeros(7, dtype=np.float32)))
    assert_names(message, "text.npz", "x must be 2-D", "(7,)")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_x_not_finite_names_owner_of_first_bad_row(tmp_path, bad):
    def mutate(table, modalities):
        modalities["text"]["x"][6, 1] = bad  # row 6 belongs to a3 (ptr[3] = 5 .. ptr[4] = 7)
        modalities["text"]["x"][3, 0] = bad  # row 3 belongs to a1 (2 .. 5): the first bad row
        return table

    message = load_broken(tmp_path, mutate)
    assert_names(message, "text.npz", "x is not finite", "node row 3", "'a1'", "row 1")


def test_x_overflowing_float32_is_not_finite(tmp_path):
    def mutate(table, modalities):
        modalities["text"]["x"] = modalities["text"]["x"].astype(np.float64)
        modalities["text"]["x"][0, 0] = 1e300
        return table

    assert_names(load_broken(tmp_path, mutate), "text.npz", "x is not finite", "'a0'")


def test_x_not_numeric(tmp_path):
    message = load_broken(tmp_path, set_array("text", "x", np.full((7, 3), "a")))
    assert_names(message, "text.npz", "x must be numeric")


# ----------------------------------------------------------------------------- pos and edges


def test_pos_rows_differ_from_x(tmp_path):
    message = load_broken(tmp_path, set_array("image", "pos", np.zeros((5, 2), dtype=np.float32)))
    assert_names(message, "image.npz", "pos has 5 rows but x has 6")


def test_pos_not_finite(tmp_path):
    def mutate(table, modalities):
        modalities["image"]["pos"][4, 0] = np.nan  # row 4 belongs to a3 (4 .. 6)
        return table

    assert_names(load_broken(tmp_path, mutate), "image.npz", "pos is not finite", "'a3'")


TEXT_IDS = np.array([101, 7, 8, 9, 102, 5, 6])  # one token id per text node (7 rows, ptr 0 2 5 5 7)


def test_token_ids_load_as_int64(tmp_path):
    table, modalities = valid_parts()
    modalities["text"]["ids"] = TEXT_IDS.astype(np.int32)
    dataset = load_folder(write_parts(tmp_path / "ds", table, modalities))
    assert dataset.modalities["text"].ids.dtype == np.int64
    np.testing.assert_array_equal(dataset.modalities["text"].ids, TEXT_IDS)
    assert dataset.modalities["image"].ids is None


@pytest.mark.parametrize("value, words", [
    (TEXT_IDS[:6], ["ids has 6 entries but x has 7 rows"]),
    (TEXT_IDS.astype(np.float32), ["ids must hold integers", "float32"]),
    (TEXT_IDS.reshape(7, 1), ["ids must be 1-D", "(7, 1)"]),
    (np.where(np.arange(7) == 3, -1, TEXT_IDS), ["ids[3] = -1 is negative", "'a1'", "row 1"]),
])
def test_bad_token_ids(tmp_path, value, words):
    assert_names(load_broken(tmp_path, set_array("text", "ids", value)), "text.npz", *words)


def test_edge_index_wrong_shape(tmp_path):
    message = load_broken(tmp_path, set_array("image", "edge_index", np.zeros((3, 5), dtype=np.int64)))
    assert_names(message, "image.npz", "edge_index must have shape [2, total_edges]", "(3, 5)")


def test_edge_index_without_edge_ptr(tmp_path):
    message = load_broken(tmp_path, drop_array("image", "edge_ptr"))
    assert_names(message, "image.npz", "'edge_index' without 'edge_ptr'")


def test_edge_ptr_without_edge_index(tmp_path):
    message = load_broken(tmp_path, drop_array("image", "edge_index"))
    assert_names(message, "image.npz", "'edge_ptr' without 'edge_index'")


def test_edge_ptr_wrong_length(tmp_path):
    message = load_broken(tmp_path, set_array("image", "edge_ptr", np.array([0, 1, 3, 5])))
    assert_names(message, "image.npz", "edge_ptr has length 4", "n_items + 1 = 5")


def test_edge_ptr_not_starting_at_zero(tmp_path):
    message = load_broken(tmp_path, set_array("image", "edge_ptr", np.array([1, 1, 1, 3, 5])))
    assert_names(message, "image.npz", "edge_ptr[0] must be 0")


def test_edge_ptr_decreasing(tmp_path):
    message = load_broken(tmp_path, set_array("image", "edge_ptr", np.array([0, 2, 1, 3, 5])))
    assert_names(message, "image.npz", "edge_ptr decreases", "'a1'", "row 1")


def test_edge_ptr_last_not_number_of_edges(tmp_path):
    message = load_broken(tmp_path, set_array("image", "edge_ptr", np.array([0, 1, 1, 3, 4])))
    assert_names(message, "image.npz", "edge_ptr[-1] = 4", "number of edges", "(5)")


@pytest.mark.parametrize(
    "edge_index, item, row",
    [
        # a2 has 2 nodes: local id 2 is outside [0, 2)
        (np.array([[0, 0, 2, 0, 1], [0, 1, 0, 1, 0]]), "'a2'", "row 2"),
        # a3's edge uses a negative id
        (np.array([[0, 0, 1, 0, 1], [0, 1, 0, -1, 0]]), "'a3'", "row 3"),
        # a0 has 1 node: local id 1 is outside [0, 1) although global row 1 exists
        (np.array([[0, 0, 1, 0, 1], [1, 1, 0, 1, 0]]), "'a0'", "row 0"),
    ],
)
def test_edge_index_outside_local_node_range(tmp_path, edge_index, item, row):
    message = load_broken(tmp_path, set_array("image", "edge_index", edge_index))
    assert_names(message, "image.npz", item, row, "outside the item's local node range")


def test_item_without_any_modality(tmp_path):
    def mutate(table, modalities):
        modalities["image"]["ptr"] = np.array([0, 1, 2, 2, 6])  # a2 now lacks image and text
        modalities["image"]["edge_ptr"] = np.array([0, 1, 1, 1, 3])
        modalities["image"]["edge_index"] = np.array([[0, 0, 1], [0, 1, 0]])
        return table

    message = load_broken(tmp_path, mutate)
    assert_names(message, "'a2'", "row 2", "no nodes in any modality", "text.npz", "image.npz")


# ----------------------------------------------------------------------------- valid folders


def test_valid_folder_loads_and_encodes(tmp_path):
    table, modalities = valid_parts()
    modalities["text"]["x"] = modalities["text"]["x"].astype(np.float64)
    modalities["text"]["ptr"] = modalities["text"]["ptr"].astype(np.int32)
    folder = write_parts(tmp_path / "mine", table, modalities)
    ds = load_folder(folder)

    assert ds.name == "mine"
    assert ds.modality_names == ("image", "text")  # discovered, sorted by file name
    text = ds.modalities["text"]
    assert text.x.dtype == np.float32 and text.ptr.dtype == np.int64
    np.testing.assert_allclose(text.x, modalities["text"]["x"], rtol=1e-6)
    np.testing.assert_array_equal(ds.modalities["image"].edge_index, modalities["image"]["edge_index"])
    assert ds.label_names == ["cat", "dog"]
    np.testing.assert_array_equal(ds.labels, [0, 1, 0, 1])
    assert ds.group_names == ["en", "fr"]
    np.testing.assert_array_equal(ds.groups, [0, 0, 1, 1])
    np.testing.assert_array_equal(ds.split, ["train", "train", "val", "test"])
    np.testing.assert_array_equal(ds.present_matrix(), [[1, 1], [1, 1], [1, 0], [1, 1]])
    assert list(ds.items["note"]) == [1.5, 2.5, 3.5, 4.5]  # other columns kept


def test_listed_modalities_set_the_order(tmp_path):
    table, modalities = valid_parts()
    modalities["audio"] = {"x": np.ones((4, 1), dtype=np.float32), "ptr": np.arange(5)}
    folder = write_parts(tmp_path / "ds", table, modalities)
    assert load_folder(folder).modality_names == ("audio", "image", "text")
    assert load_folder(folder, modalities=["text", "audio"]).modality_names == ("text", "audio")


def test_integer_labels_sort_numerically(tmp_path):
    table, modalities = valid_parts()
    table["label"] = [10, 2, 2, 9]
    ds = load_folder(write_parts(tmp_path / "ds", table, modalities))
    assert ds.label_names == ["2", "9", "10"]
    np.testing.assert_array_equal(ds.labels, [2, 0, 0, 1])


def test_optional_label_group_split(tmp_path):
    table, modalities = valid_parts()
    folder = write_parts(tmp_path / "ds", table.drop(columns=["label", "group", "split"]), modalities)
    ds = load_folder(folder, seed=3)
    assert ds.labels is None and ds.label_names is None and ds.num_classes == 0
    assert ds.group_names == ["all"]
    np.testing.assert_array_equal(ds.groups, [0, 0, 0, 0])
    # 4 items in one stratum: at least one val and one test item, the same for the same seed
    assert set(ds.split) == {"train", "val", "test"}
    np.testing.assert_array_equal(ds.split, load_folder(folder, seed=3).split)
    np.testing.assert_array_equal(ds.items["split"], ds.split)


def test_group_values_like_na_are_kept(tmp_path):
    table, modalities = valid_parts()
    table["group"] = ["NA", "NA", "EU", "None"]  # North America, not missing
    ds = load_folder(write_parts(tmp_path / "ds", table, modalities))
    assert ds.group_names == ["EU", "NA", "None"]
    np.testing.assert_array_equal(ds.groups, [1, 1, 0, 2])


def hand_made_dataset():
    """3 modalities, pos on two, user-given edges on one, missing modalities, int-named labels."""
    rng = np.random.default_rng(1)
    n = 6
    items = pd.DataFrame({"item_id": [f"song-{i}" for i in range(n)], "year": np.arange(1990, 1996)})

    def modality(name, counts, dim, pos_dim=None, edges=None):
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        x = rng.normal(size=(ptr[-1], dim)).astype(np.float32)
        pos = None if pos_dim is None else rng.normal(size=(ptr[-1], pos_dim)).astype(np.float32)
        if edges is None:
            return ModalityData(name, x, ptr, pos)
        per_item = [np.asarray(e, dtype=np.int64).reshape(2, -1) for e in edges]
        edge_ptr = np.concatenate([[0], np.cumsum([e.shape[1] for e in per_item])]).astype(np.int64)
        return ModalityData(name, x, ptr, pos, np.concatenate(per_item, axis=1), edge_ptr)

    text_edges = [[[0, 1], [1, 2]], [[0], [0]], [], [[1, 0], [0, 1]], [[2], [0]], []]
    modalities = {
        "text": modality("text", [3, 1, 0, 2, 3, 0], 4, pos_dim=1, edges=text_edges),
        "image": modality("image", [4, 4, 4, 0, 4, 4], 3, pos_dim=2),
        "audio": modality("audio", [2, 0, 5, 1, 1, 2], 2),
    }
    modalities["text"].ids = np.arange(100, 109, dtype=np.int64)  # token ids of the 9 text nodes
    return MultimodalDataset(
        items=items,
        modalities=modalities,
        labels=np.array([0, 1, 2, 0, 1, 2]),
        label_names=["3", "7", "12"],
        groups=np.array([0, 1, 0, 1, 1, 0]),
        group_names=["jp", "us"],
        split=np.array(["train", "val", "test", "train", "train", "test"]),
        name="hand",
    )


def assert_same_dataset(loaded, original):
    assert loaded.modality_names == original.modality_names
    for name, m in original.modalities.items():
        got = loaded.modalities[name]
        for key in ("x", "ptr", "pos", "edge_index", "edge_ptr", "ids"):
            want, have = getattr(m, key), getattr(got, key)
            if want is None:
                assert have is None, (name, key)
            else:
                assert have.dtype == want.dtype, (name, key)
                np.testing.assert_array_equal(have, want, err_msg=f"{name}.{key}")
    np.testing.assert_array_equal(loaded.labels, original.labels)
    assert loaded.label_names == original.label_names
    np.testing.assert_array_equal(loaded.groups, original.groups)
    assert loaded.group_names == original.group_names
    np.testing.assert_array_equal(loaded.split, original.split)
    np.testing.assert_array_equal(loaded.items["item_id"].astype(str), original.items["item_id"].astype(str))
    assert loaded.fingerprint() == original.fingerprint()


def test_write_then_load_round_trip(tmp_path):
    original = hand_made_dataset()
    write_folder(original, tmp_path / "out")
    loaded = load_folder(tmp_path / "out", modalities=list(original.modalities), name="hand")
    assert_same_dataset(loaded, original)
    assert list(loaded.items["year"]) == list(range(1990, 1996))


def test_write_folder_refuses_foreign_modality_files(tmp_path):
    np.savez(tmp_path / "video.npz", x=np.zeros((1, 1)), ptr=np.array([0, 1]))
    with pytest.raises(FileExistsError, match="video.npz"):
        write_folder(hand_made_dataset(), tmp_path)
    assert not (tmp_path / "items.csv").exists()


def test_synthetic_round_trip(tmp_path):
    synthetic = pytest.importorskip("mmgnn.data.synthetic")
    original = synthetic.make_synthetic(n_items=60, seed=1)
    write_folder(original, tmp_path / "syn")
    loaded = load_folder(tmp_path / "syn", modalities=list(original.modalities))
    assert_same_dataset(loaded, original)
