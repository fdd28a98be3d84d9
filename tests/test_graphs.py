"""Graph builders, GraphSpec, build_graphs cache, config helper and summary."""
from __future__ import annotations

import os


import dgl
import numpy as np
import pandas as pd
import pytest
import torch

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.graphs import (
    BUILDERS,
    GraphSpec,
    ModalityGraphs,
    add_self_loops,
    build_graphs,
    chain,
    clear_graph_cache,
    full,
    given,
    graph_specs_from_config,
    graph_summary,
    grid,
    knn,
)


def modality(counts, dim=2, pos=None, name="m", x=None, **kwargs) -> ModalityData:
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if x is None:
        x = np.arange(ptr[-1] * dim, dtype=np.float32).reshape(-1, dim)
    if pos is not None:
        pos = np.asarray(pos, dtype=np.float32)
    return ModalityData(name=name, x=np.asarray(x, dtype=np.float32), ptr=ptr, pos=pos, **kwargs)


def item_edges(edges, i) -> list[tuple[int, int]]:
    src, dst, edge_ptr = edges
    lo, hi = int(edge_ptr[i]), int(edge_ptr[i + 1])
    return list(zip(src[lo:hi].tolist(), dst[lo:hi].tolist()))


def both_ways(pairs) -> set[tuple[int, int]]:
    return {(a, b) for a, b in pairs} | {(b, a) for a, b in pairs}


def check_layout(m: ModalityData, edges) -> None:
    """Dtypes, grouping and that every edge stays inside its item."""
    src, dst, edge_ptr = edges
    assert src.dtype == dst.dtype == edge_ptr.dtype == torch.int64
    assert edge_ptr.shape == (m.n_items + 1,)
    assert int(edge_ptr[0]) == 0 and int(edge_ptr[-1]) == src.shape[0] == dst.shape[0]
    assert bool((edge_ptr[1:] >= edge_ptr[:-1]).all())
    counts = torch.as_tensor(m.counts)
    item = torch.repeat_interleave(torch.arange(m.n_items), edge_ptr[1:] - edge_ptr[:-1])
    for ids in (src, dst):
        assert bool((ids >= 0).all()) and bool((ids < counts[item]).all())


def dataset_of(modalities: dict[str, ModalityData], name="toy") -> MultimodalDataset:
    n = next(iter(modalities.values())).n_items
    return MultimodalDataset(
        items=pd.DataFrame({"item_id": [f"i{j}" for j in range(n)]}),
        modalities=modalities,
        labels=np.arange(n, dtype=np.int64) % 2,
        label_names=["a", "b"],
        groups=np.zeros(n, dtype=np.int64),
        group_names=["all"],
        split=np.array(["train"] * n),
        name=name,
    )


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_graph_cache()
    yield
    clear_graph_cache()


# ------------------------------------------------------------------------------ chain


def test_chain_window_1_and_2_exact_edges():
    m = modality([4, 0, 1, 2])
    one = chain(m, GraphSpec("chain", window=1))
    check_layout(m, one)
    assert set(item_edges(one, 0)) == both_ways([(0, 1), (1, 2), (2, 3)])
    assert len(item_edges(one, 0)) == 6
    assert item_edges(one, 1) == [] and item_edges(one, 2) == []
    assert set(item_edges(one, 3)) == {(0, 1), (1, 0)}

    two = chain(m, GraphSpec("chain", window=2))
    check_layout(m, two)
    assert set(item_edges(two, 0)) == both_ways([(0, 1), (1, 2), (2, 3), (0, 2), (1, 3)])
    assert len(item_edges(two, 0)) == 10
    assert set(item_edges(two, 3)) == {(0, 1), (1, 0)}


def test_chain_window_larger_than_item_is_full_graph():
    m = modality([3])
    assert set(item_edges(chain(m, GraphSpec("chain", window=5)), 0)) == set(
        item_edges(full(m, GraphSpec("full")), 0)
    )


# ------------------------------------------------------------------------------- grid

GRID_2x3 = [[r, c] for r in range(2) for c in range(3)]  # node id = 3 * row + col


