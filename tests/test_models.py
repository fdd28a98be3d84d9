"""Models: convs, GNNBranch, Readout, ModalitySkip, MultimodalGNN, their YAML files, budget.

The model tests run over every gnn x skip x fusion combination, built from the real YAML files
(shrunk to tiny sizes; every option of each group in ``conf/`` and ``$MMGNN_CONFIG_PATH``, so a
new option is tested without editing a list), on a hand-made batch of 6 items and 3 modalities with different feature
sizes and node counts, where some items lack a modality.
"""
from __future__ import annotations

import itertools
from dataclasses import replace


import dgl
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmgnn.config import group_options, load_option
from mmgnn.data.batch import MultimodalBatch, MultimodalCollator
from mmgnn.data.graphs import ModalityGraphs
from mmgnn.models import (
    GNNBranch,
    ModalitySkip,
    MultimodalGNN,
    Readout,
    count_parameters,
    hidden_dim_for_budget,
    pad_tokens,
)
from mmgnn.models.convs import GATLayer, GATv2Layer, GINLayer, LinearLayer, SAGELayer

from conftest import ROOT

GNNS = group_options("gnn")
SKIPS = group_options("skip")
FUSIONS = group_options("fusion")
COMBOS = list(itertools.product(GNNS, SKIPS, FUSIONS))

DIMS = {"text": 5, "image": 7, "audio": 3}
# Node counts per item (0 = the item lacks the modality). Item 0 has every modality with
# >= 3 nodes (rewiring changes its graphs); item 5 has text only; every pair of modalities
# co-occurs in some item, so every cross-attention direction gets gradients.
NODES = {
    "text": [3, 2, 4, 1, 0, 3],
    "image": [4, 0, 3, 5, 2, 0],
    "audio": [3, 2, 0, 2, 3, 0],
}
N_ITEMS = 6
HIDDEN, EMBED, CLASSES = 8, 8, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def chain_edges(n: int) -> list[tuple[int, int]]:
    """``i <-> i + 1`` (both directions)."""
    return [(i, i + 1) for i in range(n - 1)] + [(i + 1, i) for i in range(n - 1)]


def star_edges(n: int) -> list[tuple[int, int]]:
    """``0 <-> j`` for every other node ``j`` (both directions)."""
    return [(0, j) for j in range(1, n)] + [(j, 0) for j in range(1, n)]


def make_graphs(edges=chain_edges, seed: int = 0, perturb: dict | None = None) -> dict[str, ModalityGraphs]:
    """Hand-made ModalityGraphs. ``perturb``: {modality: [items]} whose features get replaced by
    large random values (same other features, same seed)."""
    gen = torch.Generator().manual_seed(seed)
    graphs = {}
    for m, counts in NODES.items():
        ptr = torch.tensor([0] + list(itertools.accumulate(counts)), dtype=torch.int64)
        x = torch.randn(int(ptr[-1]), DIMS[m], generator=gen)
        for item in (perturb or {}).get(m, []):
            x[ptr[item] : ptr[item + 1]] = 100 * torch.randn(counts[item], DIMS[m])
        per_item = [edges(n) for n in counts]
        src = torch.tensor([s for e in per_item for s, _ in e], dtype=torch.int64)
        dst = torch.tensor([d for e in per_item for _, d in e], dtype=torch.int64)
        edge_ptr = torch.tensor([0] + list(itertools.accumulate(len(e) for e in per_item)), dtype=torch.int64)
        graphs[m] = ModalityGraphs(name=m, x=x, ptr=ptr, src=src, dst=dst, edge_ptr=edge_ptr)
    return graphs


def collate(rows, graphs=None) -> MultimodalBatch:
    labels = torch.arange(N_ITEMS) % CLASSES
    groups = torch.zeros(N_ITEMS, dtype=torch.int64)
    return MultimodalCollator(graphs or make_graphs(), labels, groups)(rows)


def load(group: str, name: str, **overrides):
    cfg = load_option(group, name)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def build_model(gnn: str, skip: str, fusion: str, readout: str = "mean", projection: str = "none",
                **gnn_overrides) -> MultimodalGNN:
    """The model as the run builds it, from the YAML files, with tiny sizes."""
    return instantiate(
        load("model", "default", embed_dim=EMBED, readout=readout, projection=projection),
        modality_dims=DIMS,
        num_classes=CLASSES,
        branch=instantiate(load("gnn", gnn, hidden_dim=HIDDEN, **gnn_overrides)),
        skip=instantiate(load("skip", skip)),
        fusion=instantiate(load("fusion", fusion)),
    )


