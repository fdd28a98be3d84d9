"""Retrieval, classification and evaluation metrics on hand-made cases with known answers."""
from __future__ import annotations

import math
import posixpath
import re

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torch import nn

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.graphs import ChainGraph
from mmgnn.data.pipeline import prepare_data
from mmgnn.models.multimodal import ModelOutput
from mmgnn.train.evaluation import robustness

from mmgnn.metrics import (
    accuracy,
    average_precision,
    classification_metrics,
    is_fusion_metric,
    label_ranks,
    macro_f1,
    match_ranks,
    mean_average_precision,
    mean_rank,
    median_rank,
    metric_key_part,
    metrics_table,
    monitored_value,
    multimodal_metrics,
    recall_at_k,
    robustness_auc,
)


def unit(*angles_deg):
    """2-D unit vectors at the given angles."""
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


# ----------------------------------------------------------------------------- retrieval
def test_match_ranks_are_zero_based_with_ties_against_the_query():
    query = unit(0, 90, 45)
    gallery = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    # q0: its match g0 is the most similar -> 0
    # q1: g2 (cos 1) beats its match g1 (cos 0.0995) -> 1
    # q2: g1 (0.774) beats its match g2 (0.707); g0 ties with it (0.707) -> 2
    assert match_ranks(query, gallery).tolist() == [0, 1, 2]
    assert match_ranks(torch.tensor(query), torch.tensor(gallery)).tolist() == [0, 1, 2]


def test_collapsed_embeddings_get_the_worst_rank():
    same = np.ones((5, 3))
    assert match_ranks(same, same).tolist() == [4] * 5


def test_recall_median_and_mean_rank():
    ranks = np.array([0, 1, 2, 5])
    assert recall_at_k(ranks, 1) == 0.25
    assert recall_at_k(ranks, 3) == 0.75
    assert recall_at_k(ranks, 10) == 1.0
    assert median_rank(ranks) == 2.0  # floor(1.5) + 1 (VSE++)
    assert median_rank(np.array([0, 1, 2])) == 2.0
    assert mean_rank(ranks) == 3.0  # mean 0-based rank 2 -> 1-based 3
    assert math.isnan(recall_at_k(np.array([np.nan]), 1))


def test_average_precision_on_a_hand_ranking():
    query = unit(0)
    gallery = unit(10, 20, 30, 80)  # ranked in this order
    labels = np.array([1, 0, 1, 0])
    # relevant at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    assert average_precision(query, gallery, np.array([1]), labels)[0] == pytest.approx(5 / 6)
    assert label_ranks(query, gallery, np.array([0]), labels)[0] == 1.0
    assert math.isnan(average_precision(query, gallery, np.array([7]), labels)[0])
    assert math.isnan(label_ranks(query, gallery, np.array([7]), labels)[0])


def test_average_precision_matches_scikit_learn_without_ties():
    rng = np.random.default_rng(0)
    query, gallery = rng.normal(size=(6, 4)), rng.normal(size=(30, 4))
    ql, gl = rng.integers(0, 3, 6), rng.integers(0, 3, 30)
    ap = average_precision(query, gallery, ql, gl)
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    gn = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    for i in range(6):
        assert ap[i] == pytest.approx(average_precision_score(gl == ql[i], qn[i] @ gn.T))
    assert mean_average_precision(ap) == pytest.approx(ap.mean())


def test_ties_rank_irrelevant_items_first():
    query = unit(0)
    gallery = unit(30, 30)
    assert average_precision(query, gallery, np.array([0]), np.array([1, 0]))[0] == 0.5
    assert label_ranks(query, gallery, np.array([0]), np.array([1, 0]))[0] == 1.0


def test_exclude_self_when_query_and_gallery_are_one_set():
    x = unit(0, 10, 50)
    labels = np.array([0, 0, 1])
    # with itself left out, item 0's nearest other item (1) shares its label
    assert average_precision(x, x, labels, labels, exclude_self=True).tolist()[:2] == [1.0, 1.0]
    assert math.isnan(average_precision(x, x, labels, labels, exclude_self=True)[2])
    assert label_ranks(x, x, labels, labels, exclude_self=True)[:2].tolist() == [0.0, 0.0]
    # kept in, the query finds itself first: item 2 then has a relevant item
    assert average_precision(x, x, labels, labels)[2] == 1.0