def test_grid_4_and_8_neighbours_on_2x3():
    m = modality([6], pos=GRID_2x3)
    four = grid(m, GraphSpec("grid", neighbours=4))
    check_layout(m, four)
    expected4 = both_ways([(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (1, 4), (2, 5)])
    assert set(item_edges(four, 0)) == expected4 and len(item_edges(four, 0)) == 14

    eight = grid(m, GraphSpec("grid", neighbours=8))
    check_layout(m, eight)
    diagonals = both_ways([(0, 4), (1, 3), (1, 5), (2, 4)])
    assert set(item_edges(eight, 0)) == expected4 | diagonals
    assert len(item_edges(eight, 0)) == 22


def test_grid_uses_positions_not_node_order_and_keeps_items_apart():
    # Item 0: the 2x3 grid with nodes listed in a scrambled order; item 1: same cells, a
    # negative offset and a hole; item 2 missing.
    perm = [4, 0, 5, 2, 1, 3]
    second = [[r - 5, c - 7] for r, c in GRID_2x3 if (r, c) != (0, 1)]
    m = modality([6, 5, 0], pos=[GRID_2x3[p] for p in perm] + second)
    edges = grid(m, GraphSpec("grid", neighbours=4))
    check_layout(m, edges)
    inverse = {old: new for new, old in enumerate(perm)}
    expected = both_ways([(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (1, 4), (2, 5)])
    assert set(item_edges(edges, 0)) == {(inverse[a], inverse[b]) for a, b in expected}
    # item 1 nodes: 0=(0,0) 1=(0,2) 2=(1,0) 3=(1,1) 4=(1,2) (shifted)
    assert set(item_edges(edges, 1)) == both_ways([(0, 2), (2, 3), (3, 4), (1, 4)])
    assert item_edges(edges, 2) == []


@pytest.mark.parametrize(
    "pos, message",
    [
        (None, "has no pos"),
        ([[0.0]] * 6, r"shape \[total_nodes, 2\]"),
        ([[0.5, 0.0]] + GRID_2x3[1:], "integer"),
        ([[0, 0]] + GRID_2x3[1:5] + [[0, 0]], "same grid position"),
    ],
)
def test_grid_errors_name_the_modality(pos, message):
    m = modality([6], pos=pos, name="image")
    with pytest.raises(ValueError, match=message) as error:
        grid(m, GraphSpec("grid"))
    assert "'image'" in str(error.value)


# -------------------------------------------------------------------------------- knn


def test_knn_pos_known_neighbours_small_and_empty_items():
    # item 0: points on a line 0, 1, 3, 10 (k = 2) -> neighbours by hand;
    # item 1: empty; item 2: 2 points (<= k) -> full graph; item 3: one point -> no edges.
    pos = [[0.0], [1.0], [3.0], [10.0], [4.0], [9.0], [7.0]]
    m = modality([4, 0, 2, 1], pos=pos, name="audio")
    edges = knn(m, GraphSpec("knn", k=2))
    check_layout(m, edges)
    # neighbour -> centre
    assert set(item_edges(edges, 0)) == {
        (1, 0), (2, 0),  # centre 0: 1 (d 1), 2 (d 3)
        (0, 1), (2, 1),  # centre 1: 0 (d 1), 2 (d 2)
        (1, 2), (0, 2),  # centre 2: 1 (d 2), 0 (d 3)
        (2, 3), (1, 3),  # centre 3: 2 (d 7), 1 (d 9)
    }
    assert len(item_edges(edges, 0)) == 8
    assert item_edges(edges, 1) == []
    assert set(item_edges(edges, 2)) == {(0, 1), (1, 0)}
    assert item_edges(edges, 3) == []


def test_knn_feature_space_and_2d_positions():
    # features: the two clusters {0, 1, 2} and {3, 4} far apart; k = 2
    x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [50.0, 50.0], [51.0, 50.0]]
    m = modality([5], x=x, pos=[[i, 0] for i in range(5)])
    feature = knn(m, GraphSpec("knn", k=2, space="feature"))
    got = set(item_edges(feature, 0))
    assert {(1, 0), (2, 0), (0, 1), (0, 2), (4, 3), (3, 4)} <= got
    assert len(got) == 10 and all(a != b for a, b in got)
    # in pos space the same nodes are a line: centre 0 -> 1, 2; centre 4 -> 3, 2
    by_pos = set(item_edges(knn(m, GraphSpec("knn", k=2, space="pos")), 0))
    assert {(1, 0), (2, 0), (3, 4), (2, 4)} <= by_pos


def test_knn_matches_brute_force_reference():
    rng = np.random.default_rng(0)
    counts = [12, 3, 0, 9, 1, 20, 4]
    k = 4
    pos = rng.normal(size=(sum(counts), 3))
    m = modality(counts, pos=pos)
    edges = knn(m, GraphSpec("knn", k=k))
    check_layout(m, edges)
    for i, n in enumerate(counts):
        p = pos[m.ptr[i]:m.ptr[i + 1]]
        expected = set()
        for centre in range(n):
            dist = ((p - p[centre]) ** 2).sum(1)
            dist[centre] = np.inf
            expected |= {(int(j), centre) for j in np.argsort(dist)[: min(k, n - 1)]}
        got = item_edges(edges, i)
        assert set(got) == expected and len(got) == len(expected)


def test_knn_coincident_points_give_k_edges_without_self_deterministically():
    m = modality([7, 3], pos=[[0.0]] * 7 + [[1.0], [2.0], [3.0]])
    spec = GraphSpec("knn", k=3)
    first = knn(m, spec)
    check_layout(m, first)
    got = item_edges(first, 0)
    assert len(got) == 7 * 3 and len(set(got)) == 21
    assert all(a != b for a, b in got)
    assert sorted(torch.bincount(torch.tensor([b for _, b in got])).tolist()) == [3] * 7
    second = knn(m, spec)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_knn_restores_dgl_thread_count():
    before = dgl.utils.get_num_threads()
    knn(modality([5, 6], pos=np.arange(11.0)[:, None]), GraphSpec("knn", k=2))
    assert dgl.utils.get_num_threads() == before


def test_knn_pos_missing_is_an_error_naming_the_modality():
    with pytest.raises(ValueError, match="'text'.*pos"):
        knn(modality([3], name="text"), GraphSpec("knn", k=2))


# ------------------------------------------------------------------- full, given, self


def test_full_on_three_nodes():
    m = modality([3, 0, 1])
    edges = full(m, GraphSpec("full"))
    check_layout(m, edges)
    assert set(item_edges(edges, 0)) == {(j, i) for i in range(3) for j in range(3) if i != j}
    assert len(item_edges(edges, 0)) == 6
    assert item_edges(edges, 1) == [] and item_edges(edges, 2) == []


def test_given_returns_the_dataset_edges():
    edge_index = np.array([[0, 2, 1, 0], [1, 0, 0, 0]], dtype=np.int64)
    m = modality([3, 0, 2], edge_index=edge_index, edge_ptr=np.array([0, 2, 2, 4]))
    edges = given(m, GraphSpec("given"))
    check_layout(m, edges)
    assert item_edges(edges, 0) == [(0, 1), (2, 0)]
    assert item_edges(edges, 2) == [(1, 0), (0, 0)]


def test_given_errors():
    with pytest.raises(ValueError, match="'text'.*edge_index"):
        given(modality([2], name="text"), GraphSpec("given"))
    out_of_item = modality(
        [3, 2], name="text", edge_index=np.array([[0, 2], [1, 0]]), edge_ptr=np.array([0, 1, 2])
    )
    with pytest.raises(ValueError, match="'text': item 1"):
        given(out_of_item, GraphSpec("given"))
    bad_ptr = modality([3], name="text", edge_index=np.array([[0], [1]]), edge_ptr=np.array([0, 2]))
    with pytest.raises(ValueError, match="'text': edge_ptr"):
        given(bad_ptr, GraphSpec("given"))


def test_self_loops_add_one_per_node_and_stay_grouped():
    m = modality([3, 0, 2])
    base = chain(m, GraphSpec("chain"))
    looped = add_self_loops(m, base)
    check_layout(m, looped)
    assert item_edges(looped, 0) == item_edges(base, 0) + [(0, 0), (1, 1), (2, 2)]
    assert item_edges(looped, 1) == []
    assert item_edges(looped, 2) == item_edges(base, 2) + [(0, 0), (1, 1)]


@pytest.mark.parametrize(
    "spec",
    [GraphSpec("chain", window=3), GraphSpec("grid", neighbours=8), GraphSpec("knn", k=3),
     GraphSpec("knn", k=2, space="feature"), GraphSpec("full")],
)
def test_edges_never_cross_items(spec):
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 10, size=40)
    pos = np.concatenate([np.argwhere(np.ones((4, 4)))[:c] for c in counts]).astype(np.float32)
    m = modality(counts, dim=3, pos=pos, x=rng.normal(size=(counts.sum(), 3)))
    edges = BUILDERS[spec.builder](m, spec)
    check_layout(m, edges)
    assert all(a != b for a, b in zip(edges[0].tolist(), edges[1].tolist()))