def outputs_of(out, rows=slice(None)) -> dict[str, torch.Tensor]:
    flat = {f"emb.{m}": e[rows] for m, e in out.embeddings.items()}
    return flat | {"fused": out.fused[rows], "gates": out.gates[rows], "logits": out.logits[rows]}


def assert_same(a: dict, b: dict, atol: float = 1e-5) -> None:
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=key)


# ---------------------------------------------------------------------------------------------
# YAML files


@pytest.mark.parametrize("gnn", GNNS)
def test_gnn_yaml_builds_a_branch(gnn):
    branch = instantiate(load("gnn", gnn))(7)
    assert isinstance(branch, GNNBranch) and branch.out_dim == 64 and len(branch.layers) == 2
    graph = collate([0, 1]).graphs["image"]
    assert branch(graph, graph.ndata["x"]).shape == (graph.num_nodes(), 64)


def test_gnn_yamls_choose_the_conv_and_aggregation():
    convs = {g: instantiate(load("gnn", g))(7).layers[0].conv for g in GNNS}
    assert isinstance(convs["mlp"], LinearLayer)
    assert isinstance(convs["sage"], SAGELayer) and convs["sage"].aggregator == "mean"
    assert isinstance(convs["gin"], GINLayer) and convs["gin"].aggregator == "sum"
    for name, cls in (("gat", GATLayer), ("gatv2", GATv2Layer)):
        assert isinstance(convs[name], cls) and convs[name].heads >= 4
        assert convs[name].heads * convs[name].width == 64