# ----------------------------------------------------------------------------- classification
def test_accuracy_and_macro_f1_by_hand():
    y = np.array([0, 0, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 2])
    assert accuracy(p, y) == pytest.approx(0.8)
    # F1: class 0 = 2/3 (P 1, R 1/2), class 1 = 0.8 (P 2/3, R 1), class 2 = 1
    assert macro_f1(p, y) == pytest.approx((2 / 3 + 0.8 + 1.0) / 3)
    logits = np.eye(3)[p] * 2.0
    assert classification_metrics(torch.tensor(logits), torch.tensor(y)) == pytest.approx(
        {"acc": 0.8, "macro_f1": (2 / 3 + 0.8 + 1.0) / 3}
    )
    # -1 (no prediction) is wrong for its item and no class of its own
    p = np.array([0, -1, 1, 1, 2])
    assert accuracy(p, y) == pytest.approx(0.8)
    assert macro_f1(p, y) == pytest.approx((2 / 3 + 1.0 + 1.0) / 3)


# ----------------------------------------------------------------------------- evaluation
def base_case():
    """Four items, two groups; text and image identical except items 2 and 3 swap images."""
    text = unit(0, 40, 100, 140)
    image = unit(0, 40, 140, 100)
    present = np.ones((4, 2), dtype=bool)
    labels = np.array([0, 1, 0, 1])
    groups = np.array([0, 0, 1, 1])
    return {"text": text, "image": image}, present, labels, groups


def test_multimodal_metrics_retrieval_keys_and_values():
    emb, present, labels, groups = base_case()
    m = multimodal_metrics(emb, present, fused=emb["text"], logits=None, labels=labels,
                           groups=groups, group_names=["a", "b"])
    assert m["text_to_image/r1"] == 0.5 and m["text_to_image/r5"] == 1.0
    assert m["text_to_image/medr"] == 1.0  # ranks [0, 0, 1, 1]: floor(0.5) + 1
    assert m["text_to_image/mean_rank"] == 1.5
    assert m["text_and_image/rsum"] == 5.0  # (0.5 + 1 + 1) * 2 directions
    assert m["retrieval/r1"] == 0.5 and m["retrieval/rsum"] == 5.0
    assert m["retrieval/mean_recall"] == pytest.approx(2.5 / 3)
    # same-label APs of the text queries, by hand from the angles: 3/4, 5/6, 1/2, 7/12
    assert m["text_to_image/map"] == pytest.approx(2 / 3)
    assert monitored_value(m, "item") == ("retrieval/mean_recall", m["retrieval/mean_recall"])


def test_items_missing_a_modality_are_removed_from_both_sides():
    emb, present, labels, groups = base_case()
    m = multimodal_metrics(emb, present, emb["text"], None, labels, groups, ["a", "b"])
    # a fifth item whose image is missing but whose (stale) image row would match every query
    emb5 = {"text": np.vstack([emb["text"], unit(0)]), "image": np.vstack([emb["image"], unit(0)])}
    present5 = np.vstack([present, [[True, False]]])
    m5 = multimodal_metrics(emb5, present5, emb5["text"], None, np.append(labels, 0),
                            np.append(groups, 0), ["a", "b"])
    for key in ("text_to_image/r1", "image_to_text/mean_rank", "text_to_image/map", "retrieval/rsum"):
        assert m5[key] == m[key]


def test_per_group_metrics_and_worst_group():
    emb, present, labels, groups = base_case()
    logits = np.array([[5, 0], [0, 5], [5, 0], [5, 0]])  # item 3 (group b) misclassified
    gates = np.array([[0.2, 0.8], [0.4, 0.6], [0.6, 0.4], [1.0, 0.0]])
    m = multimodal_metrics(emb, present, emb["text"], logits, labels, groups,
                           ["West Africa", "Côte d'Ivoire/2"], gates=gates)
    a, b = "group/West Africa", "group/Côte d_Ivoire_2"
    # group a: items 0, 1 retrieve each other's exact match
    assert m[f"{a}/text_to_image/r1"] == 1.0 and m[f"{a}/text_to_image/medr"] == 1.0
    # group b: items 2 and 3 swapped images, each finds the other's first (0-based rank 1)
    assert m[f"{b}/text_to_image/r1"] == 0.0 and m[f"{b}/text_to_image/mean_rank"] == 2.0
    assert m["worst_group/text_to_image/r1"] == 0.0
    assert m["worst_group/text_to_image/mean_rank"] == 2.0
    assert m[f"{a}/fused/acc"] == 1.0 and m[f"{b}/fused/acc"] == 0.5
    assert m["fused/acc"] == 0.75 and m["worst_group/fused/acc"] == 0.5
    assert m["gates/text/mean"] == pytest.approx(0.55)
    assert m["gates/image/mean"] == pytest.approx(0.45)
    for key in m:
        assert re.fullmatch(r"[/\w.\- ]*", key) and posixpath.normpath(key) == key, key
    assert all(np.isfinite(v) for v in m.values())
    present[3, 1] = False  # the image gate is averaged over the items that have an image
    m = multimodal_metrics(emb, present, emb["text"], logits, labels, groups, ["a", "b"], gates=gates)
    assert m["gates/image/mean"] == pytest.approx(0.6)


