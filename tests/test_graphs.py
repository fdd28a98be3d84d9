"""Graph builders (one GraphSpec subclass each), build_graphs cache, config helper and summary.

The tests marked "every builder" run over every option of ``conf/graph/builder/`` (and
``$MMGNN_CONFIG_PATH``), instantiated from its YAML file, so a new builder is covered by them
without a list to edit."""
from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, fields

import dgl
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from mmgnn.config import group_options, load_option
from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.graphs import (
    ChainGraph,
    FullGraph,
    GivenGraph,
    GraphSpec,
    GridGraph,
    KnnGraph,
    ModalityGraphs,
    add_self_loops,
    build_graphs,
    clear_graph_cache,
    graph_specs_from_config,
    graph_summary,
)

BUILDERS = group_options("graph/builder")


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
    one = ChainGraph(window=1).edges(m)
    check_layout(m, one)
    assert set(item_edges(one, 0)) == both_ways([(0, 1), (1, 2), (2, 3)])
    assert len(item_edges(one, 0)) == 6
    assert item_edges(one, 1) == [] and item_edges(one, 2) == []
    assert set(item_edges(one, 3)) == {(0, 1), (1, 0)}

    two = ChainGraph(window=2).edges(m)
    check_layout(m, two)
    assert set(item_edges(two, 0)) == both_ways([(0, 1), (1, 2), (2, 3), (0, 2), (1, 3)])
    assert len(item_edges(two, 0)) == 10
    assert set(item_edges(two, 3)) == {(0, 1), (1, 0)}


def test_chain_window_larger_than_item_is_full_graph():
    m = modality([3])
    assert set(item_edges(ChainGraph(window=5).edges(m), 0)) == set(
        item_edges(FullGraph().edges(m), 0)
    )


# ------------------------------------------------------------------------------- grid

GRID_2x3 = [[r, c] for r in range(2) for c in range(3)]  # node id = 3 * row + col