# --------------------------------------------------------------------- GraphSpec errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"builder": "ring"}, "unknown graph builder 'ring'"),
        ({"builder": "chain", "window": 0}, "window"),
        ({"builder": "grid", "neighbours": 6}, "neighbours"),
        ({"builder": "knn", "k": 0}, "k must"),
        ({"builder": "knn", "k": 2.5}, "k must"),
        ({"builder": "knn", "space": "time"}, "space"),
    ],
)
def test_graph_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GraphSpec(**kwargs)


# ------------------------------------------------------------------ build_graphs, cache


def toy_dataset(seed=0) -> MultimodalDataset:
    rng = np.random.default_rng(seed)
    text = modality([3, 2, 0, 4], dim=4, name="text", x=rng.normal(size=(9, 4)),
                    pos=np.arange(9)[:, None])
    image = modality([4, 0, 4, 4], dim=3, name="image", x=rng.normal(size=(12, 3)),
                     pos=[[r, c] for r in range(2) for c in range(2)] * 3)
    return dataset_of({"text": text, "image": image})


SPECS = {"text": GraphSpec("chain"), "image": GraphSpec("grid")}


def test_build_graphs_returns_modality_graphs_with_tensors():
    ds = toy_dataset()
    graphs = build_graphs(ds, SPECS)
    assert list(graphs) == ["text", "image"]
    text = graphs["text"]
    assert isinstance(text, ModalityGraphs) and text.name == "text"
    assert text.x.dtype == torch.float32
    assert torch.equal(text.x, torch.as_tensor(ds.modalities["text"].x))
    assert text.ptr.tolist() == [0, 3, 5, 5, 9]
    assert text.pos.dtype == torch.float32
    assert text.num_edges == 4 + 2 + 0 + 6
    assert graphs["image"].num_edges == 3 * 8