def test_models_read_no_private_attribute_of_a_library_object():
    """DGL's private attributes (``conv._num_heads``) may change in any release: the layers
    keep their own settings (``heads``, ``width``, ``aggregator``) and read those."""
    import ast

    found = []
    for path in sorted((ROOT / "mmgnn" / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and node.attr != "_target_"):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super":
                continue
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


@pytest.mark.parametrize("mode", SKIPS)
def test_skip_yaml(mode):
    skip = instantiate(load("skip", mode))(in_dim=5, branch_dim=8)
    assert isinstance(skip, ModalitySkip) and skip.mode == mode
    assert skip.out_dim == (16 if mode == "concat" else 8)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_yaml(fusion):
    module = instantiate(load("fusion", fusion))(3, 64)
    assert module.out_dim == 64


def test_model_yaml_defaults_are_small():
    cfg = load("model", "default")
    assert cfg.embed_dim == 64 and cfg.readout == "mean"
    xattn = load("fusion", "xattn")
    assert xattn.num_blocks == 1 and xattn.num_heads == 4 and xattn.attend == "pair"


# ---------------------------------------------------------------------------------------------
# Every gnn x skip x fusion combination


@pytest.mark.parametrize("gnn,skip,fusion", COMBOS)
def test_forward_shapes_and_gradients(gnn, skip, fusion):
    torch.manual_seed(0)
    model = build_model(gnn, skip, fusion)
    batch = collate(range(N_ITEMS))
    out = model(batch)

    assert out.modalities == tuple(DIMS)
    assert torch.equal(out.present, batch.present)
    for i, m in enumerate(DIMS):
        emb = out.embeddings[m]
        assert emb.shape == (N_ITEMS, EMBED)
        norms = emb.norm(dim=1)
        present = batch.present[:, i]
        torch.testing.assert_close(norms[present], torch.ones(int(present.sum())))
        assert torch.all(emb[~present] == 0)
    assert out.fused.shape == (N_ITEMS, model.fusion.out_dim)
    assert out.gates.shape == (N_ITEMS, len(DIMS)) and out.logits.shape == (N_ITEMS, CLASSES)
    assert torch.all(out.gates[~batch.present] == 0)
    assert torch.all(out.gates[batch.present] > 0)
    for value in outputs_of(out).values():
        assert torch.isfinite(value).all()

    # A loss touching every output (random weights: sums of LayerNorm outputs have no gradient).
    gen = torch.Generator().manual_seed(1)
    loss = sum((v * torch.randn(v.shape, generator=gen)).sum() for v in outputs_of(out).values())
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    for m in DIMS:
        grads = [p.grad.abs().sum() for p in model.branches[m].parameters()]
        assert sum(grads) > 0, m


@pytest.mark.parametrize("gnn,skip,fusion", COMBOS)
def test_absent_modality_features_do_not_matter(gnn, skip, fusion):
    """Items whose ``present`` is set False keep their nodes; changing those nodes' features
    changes nothing, and their gates are exactly 0."""
    torch.manual_seed(0)
    model = build_model(gnn, skip, fusion).eval()
    present = collate(range(N_ITEMS)).present.clone()
    present[0, 1] = False  # item 0 without image
    present[3, 0] = False  # item 3 without text
    perturb = {"image": [0], "text": [3]}
    a = collate(range(N_ITEMS)).with_present(present)
    b = collate(range(N_ITEMS), make_graphs(perturb=perturb)).with_present(present)
    assert not torch.equal(a.graphs["image"].ndata["x"], b.graphs["image"].ndata["x"])
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
    assert_same(outputs_of(out_a), outputs_of(out_b), atol=1e-6)
    assert out_a.gates[0, 1] == 0 and out_a.gates[3, 0] == 0
    assert torch.all(out_a.embeddings["image"][0] == 0) and torch.all(out_a.embeddings["text"][3] == 0)


@pytest.mark.parametrize("gnn,skip,fusion", COMBOS)
def test_outputs_of_an_item_do_not_depend_on_its_batch(gnn, skip, fusion):
    torch.manual_seed(0)
    model = build_model(gnn, skip, fusion).eval()
    with torch.no_grad():
        full = model(collate(range(N_ITEMS)))
        part = model(collate([4, 0, 5]))
    assert_same(outputs_of(full, [4, 0, 5]), outputs_of(part))


@pytest.mark.parametrize("gnn,skip,fusion", COMBOS)
def test_same_seed_same_outputs(gnn, skip, fusion):
    def run() -> dict[str, torch.Tensor]:
        torch.manual_seed(3)
        model = build_model(gnn, skip, fusion)  # train mode: dropout draws from the seed too
        return outputs_of(model(collate(range(N_ITEMS))))

    first, second = run(), run()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.mark.parametrize("gnn", GNNS)
def test_only_message_passing_branches_use_edges(gnn):
    torch.manual_seed(0)
    model = build_model(gnn, "sum", "gated").eval()
    with torch.no_grad():
        chain = model(collate(range(N_ITEMS)))
        star = model(collate(range(N_ITEMS), make_graphs(edges=star_edges)))
    same = all(torch.allclose(chain.embeddings[m], star.embeddings[m], atol=1e-6) for m in DIMS)
    assert same == (gnn == "mlp")


@pytest.mark.parametrize("gnn", GNNS)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_modalities_absent_from_the_whole_batch(gnn, fusion):
    """Item 5 has text only: image and audio are 0-node graphs for the whole batch."""
    torch.manual_seed(0)
    model = build_model(gnn, "sum", fusion)
    out = model(collate([5]))
    assert out.gates[0, 1] == 0 and out.gates[0, 2] == 0 and out.gates[0, 0] > 0
    for value in outputs_of(out).values():
        assert torch.isfinite(value).all()
    out.fused.sum().backward()


@pytest.mark.parametrize("readout", ["max", "sum", "attention"])
def test_other_readouts_in_the_model(readout):
    torch.manual_seed(0)
    model = build_model("gat", "sum", "gated", readout=readout).eval()
    with torch.no_grad():
        full, part = model(collate(range(N_ITEMS))), model(collate([4, 0, 5]))
    assert_same(outputs_of(full, [4, 0, 5]), outputs_of(part))
    assert torch.all(full.embeddings["image"][1] == 0)


def test_model_wires_out_dims_and_names():
    model = build_model("gat", "concat", "xattn")
    for m, d in DIMS.items():
        assert model.skips[m].proj.in_features == d
        assert model.heads[m].in_features == model.skips[m].out_dim == 2 * model.branches[m].out_dim
        assert model.heads[m].out_features == EMBED
    assert model.classifier.in_features == model.fusion.out_dim
    names = {n.split(".")[0] + "." + n.split(".")[1] for n, _ in model.named_parameters() if n.count(".") > 1}
    assert {"branches.text", "skips.text", "heads.text", "fusion.streams"} <= names
    no_classes = instantiate(
        load("model", "default", embed_dim=EMBED),
        modality_dims=DIMS,
        branch=instantiate(load("gnn", "gcn", hidden_dim=HIDDEN)),
        skip=instantiate(load("skip", "none")),
        fusion=instantiate(load("fusion", "concat")),
    )
    assert no_classes.classifier is None and no_classes(collate([0, 1])).logits is None


def test_batch_norm_branch_in_the_model():
    torch.manual_seed(0)
    model = build_model("sage", "sum", "concat", norm="batch")
    assert isinstance(model.branches["text"].layers[0].norm, torch.nn.BatchNorm1d)
    out = model(collate(range(N_ITEMS)))
    out.fused.pow(2).sum().backward()
    assert torch.isfinite(out.fused).all()


def test_rejects_a_batch_with_other_modalities():
    model = build_model("gcn", "none", "concat")
    batch = collate([0, 1])
    with pytest.raises(ValueError, match="modalities"):
        model(replace(batch, modalities=("image", "text", "audio")))


# ---------------------------------------------------------------------------------------------
# Branch, convs, readout, skip, padding, counting


def _branch_by_hand(branch: GNNBranch, graph, x, residual: bool) -> torch.Tensor:
    h = branch.pre(x)
    for layer in branch.layers:
        out = layer.norm(layer.drop(layer.act(layer.conv(graph, h))))
        h = out + layer.shortcut(h) if residual else out
    return branch.post(h)


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("pre_layers", [0, 1])
def test_branch_layer_is_norm_drop_act_conv_plus_residual(norm, residual, pre_layers):
    torch.manual_seed(0)
    branch = GNNBranch(
        7, GATLayer, hidden_dim=8, num_layers=3, pre_layers=pre_layers, post_layers=1,
        activation="gelu", norm=norm, residual=residual,
    ).eval()
    graph = collate(range(N_ITEMS)).graphs["image"]
    x = graph.ndata["x"]
    with torch.no_grad():
        out = branch(graph, x)
        expected = _branch_by_hand(branch, graph, x, residual)
        no_residual = _branch_by_hand(branch, graph, x, residual=False)
    torch.testing.assert_close(out, expected)
    assert out.shape == (graph.num_nodes(), 8) and branch.out_dim == 8
    assert len(branch.layers) == 3 and len(branch.pre) == 3 * pre_layers and len(branch.post) == 3
    if residual:
        assert not torch.allclose(out, no_residual)
        # The first layer's input is 7 wide without a pre-MLP: a projection shortcut.
        first = branch.layers[0].shortcut
        assert isinstance(first, torch.nn.Linear if pre_layers == 0 else torch.nn.Identity)
    else:
        assert all(layer.shortcut is None for layer in branch.layers)


def test_branch_rejects_bad_options():
    with pytest.raises(ValueError, match="num_layers"):
        GNNBranch(4, GATLayer, hidden_dim=8, num_layers=0)
    with pytest.raises(ValueError, match="norm"):
        GNNBranch(4, GATLayer, hidden_dim=8, norm="group")
    with pytest.raises(ValueError, match="activation"):
        GNNBranch(4, GATLayer, hidden_dim=8, activation="swish2")
    with pytest.raises(ValueError, match="multiple of heads"):
        GATLayer(4, 10, heads=4)
    with pytest.raises(ValueError, match="aggregator"):
        SAGELayer(4, 8, aggregator="sum")
    with pytest.raises(ValueError, match="aggregator"):
        GINLayer(4, 8, aggregator="lstm")


@pytest.mark.parametrize("aggregator", ["mean", "max"])
def test_gin_aggregator_is_used(aggregator):
    torch.manual_seed(0)
    layer = GINLayer(2, 4, aggregator=aggregator)
    graph = dgl.graph(([1, 2], [0, 0]), num_nodes=3)
    h = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 0.0]])
    neighbours = h[1:].mean(0) if aggregator == "mean" else h[1:].max(0).values
    torch.testing.assert_close(layer(graph, h)[0], layer.conv.apply_func(h[0] + neighbours))