def test_grid_4_and_8_neighbours_on_2x3():
    m = modality([6], pos=GRID_2x3)
    four = GridGraph(neighbours=4).edges(m)
    check_layout(m, four)
    expected4 = both_ways([(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (1, 4), (2, 5)])
    assert set(item_edges(four, 0)) == expected4 and len(item_edges(four, 0)) == 14

    eight = GridGraph(neighbours=8).edges(m)
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
    edges = GridGraph(neighbours=4).edges(m)
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
        GridGraph().edges(m)
    assert "'image'" in str(error.value)


# -------------------------------------------------------------------------------- knn


def test_knn_pos_known_neighbours_small_and_empty_items():
    # item 0: points on a line 0, 1, 3, 10 (k = 2) -> neighbours by hand;
    # item 1: empty; item 2: 2 points (<= k) -> full graph; item 3: one point -> no edges.
    pos = [[0.0], [1.0], [3.0], [10.0], [4.0], [9.0], [7.0]]
    m = modality([4, 0, 2, 1], pos=pos, name="audio")
    edges = KnnGraph(k=2).edges(m)
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
    feature = KnnGraph(k=2, space="feature").edges(m)
    got = set(item_edges(feature, 0))
    assert {(1, 0), (2, 0), (0, 1), (0, 2), (4, 3), (3, 4)} <= got
    assert len(got) == 10 and all(a != b for a, b in got)
    # in pos space the same nodes are a line: centre 0 -> 1, 2; centre 4 -> 3, 2
    by_pos = set(item_edges(KnnGraph(k=2, space="pos").edges(m), 0))
    assert {(1, 0), (2, 0), (3, 4), (2, 4)} <= by_pos


def test_knn_matches_brute_force_reference():
    rng = np.random.default_rng(0)
    counts = [12, 3, 0, 9, 1, 20, 4]
    k = 4
    pos = rng.normal(size=(sum(counts), 3))
    m = modality(counts, pos=pos)
    edges = KnnGraph(k=k).edges(m)
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
    spec = KnnGraph(k=3)
    first = spec.edges(m)
    check_layout(m, first)
    got = item_edges(first, 0)
    assert len(got) == 7 * 3 and len(set(got)) == 21
    assert all(a != b for a, b in got)
    assert sorted(torch.bincount(torch.tensor([b for _, b in got])).tolist()) == [3] * 7
    second = spec.edges(m)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_knn_restores_dgl_thread_count():
    # Not 1, the count a small input runs with (and the tests' OMP_NUM_THREADS, conftest): a
    # count left at 1 would pass unnoticed. (DGL caps it at the machine's cores.)
    before = dgl.utils.get_num_threads()
    dgl.utils.set_num_threads(2)
    expected = dgl.utils.get_num_threads()
    try:
        KnnGraph(k=2).edges(modality([5, 6], pos=np.arange(11.0)[:, None]))
        assert dgl.utils.get_num_threads() == expected
    finally:
        dgl.utils.set_num_threads(before)


def test_knn_pos_missing_is_an_error_naming_the_modality():
    with pytest.raises(ValueError, match="'text'.*pos"):
        KnnGraph(k=2).edges(modality([3], name="text"))


# ------------------------------------------------------------------- full, given, self


def test_full_on_three_nodes():
    m = modality([3, 0, 1])
    edges = FullGraph().edges(m)
    check_layout(m, edges)
    assert set(item_edges(edges, 0)) == {(j, i) for i in range(3) for j in range(3) if i != j}
    assert len(item_edges(edges, 0)) == 6
    assert item_edges(edges, 1) == [] and item_edges(edges, 2) == []


def test_given_returns_the_dataset_edges():
    edge_index = np.array([[0, 2, 1, 0], [1, 0, 0, 0]], dtype=np.int64)
    m = modality([3, 0, 2], edge_index=edge_index, edge_ptr=np.array([0, 2, 2, 4]))
    edges = GivenGraph().edges(m)
    check_layout(m, edges)
    assert item_edges(edges, 0) == [(0, 1), (2, 0)]
    assert item_edges(edges, 2) == [(1, 0), (0, 0)]


def test_given_errors():
    with pytest.raises(ValueError, match="'text'.*edge_index"):
        GivenGraph().edges(modality([2], name="text"))
    out_of_item = modality(
        [3, 2], name="text", edge_index=np.array([[0, 2], [1, 0]]), edge_ptr=np.array([0, 1, 2])
    )
    with pytest.raises(ValueError, match="'text': item 1"):
        GivenGraph().edges(out_of_item)
    bad_ptr = modality([3], name="text", edge_index=np.array([[0], [1]]), edge_ptr=np.array([0, 2]))
    with pytest.raises(ValueError, match="'text': edge_ptr"):
        GivenGraph().edges(bad_ptr)


def test_self_loops_add_one_per_node_and_stay_grouped():
    m = modality([3, 0, 2])
    base = ChainGraph().edges(m)
    looped = add_self_loops(m, base)
    check_layout(m, looped)
    assert item_edges(looped, 0) == item_edges(base, 0) + [(0, 0), (1, 1), (2, 2)]
    assert item_edges(looped, 1) == []
    assert item_edges(looped, 2) == item_edges(base, 2) + [(0, 0), (1, 1)]


def random_modality(seed: int = 1) -> ModalityData:
    """40 items of 0..9 nodes: 2-D integer cells of a 4x4 grid as ``pos``, random features,
    and given edges (each node <- its successor and node 0)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 10, size=40)
    pos = np.concatenate([np.argwhere(np.ones((4, 4)))[:c] for c in counts]).astype(np.float32)
    per_item = [[(j + 1, j) for j in range(c - 1)] + [(0, j) for j in range(1, c)] for c in counts]
    edge_index = np.array([e for item in per_item for e in item], dtype=np.int64).reshape(-1, 2).T
    edge_ptr = np.concatenate([[0], np.cumsum([len(item) for item in per_item])])
    return modality(counts, dim=3, pos=pos, x=rng.normal(size=(counts.sum(), 3)),
                    edge_index=edge_index, edge_ptr=edge_ptr)


@pytest.mark.parametrize("builder", BUILDERS)
def test_every_builder_yaml_builds_grouped_edges_without_self_loops(builder):
    """Every builder: edges stay inside their item, no self-edges, the same edges each call."""
    spec = instantiate(load_option("graph/builder", builder))
    assert isinstance(spec, GraphSpec) and spec.describe().startswith(spec.name)
    m = random_modality()
    edges = spec.edges(m)
    check_layout(m, edges)
    assert edges[0].shape[0] > 0
    assert all(a != b for a, b in zip(edges[0].tolist(), edges[1].tolist()))
    assert all(torch.equal(a, b) for a, b in zip(edges, spec.edges(m)))


@pytest.mark.parametrize("builder", BUILDERS)
def test_every_builder_yaml_goes_through_the_config_helper_and_keys_the_cache(builder):
    """The YAML as a modality's graph config gives the same spec; the spec is frozen, hashable
    and equal to a copy, so the cache key changes exactly when an option does."""
    options = load_option("graph/builder", builder)
    spec = graph_specs_from_config(["m"], {}, {"m": options})["m"]
    assert spec == instantiate(options) and hash(spec) == hash(instantiate(options))
    for option in fields(spec):
        with pytest.raises(FrozenInstanceError):
            setattr(spec, option.name, getattr(spec, option.name))
    ds = dataset_of({"m": random_modality()})
    first = build_graphs(ds, {"m": spec})
    assert build_graphs(ds, {"m": instantiate(options)}) is first


def test_builder_options_change_the_spec_and_the_cache_key():
    assert ChainGraph(window=2) != ChainGraph(window=1) and ChainGraph() == ChainGraph(window=1)
    assert KnnGraph(k=3) != KnnGraph(k=3, space="feature") and FullGraph() != GivenGraph()
    ds = dataset_of({"m": random_modality()})
    looked_up = {build_graphs(ds, {"m": s})["m"].num_edges for s in (KnnGraph(k=2), KnnGraph(k=3))}
    assert len(looked_up) == 2


# --------------------------------------------------------------------- GraphSpec errors


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ChainGraph(window=0), "window"),
        (lambda: ChainGraph(window="2"), "window must be int, got '2'"),
        (lambda: GridGraph(neighbours=6), "neighbours"),
        (lambda: KnnGraph(k=0), "k must"),
        (lambda: KnnGraph(k=2.5), "k must be int"),
        (lambda: KnnGraph(k=True), "k must be int"),
        (lambda: KnnGraph(space="time"), "space"),
    ],
)
def test_graph_spec_validation(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@dataclass(frozen=True)
class StarGraph(GraphSpec):
    """A builder defined outside mmgnn: node 0 of each item -> every other node of the item
    (``reverse``: the other way round)."""

    name = "star"
    reverse: bool = False

    def edges(self, modality: ModalityData):
        counts = np.diff(modality.ptr).tolist()
        spokes = torch.tensor([j for n in counts for j in range(1, n)], dtype=torch.int64)
        hub = torch.zeros_like(spokes)
        edge_ptr = torch.tensor(np.concatenate([[0], np.cumsum(np.maximum(np.array(counts) - 1, 0))]))
        return (spokes, hub, edge_ptr) if self.reverse else (hub, spokes, edge_ptr)


def test_a_new_builder_is_one_class_chosen_by_target():
    with pytest.raises(TypeError):
        GraphSpec()  # abstract: a builder must say how it builds edges
    m = modality([3, 0, 2], name="m")
    target = f"{__name__}.StarGraph"
    spec = graph_specs_from_config(["m"], {"_target_": target, "reverse": True})["m"]
    assert spec == StarGraph(reverse=True) and spec.describe() == "star(reverse=True)"
    graphs = build_graphs(dataset_of({"m": m}), {"m": spec}, self_loops=True)
    edges = (graphs["m"].src, graphs["m"].dst, graphs["m"].edge_ptr)
    assert item_edges(edges, 0) == [(1, 0), (2, 0), (0, 0), (1, 1), (2, 2)]
    assert item_edges(edges, 2) == [(1, 0), (0, 0), (1, 1)]
    with pytest.raises(ValueError, match="modality 'm'.*reverse must be bool, got 'yes'"):
        graph_specs_from_config(["m"], {"_target_": target, "reverse": "yes"})


# ------------------------------------------------------------------ build_graphs, cache


def toy_dataset(seed=0) -> MultimodalDataset:
    rng = np.random.default_rng(seed)
    text = modality([3, 2, 0, 4], dim=4, name="text", x=rng.normal(size=(9, 4)),
                    pos=np.arange(9)[:, None])
    image = modality([4, 0, 4, 4], dim=3, name="image", x=rng.normal(size=(12, 3)),
                     pos=[[r, c] for r in range(2) for c in range(2)] * 3)
    return dataset_of({"text": text, "image": image})


SPECS = {"text": ChainGraph(), "image": GridGraph()}


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
    other_spec = build_graphs(ds, {**SPECS, "text": ChainGraph(window=2)})
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
        build_graphs(ds, {**SPECS, "audio": FullGraph()})
    with pytest.raises(ValueError, match=r"no graph spec for modalities \['image'\]"):
        build_graphs(ds, {"text": ChainGraph()})
    with pytest.raises(ValueError, match="'text'.*edge_index"):
        build_graphs(ds, {**SPECS, "text": GivenGraph()})


CHAIN, GRID, KNN = (f"mmgnn.data.graphs.{c}" for c in ("ChainGraph", "GridGraph", "KnnGraph"))


def test_graph_specs_from_config_entries_and_defaults():
    specs = graph_specs_from_config(
        ["text", "image", "audio", "video"],
        default={"_target_": KNN, "k": 6},
        per_modality={
            "text": {"_target_": CHAIN, "window": 2},  # its own builder: default not used
            "image": {"_target_": GRID, "neighbours": 8},
            "audio": {"k": 3},  # no builder: options on top of the default's
        },
    )
    assert specs == {
        "text": ChainGraph(window=2),
        "image": GridGraph(neighbours=8),
        "audio": KnnGraph(k=3),
        "video": KnnGraph(k=6),
    }
    full = graph_specs_from_config(["a"], {"_target_": "mmgnn.data.graphs.FullGraph"}, None)
    assert full == {"a": FullGraph()}


@pytest.mark.parametrize("default, per_modality, message", [
    ({"_target_": "mmgnn.data.graphs.FullGraph"}, {"video": {"k": 2}},
     r"\['video'\].*\['text', 'image'\]"),
    ({"_target_": CHAIN, "windw": 2}, {}, r"modality 'text' has options \['windw'\] that the chain builder"),
    # the pre-_target_ short form on top of a YAML entry names the new override syntax
    ({"_target_": KNN}, {"image": {"_target_": CHAIN, "builder": "given"}},
     r"modality 'image'.*\['builder'\].*graph/builder@graph.modalities.<modality>=<builder>"),
    ({}, {}, "modality 'text' names no builder"),
    ({"_target_": "mmgnn.data.graphs.RingGraph"}, {}, "modality 'text': cannot load builder 'mmgnn.data.graphs.RingGraph'"),
    ({"_target_": "mmgnn.data.graphs.ModalityGraphs"}, {}, "modality 'text'.*not a .*GraphSpec subclass"),
    ({"_target_": KNN}, {"image": {"_target_": GRID, "neighbours": 5}}, "modality 'image'.*neighbours"),
    ({"_target_": KNN, "k": "six"}, {}, "modality 'text'.*k must be int, got 'six'"),
])
def test_graph_specs_from_config_errors_name_the_modality_and_option(default, per_modality, message):
    with pytest.raises(ValueError, match=message):
        graph_specs_from_config(["text", "image"], default, per_modality)


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
    explicit = graph_summary(ds, graphs, {"text": FullGraph(), "image": FullGraph()})
    assert explicit.loc["text", "builder"] == "full"
    looped = build_graphs(ds, SPECS, self_loops=True)
    assert graph_summary(ds, looped).loc["text", "builder"] == "chain(window=1) + self-loops"
    clear_graph_cache()
    assert graph_summary(ds, graphs).loc["text", "builder"] is None