def test_without_a_fused_output_no_fused_or_gate_metric_is_computed():
    """``fused=None`` (the fusion is not trained): the classifier's logits and the gates are
    ignored, nothing of the fused output in any group; retrieval is unchanged."""
    emb, present, labels, groups = base_case()
    logits = np.array([[5, 0], [0, 5], [5, 0], [5, 0]])
    gates = np.full((4, 2), 0.5)
    fused = multimodal_metrics(emb, present, emb["text"], logits, labels, groups, ["a", "b"], gates=gates)
    m = multimodal_metrics(emb, present, None, logits, labels, groups, ["a", "b"], gates=gates)
    assert {k for k in fused if "fused/" in k or "gates/" in k} == {
        f"{prefix}fused/{k}" for prefix in ("", "group/a/", "group/b/", "worst_group/")
        for k in ("map", "label_r1", "label_r5", "label_r10", "acc", "macro_f1")
    } | {"gates/text/mean", "gates/image/mean"}
    assert m == {k: v for k, v in fused.items() if "fused/" not in k and "gates/" not in k}


@pytest.mark.parametrize("key, expected", [
    ("fused/acc", True), ("val/fused/map", True), ("worst_group/fused/acc", True),
    ("group/a b/fused/label_r1", True), ("missing/text_and_image/fused/acc", True),
    ("noise/audio/0.3/fused/acc", True), ("test/noise/audio/auc/fused/acc", True),
    ("gates/text/mean", True), ("val/gates/image/mean", True),
    ("retrieval/map", False), ("val/retrieval/mean_recall", False),
    ("group/fused/text_to_image/r1", False), ("missing/gates/retrieval/map", False),
    ("fused_to_image/r1", False), ("auto", False),
])
def test_is_fusion_metric_sees_through_split_condition_and_group_prefixes(key, expected):
    assert is_fusion_metric(key) is expected


def test_fused_same_label_retrieval_leaves_the_query_out():
    emb, present, labels, groups = base_case()
    fused = unit(0, 90, 10, 100)  # same-label items are nearest neighbours
    m = multimodal_metrics(emb, present, fused, None, labels, groups, ["a", "b"])
    assert m["fused/map"] == 1.0 and m["fused/label_r1"] == 1.0
    assert "fused/acc" not in m