def _readout_graph():
    graphs = [dgl.graph(([0], [1]), num_nodes=3), dgl.graph(([], []), num_nodes=0), dgl.graph(([], []), num_nodes=2)]
    return dgl.batch(graphs)


@pytest.mark.parametrize("kind", ["mean", "max", "sum"])
def test_readout_values_and_empty_graphs(kind):
    graph = _readout_graph()
    h = torch.randn(5, 4)
    reduce = {"mean": lambda t: t.mean(0), "max": lambda t: t.max(0).values, "sum": lambda t: t.sum(0)}[kind]
    expected = torch.stack([reduce(h[:3]), torch.zeros(4), reduce(h[3:])])
    torch.testing.assert_close(Readout(kind, 4)(graph, h), expected)


def test_attention_readout_is_a_convex_combination():
    torch.manual_seed(0)
    readout = Readout("attention", 4)
    graph = _readout_graph()
    h = torch.randn(5, 4)
    h[3:] = torch.tensor([1.0, -2.0, 3.0, 0.5])  # graph 2: identical nodes -> that vector
    out = readout(graph, h)
    torch.testing.assert_close(out[2], h[3])
    assert torch.all(out[1] == 0)
    weights = torch.softmax(readout.pool.gate_nn(h[:3]).squeeze(-1), 0)
    torch.testing.assert_close(out[0], weights @ h[:3])
    empty = dgl.batch([dgl.graph(([], []), num_nodes=0)] * 2)
    assert torch.all(readout(empty, torch.zeros(0, 4)) == 0)
    with pytest.raises(ValueError, match="readout"):
        Readout("median", 4)


