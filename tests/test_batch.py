"""Collation: batch_modality / MultimodalCollator round-trip every item's graph exactly."""
from __future__ import annotations

import os


import dgl
import numpy as np
import pytest
import torch

from mmgnn.data.batch import MultimodalBatch, MultimodalCollator, batch_modality
from mmgnn.data.graphs import ModalityGraphs


def hand_graphs(name, node_counts, edge_lists, dim, with_pos, seed) -> ModalityGraphs:
    """ModalityGraphs from per-item local edge lists (distinct random features per node)."""
    gen = torch.Generator().manual_seed(seed)
    ptr = torch.tensor([0, *np.cumsum(node_counts)], dtype=torch.int64)
    edge_ptr = torch.tensor([0, *np.cumsum([len(e) for e in edge_lists])], dtype=torch.int64)
    pairs = [pair for edges in edge_lists for pair in edges]
    src = torch.tensor([a for a, _ in pairs], dtype=torch.int64)
    dst = torch.tensor([b for _, b in pairs], dtype=torch.int64)
    n = int(ptr[-1])
    return ModalityGraphs(
        name=name,
        x=torch.randn(n, dim, generator=gen),
        ptr=ptr,
        src=src,
        dst=dst,
        edge_ptr=edge_ptr,
        pos=torch.randn(n, 2, generator=gen) if with_pos else None,
    )


# 5 items; text lacks item 2, image lacks items 1 and 4. Edges are directed and uneven so a
# reversed or shifted edge would show.
TEXT = hand_graphs(
    "text", [3, 2, 0, 4, 1],
    [[(0, 1), (1, 2), (2, 2)], [(1, 0)], [], [(3, 0), (0, 3), (1, 2), (2, 1), (2, 3)], []],
    dim=4, with_pos=True, seed=0,
)
IMAGE = hand_graphs(
    "image", [2, 0, 3, 1, 0],
    [[(0, 1)], [], [(2, 0), (0, 2), (1, 1)], [(0, 0)], []],
    dim=3, with_pos=False, seed=1,
)
GRAPHS = {"text": TEXT, "image": IMAGE}
LABELS = torch.tensor([3, 1, 4, 1, 5])
GROUPS = torch.tensor([0, 1, 0, 2, 1])


def expected_item(graphs: ModalityGraphs, i: int):
    lo, hi = int(graphs.ptr[i]), int(graphs.ptr[i + 1])
    elo, ehi = int(graphs.edge_ptr[i]), int(graphs.edge_ptr[i + 1])
    pos = None if graphs.pos is None else graphs.pos[lo:hi]
    return hi - lo, graphs.src[elo:ehi], graphs.dst[elo:ehi], graphs.x[lo:hi], pos


def assert_round_trip(batched: dgl.DGLGraph, graphs: ModalityGraphs, index) -> None:
    assert batched.batch_size == len(index)
    parts = dgl.unbatch(batched)
    for part, i in zip(parts, index):
        n, src, dst, x, pos = expected_item(graphs, int(i))
        assert part.num_nodes() == n
        got_src, got_dst = part.edges(order="eid")
        assert torch.equal(got_src, src) and torch.equal(got_dst, dst)
        assert torch.equal(part.ndata["x"], x)
        if pos is None:
            assert "pos" not in part.ndata
        else:
            assert torch.equal(part.ndata["pos"], pos)


@pytest.mark.parametrize("index", [[0, 1, 2, 3, 4], [4, 2, 0], [3, 3, 1], [2], [1, 4]])
def test_batch_modality_unbatches_to_each_items_graph(index):
    for graphs in GRAPHS.values():
        batched = batch_modality(graphs, torch.tensor(index))
        assert_round_trip(batched, graphs, index)
        counts = (graphs.ptr[1:] - graphs.ptr[:-1])[torch.tensor(index)]
        assert batched.batch_num_nodes().tolist() == counts.tolist()


def test_batch_modality_global_edges_point_into_own_item():
    batched = batch_modality(TEXT, torch.tensor([3, 0]))
    # item 3 has 4 nodes (global 0..3), item 0 follows at offset 4
    src, dst = batched.edges(order="eid")
    assert src.tolist() == [3, 0, 1, 2, 2, 4, 5, 6]
    assert dst.tolist() == [0, 3, 2, 1, 3, 5, 6, 6]
    assert torch.equal(batched.ndata["x"][4:], TEXT.x[:3])


def test_collator_batch_fields():
    collate = MultimodalCollator(GRAPHS, LABELS, GROUPS)
    batch = collate([4, 1, 2, 0])
    assert isinstance(batch, MultimodalBatch)
    assert batch.modalities == ("text", "image") and batch.size == 4
    assert batch.present.dtype == torch.bool
    assert batch.present.tolist() == [[True, False], [True, False], [False, True], [True, True]]
    assert batch.labels.tolist() == [5, 1, 4, 3]
    assert batch.groups.tolist() == [1, 1, 0, 0]
    assert batch.index.tolist() == [4, 1, 2, 0]
    for name, graphs in GRAPHS.items():
        assert_round_trip(batch.graphs[name], graphs, [4, 1, 2, 0])
    # a missing modality is a 0-node graph at its position
    assert batch.graphs["image"].batch_num_nodes().tolist() == [0, 0, 3, 2]
    assert batch.graphs["text"].batch_num_nodes().tolist() == [1, 2, 0, 3]


def test_collator_without_labels_and_in_a_dataloader():
    collate = MultimodalCollator(GRAPHS, None, GROUPS)
    loader = torch.utils.data.DataLoader(range(5), batch_size=2, collate_fn=collate)
    batches = list(loader)
    assert [b.index.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert all(b.labels is None for b in batches)
    for b in batches:
        for name, graphs in GRAPHS.items():
            assert_round_trip(b.graphs[name], graphs, b.index.tolist())


def test_batch_to_cpu_and_with_present():
    batch = MultimodalCollator(GRAPHS, LABELS, GROUPS)(torch.tensor([0, 2, 3]))
    moved = batch.to("cpu")
    assert moved.modalities == batch.modalities
    assert torch.equal(moved.present, batch.present) and torch.equal(moved.labels, batch.labels)
    assert torch.equal(moved.groups, batch.groups) and torch.equal(moved.index, batch.index)
    for name, graphs in GRAPHS.items():
        assert moved.graphs[name].device == torch.device("cpu")
        assert_round_trip(moved.graphs[name], graphs, [0, 2, 3])
    dropped = batch.present.clone()
    dropped[:, 0] = False
    masked = batch.with_present(dropped)
    assert not masked.present[:, 0].any()
    assert torch.equal(masked.present[:, 1], batch.present[:, 1])
    assert masked.graphs is batch.graphs
    assert batch.present[:, 0].tolist() == [True, False, True]  # the original is unchanged



def test_batch_where_no_item_has_the_modality():
    batch = MultimodalCollator(GRAPHS, LABELS, GROUPS)([1, 4])
    image = batch.graphs["image"]
    assert image.num_nodes() == 0 and image.num_edges() == 0 and image.batch_size == 2
    assert image.ndata["x"].shape == (0, 3)
    assert batch.present[:, 1].tolist() == [False, False]
    assert_round_trip(image, IMAGE, [1, 4])