def test_build_graphs_cache_hits_and_misses():
    ds = toy_dataset()
    first = build_graphs(ds, SPECS)
    assert build_graphs(ds, dict(reversed(SPECS.items()))) is first
    assert build_graphs(toy_dataset(), SPECS) is first  # same content, new object
    other_spec = build_graphs(ds, {**SPECS, "text": GraphSpec("chain", window=2)})
    assert other_spec is not first and other_spec["text"].num_edges > first["text"].num_edges
    looped = build_graphs(ds, SPECS, self_loops=True)
    assert looped is not first and looped["text"].num_edges == first["text"].num_edges + 9
    assert build_graphs(toy_dataset(seed=1), SPECS) is not first
    clear_graph_cache()
    rebuilt = build_graphs(ds, SPECS)
    assert rebuilt is not first and torch.equal(rebuilt["text"].src, first["text"].src)


def test_build_graphs_spec_errors():
    ds = toy_dataset()
    with pytest.raises(ValueError, match=r"\['audio'\].*\['text', 'image'\]"):
        build_graphs(ds, {**SPECS, "audio": GraphSpec("full")})
    with pytest.raises(ValueError, match=r"no graph spec for modalities \['image'\]"):
        build_graphs(ds, {"text": GraphSpec("chain")})
    with pytest.raises(ValueError, match="'text'.*edge_index"):
        build_graphs(ds, {**SPECS, "text": GraphSpec("given")})


def test_graph_specs_from_config_overrides_and_errors():
    specs = graph_specs_from_config(
        ["text", "image", "audio"],
        default={"builder": "chain", "window": 2},
        per_modality={
            "image": {"builder": "grid", "neighbours": 8},
            "audio": {"k": 3, "builder": "knn"},
        },
    )
    assert specs == {
        "text": GraphSpec("chain", window=2),
        "image": GraphSpec("grid", window=2, neighbours=8),
        "audio": GraphSpec("knn", window=2, k=3),
    }
    assert graph_specs_from_config(["a"], {"builder": "full"}, None) == {"a": GraphSpec("full")}
    with pytest.raises(ValueError, match=r"\['video'\].*\['text', 'image'\]"):
        graph_specs_from_config(["text", "image"], {"builder": "full"}, {"video": {"k": 2}})
    with pytest.raises(ValueError, match=r"'text'.*unknown options \['windw'\]"):
        graph_specs_from_config(["text"], {"builder": "chain", "windw": 2})
    with pytest.raises(ValueError, match="'text'.*no builder"):
        graph_specs_from_config(["text"], {})
    with pytest.raises(ValueError, match="'image'.*neighbours"):
        graph_specs_from_config(["image"], {"builder": "grid", "neighbours": 5})


def test_graph_summary_counts():
    ds = toy_dataset()
    graphs = build_graphs(ds, SPECS)
    summary = graph_summary(ds, graphs)
    assert list(summary.index) == ["text", "image"]
    text = summary.loc["text"]
    assert text["builder"] == "chain(window=1)"
    assert (text["items"], text["present"], text["missing"]) == (4, 3, 1)
    assert (text["nodes"], text["edges"]) == (9, 12)
    assert text["nodes/item"] == pytest.approx(3.0) and text["edges/item"] == pytest.approx(4.0)
    assert summary.loc["image", "builder"] == "grid(neighbours=4)"
    assert summary.loc["image", "edges/item"] == pytest.approx(8.0)
    explicit = graph_summary(ds, graphs, {"text": GraphSpec("full"), "image": GraphSpec("full")})
    assert explicit.loc["text", "builder"] == "full"
    looped = build_graphs(ds, SPECS, self_loops=True)
    assert graph_summary(ds, looped).loc["text", "builder"] == "chain(window=1) + self-loops"
    clear_graph_cache()
    assert graph_summary(ds, graphs).loc["text", "builder"] is None