@pytest.mark.parametrize("shape", [(6,), (2, 3)])
def test_skip_values(shape):
    torch.manual_seed(0)
    h, x = torch.randn(*shape, 8), torch.randn(*shape, 5)
    none, add, cat = (ModalitySkip(mode, 5, 8) for mode in ("none", "sum", "concat"))
    assert none.out_dim == 8 and add.out_dim == 8 and cat.out_dim == 16
    assert torch.equal(none(h, x), h) and count_parameters(none) == 0
    torch.testing.assert_close(add(h, x), h + add.proj(x))
    torch.testing.assert_close(cat(h, x), torch.cat([h, cat.proj(x)], -1))
    assert add.proj.in_features == 5 and add.proj.out_features == 8
    with pytest.raises(ValueError, match="skip mode"):
        ModalitySkip("gated", 5, 8)


def test_model_skip_projects_the_original_node_features():
    """At node level the head sees skip(branch(x), x), with x the ORIGINAL features."""
    torch.manual_seed(0)
    model = build_model("gcn", "sum", "concat", projection="mlp").eval()
    batch = collate(range(N_ITEMS))
    graph = batch.graphs["audio"]
    x = graph.ndata["x"]
    with torch.no_grad():
        h = model.branches["audio"](graph, x)
        tokens = model.heads["audio"](h + model.skips["audio"].proj(x))
        pooled = model.readouts["audio"](graph, tokens)
        projected = model.projections["audio"](pooled)
        expected = torch.nn.functional.normalize(projected, dim=-1) * batch.present[:, 2:3]
        torch.testing.assert_close(model(batch).embeddings["audio"], expected)
        # Fusion reads the pooled vector, not the projection the contrastive loss shapes.
        assert not torch.allclose(projected, pooled)
    bare = instantiate(
        load("model", "default", embed_dim=EMBED), modality_dims=DIMS,
        branch=instantiate(load("gnn", "gcn", hidden_dim=HIDDEN)),
        skip=instantiate(load("skip", "sum")), fusion=instantiate(load("fusion", "concat")),
    )
    assert isinstance(bare.projections["audio"], torch.nn.Identity)
    with pytest.raises(Exception, match="projection must be one of"):  # Hydra wraps the ValueError
        build_model("gcn", "sum", "concat", projection="deep")


def test_pad_tokens_places_every_node_and_masks_the_rest():
    graph = collate(range(N_ITEMS)).graphs["image"]
    counts = NODES["image"]
    h = torch.arange(sum(counts) * 2, dtype=torch.float32).reshape(-1, 2) + 1
    present = torch.tensor([True, True, True, False, True, True])
    tokens, mask = pad_tokens(graph, h, present)
    assert tokens.shape == (N_ITEMS, max(counts), 2)
    start = 0
    for b, n in enumerate(counts):
        if present[b]:
            torch.testing.assert_close(tokens[b, :n], h[start : start + n])
        assert mask[b].sum() == (n if present[b] else 0) and mask[b, :n].all() == bool(present[b])
        assert torch.all(tokens[b][~mask[b]] == 0)
        start += n
    empty, empty_mask = pad_tokens(dgl.batch([dgl.graph(([], []), num_nodes=0)] * 2), torch.zeros(0, 2), present[:2])
    assert empty.shape == (2, 1, 2) and not empty_mask.any()


def test_count_parameters_and_trainable_only():
    model = build_model("gin", "sum", "lowrank")
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == total
    text = sum(p.numel() for p in model.branches["text"].parameters())
    model.branches["text"].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - text
    assert count_parameters(model) == total


def test_hidden_dim_for_budget_is_the_closest_count():
    def build(hidden: int) -> GNNBranch:
        return GNNBranch(16, GATLayer, hidden_dim=hidden, num_layers=2)

    target = count_parameters(build(40)) + 10
    hidden = hidden_dim_for_budget(build, target, low=4, high=256, multiple_of=4)
    assert hidden % 4 == 0
    gap = abs(count_parameters(build(hidden)) - target)
    for other in range(4, 257, 4):
        assert gap <= abs(count_parameters(build(other)) - target)
    assert hidden == 40
