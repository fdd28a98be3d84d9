"""The query readout: hand-computed attention pooling, empty items, node-order invariance, and
that tokens carrying positions make it order-aware."""
from __future__ import annotations

import dgl
import pytest
import torch

from mmgnn.models.readout import QueryReadout, Readout

pytestmark = pytest.mark.usefixtures("one_thread")


def batched(counts: list[int]) -> dgl.DGLGraph:
    g = dgl.batch([dgl.graph(([], []), num_nodes=n) for n in counts])
    return g


def test_one_query_is_softmax_attention_then_the_output_layer():
    torch.manual_seed(0)
    readout = QueryReadout(dim=4, queries=1)
    h = torch.randn(5, 4)
    out = readout(batched([2, 3]), h)
    for rows, item in ((slice(0, 2), 0), (slice(2, 5), 1)):
        scores = readout.key(h[rows]) @ readout.queries[0] / 2.0  # sqrt(dim) = 2
        pooled = torch.softmax(scores, 0) @ readout.value(h[rows])
        torch.testing.assert_close(out[item], readout.out(pooled))


def test_empty_items_give_zeros_and_shapes_follow_the_batch():
    readout = Readout("query", 6, queries=3)
    out = readout(batched([2, 0, 4]), torch.randn(6, 6))
    assert out.shape == (3, 6) and torch.all(out[1] == 0) and not torch.all(out[0] == 0)
    with pytest.raises(ValueError, match="queries"):
        QueryReadout(4, 0)


def test_node_order_within_an_item_does_not_matter_but_positions_do():
    torch.manual_seed(1)
    readout = QueryReadout(dim=8, queries=4)
    content, position = torch.randn(4, 8), torch.randn(4, 8)
    graph = batched([4])
    base = readout(graph, content + position)
    perm = torch.tensor([2, 0, 3, 1])
    # the same (content, position) pairs listed in another order: same output
    torch.testing.assert_close(readout(graph, (content + position)[perm]), base)
    # the same contents at other positions (a mean of contents would not change): differs
    moved = readout(graph, content[perm] + position)
    assert not torch.allclose(moved, base, atol=1e-4)
    mean = Readout("mean", 8)
    torch.testing.assert_close(mean(graph, content[perm]), mean(graph, content))