def test_items_left_without_any_modality_count_as_misses_and_wrong_classes():
    """A robustness probe that removes an item's only modalities keeps it in the denominator."""
    emb, present, labels, groups = base_case()
    fused = unit(0, 90, 10, 100)  # items 0, 2 (label 0) and 1, 3 (label 1) are neighbours
    logits = np.array([[5, 0], [0, 5], [5, 0], [0, 5]])  # every item classified right
    full = multimodal_metrics(emb, present, fused, logits, labels, groups, ["a", "b"])
    assert full["fused/acc"] == 1.0 and full["fused/macro_f1"] == 1.0
    present[3] = False  # item 3 (label 1, group b) is left with no modality
    m = multimodal_metrics(emb, present, fused, logits, labels, groups, ["a", "b"])
    assert m["fused/acc"] == 0.75  # 3 of 4, not 3 of 3
    # class 1: precision 1 (item 1), recall 1/2 -> F1 2/3; class 0: F1 1
    assert m["fused/macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2)
    # item 1 lost its only same-label neighbour (item 3 is no gallery item): AP and R@1 miss;
    # item 3 is a query that misses; items 0 and 2 still find each other first
    assert m["fused/label_r1"] == 0.5 and m["fused/map"] == 0.5
    assert m["group/b/fused/acc"] == 0.5 and m["worst_group/fused/acc"] == 0.5
    # retrieval directions keep the items having both modalities (items 0-2, which now
    # all find their own image first: item 3's image, closest to item 2's text, is gone)
    assert m["text_to_image/r1"] == 1.0 and full["text_to_image/r1"] == 0.5


class LabelOracle(nn.Module):
    """Classifies every item that has a modality right; one-hot embeddings per item."""

    def forward(self, batch, fuse=True):
        labels = torch.nn.functional.one_hot(batch.labels, 2).float()
        own = torch.nn.functional.one_hot(batch.index, 8).float()
        present = batch.present
        emb = {m: own * present[:, i, None] for i, m in enumerate(batch.modalities)}
        return ModelOutput(batch.modalities, emb, present, labels, present.float(), 5 * labels)


def test_robustness_counts_items_left_without_any_modality_as_wrong():
    import pandas as pd

    counts = {"a": np.array([2, 3, 2, 2, 3, 2]), "b": np.array([2, 2, 3, 2, 2, 0])}  # 5 lacks b
    mods = {}
    for m, c in counts.items():
        ptr = np.concatenate([[0], np.cumsum(c)]).astype(np.int64)
        local = (np.arange(ptr[-1]) - np.repeat(ptr[:-1], c)).astype(np.float32)[:, None]
        mods[m] = ModalityData(m, np.ones((ptr[-1], 2), dtype=np.float32), ptr, local)
    dataset = MultimodalDataset(
        items=pd.DataFrame({"item_id": list("uvwxyz")}), modalities=mods,
        labels=np.array([0, 1, 0, 1, 0, 1]), label_names=["0", "1"],
        groups=np.zeros(6, dtype=np.int64), group_names=["g"], split=np.array(["test"] * 6),
    )
    data = prepare_data(dataset, {"a": ChainGraph(), "b": ChainGraph()}, standardize=False)
    results = robustness(LabelOracle(), data, "test", 4, torch.device("cpu"), "item",
                         missing=True, noise_levels=[])
    assert results["missing/b/fused/acc"] == 1.0  # every item still has a
    assert results["missing/a/fused/acc"] == pytest.approx(5 / 6)  # item z has nothing left
    assert set(results) == {"missing/a/fused/acc", "missing/b/fused/acc"}


def test_label_pairing_ranks_modalities_of_different_items():
    # no item has both modalities: only same-label correspondence exists
    text = unit(0, 90, 0, 0)
    image = unit(0, 0, 5, 95)
    present = np.array([[True, False], [True, False], [False, True], [False, True]])
    labels = np.array([0, 1, 0, 1])
    m = multimodal_metrics({"text": text, "image": image}, present, text, None, labels,
                           np.zeros(4, int), ["all"], pairing="label")
    assert m["text_to_image/map"] == 1.0 and m["image_to_text/label_r1"] == 1.0
    assert "text_to_image/r1" not in m
    assert monitored_value(m, "label") == ("retrieval/map", 1.0)
    with pytest.raises(KeyError, match="retrieval/mean_recall"):
        monitored_value(multimodal_metrics({"text": text, "image": image}, present, text, None,
                                           labels, np.zeros(4, int), ["all"]), "item")


def test_metric_key_part_makes_mlflow_safe_names():
    assert metric_key_part("Côte d'Ivoire") == "Côte d_Ivoire"
    assert metric_key_part("a/b") == "a_b"
    assert metric_key_part("..") == "_.."


def test_metrics_table_has_one_row_per_metric():
    table = metrics_table({"retrieval/r1": 0.5, "fused/acc": 1.0})
    assert table.index.tolist() == ["retrieval/r1", "fused/acc"]
    assert table["value"].tolist() == [0.5, 1.0]


def test_robustness_auc_is_the_normalised_trapezoid_area():
    assert robustness_auc([0.0, 0.5, 1.0], [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert robustness_auc([1.0, 0.0, 0.5], [0.0, 1.0, 0.5]) == pytest.approx(0.5)
    assert robustness_auc([0.0, 0.2, 1.0], [1.0, 1.0, 0.0]) == pytest.approx(0.6)
    assert robustness_auc([0.3, 0.9], [0.7, 0.7]) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="two distinct levels"):
        robustness_auc([0.5], [1.0])
