"""Positional/structural encodings: hand-computed values, node-order invariance, size grouping,
config errors, batching, and how the model reads them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.graphs import ChainGraph, ModalityGraphs
from mmgnn.data.pe import (
    IndexEncoding,
    LaplacianEncoding,
    NoEncoding,
    RandomWalkEncoding,
    SinusoidalEncoding,
    clear_pe_cache,
    encodings_from_config,
)
from mmgnn.data.pipeline import prepare_data
from mmgnn.models import MultimodalGNN
from mmgnn.models.branch import GNNBranch
from mmgnn.models.convs import LinearLayer
from mmgnn.models.fusion import ConcatFusion
from mmgnn.models.skip import ModalitySkip

pytestmark = pytest.mark.usefixtures("one_thread")


def graphs_of(items: list[tuple[int, list[tuple[int, int]]]], pos=None) -> ModalityGraphs:
    """ModalityGraphs from (node count, undirected edge list) per item."""
    counts = [n for n, _ in items]
    ptr = torch.tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.int64)
    src, dst, per = [], [], []
    for _, edges in items:
        both = edges + [(b, a) for a, b in edges]
        src += [a for a, _ in both]
        dst += [b for _, b in both]
        per.append(len(both))
    return ModalityGraphs(
        name="m", x=torch.zeros(int(ptr[-1]), 1), ptr=ptr,
        src=torch.tensor(src, dtype=torch.int64), dst=torch.tensor(dst, dtype=torch.int64),
        edge_ptr=torch.tensor(np.concatenate([[0], np.cumsum(per)]), dtype=torch.int64),
        pos=pos,
    )


PATH4 = (4, [(0, 1), (1, 2), (2, 3)])
TRIANGLE = (3, [(0, 1), (1, 2), (0, 2)])
# 5 nodes, distinct Laplacian eigenvalues (a path 0-1-2-3 with a pendant 4 on node 1).
ODD = (5, [(0, 1), (1, 2), (2, 3), (1, 4)])


def test_laplacian_of_a_4_node_path_is_the_normalised_cosine_basis():
    # L = I - D^-1/2 A D^-1/2 of the path P4 (degrees 1, 2, 2, 1): the random walk D^-1 A has
    # eigenvectors cos(pi k i / 3) (eigenvalue cos(pi k / 3)), so L has eigenvectors
    # sqrt(d_i) cos(pi k i / 3) with eigenvalues 1 - cos(pi k / 3) = 0, 1/2, 3/2, 2.
    pe = LaplacianEncoding(k=4).compute(graphs_of([PATH4]))
    i = torch.arange(4, dtype=torch.float64)
    degree = torch.tensor([1.0, 2.0, 2.0, 1.0], dtype=torch.float64)
    for col, k in enumerate((1, 2, 3)):
        expected = degree.sqrt() * torch.cos(math.pi * k * i / 3)
        expected = expected / expected.norm()
        got = pe[:, col].double()
        sign = torch.sign(got @ expected)
        torch.testing.assert_close(got * sign, expected, atol=1e-6, rtol=0)
    assert torch.all(pe[:, 3] == 0)  # only n - 1 = 3 nonzero eigenvalues: padded


def normalised_laplacian_np(n: int, edges: list[tuple[int, int]]) -> np.ndarray:
    """I - D^-1/2 A D^-1/2 by hand, with zero rows for isolated nodes (Chung 1997)."""
    a = np.zeros((n, n))
    for u, v in edges:
        a[u, v] = a[v, u] = 1.0
    degree = a.sum(1)
    scale = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1)), 0.0)
    return np.diag((degree > 0).astype(float)) - scale[:, None] * a * scale[None, :]


# Two disjoint 3-node paths in one item, and a 3-node path plus an isolated node.
TWO_PATHS = (6, [(0, 1), (1, 2), (3, 4), (4, 5)])
PATH3_AND_ISOLATED = (4, [(0, 1), (1, 2)])
PATH6 = (6, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])


@pytest.mark.parametrize(
    "item, other, eigenvalues",
    [
        # P3 (degrees 1, 2, 1) has eigenvalues 0, 1, 2; two copies: 0, 0, 1, 1, 2, 2.
        (TWO_PATHS, PATH6, [1.0, 1.0, 2.0, 2.0]),
        # P3's 0, 1, 2 and the isolated node's 0 (its own component).
        (PATH3_AND_ISOLATED, PATH4, [1.0, 2.0]),
        # a path of 6 nodes is connected: 1 - cos(pi k / 5), k = 1..5.
        (PATH6, TWO_PATHS, [1 - math.cos(math.pi * k / 5) for k in range(1, 6)]),
    ],
)
def test_laplacian_skips_every_component_indicator(item, other, eigenvalues):
    """Each connected component adds a zero eigenvalue whose eigenvector only marks the
    component; none is kept, the kept columns are orthonormal eigenvectors of the normalised
    Laplacian with the hand-computed nonzero eigenvalues, and the rest of the k columns are
    padding. The item is batched after ``other``, of its size and with a different number of
    components, so the components are counted per item."""
    k = 6
    pe = LaplacianEncoding(k=k).compute(graphs_of([other, item]))[other[0]:]
    kept, padding = pe[:, : len(eigenvalues)].double().numpy(), pe[:, len(eigenvalues):]
    assert torch.all(padding == 0) and padding.shape[1] == k - len(eigenvalues)
    laplacian = normalised_laplacian_np(*item)
    np.testing.assert_allclose(laplacian @ kept, kept * np.array(eigenvalues), atol=1e-5)
    np.testing.assert_allclose(kept.T @ kept, np.eye(len(eigenvalues)), atol=1e-5)
    assert np.all(np.linalg.norm(laplacian @ kept, axis=0) > 0.1)  # none in the null space


def test_rwse_of_a_triangle():
    # P = (J - I) / 2: returns after 1, 2, 3 steps are 0, 1/2, 1/4 for every node.
    pe = RandomWalkEncoding(steps=3).compute(graphs_of([TRIANGLE]))
    torch.testing.assert_close(pe, torch.tensor([[0.0, 0.5, 0.25]] * 3))


def test_sinusoidal_values_at_known_positions():
    pos = torch.tensor([[0.0, 2.0], [math.pi / 2, 0.0]])
    enc = SinusoidalEncoding(num_frequencies=2, base=100.0, scale=1.0)  # w = 1, 0.1
    pe = enc.compute(graphs_of([(2, [(0, 1)])], pos=pos))
    assert pe.shape == (2, 8)  # 2 columns x (2 sines + 2 cosines)
    p = pos.double()
    expected = torch.cat(
        [torch.sin(p[:, :1] * torch.tensor([1.0, 0.1], dtype=torch.float64)),
         torch.cos(p[:, :1] * torch.tensor([1.0, 0.1], dtype=torch.float64)),
         torch.sin(p[:, 1:] * torch.tensor([1.0, 0.1], dtype=torch.float64)),
         torch.cos(p[:, 1:] * torch.tensor([1.0, 0.1], dtype=torch.float64))], dim=1).float()
    torch.testing.assert_close(pe, expected)
    assert pe[1, 0] == pytest.approx(1.0) and pe[0, 2] == pytest.approx(1.0)


def permuted(item: tuple[int, list], perm: list[int]) -> tuple[int, list]:
    """The same graph with node ``i`` renamed ``perm[i]``."""
    return item[0], [(perm[a], perm[b]) for a, b in item[1]]


def test_rwse_and_laplacian_follow_a_node_permutation():
    perm = [3, 0, 4, 1, 2]
    base, moved = graphs_of([ODD]), graphs_of([permuted(ODD, perm)])
    rw, rw_moved = RandomWalkEncoding(steps=6).compute(base), RandomWalkEncoding(steps=6).compute(moved)
    torch.testing.assert_close(rw_moved[perm], rw)
    lap, lap_moved = LaplacianEncoding(k=4).compute(base), LaplacianEncoding(k=4).compute(moved)
    signs = torch.sign((lap_moved[perm] * lap).sum(0))
    torch.testing.assert_close(lap_moved[perm] * signs, lap, atol=1e-5, rtol=0)


def test_items_of_different_sizes_match_one_item_at_a_time():
    items = [PATH4, TRIANGLE, ODD, (1, []), PATH4, (0, [])]
    for enc in (RandomWalkEncoding(steps=4), LaplacianEncoding(k=3)):
        together = enc.compute(graphs_of(items))
        alone = torch.cat([enc.compute(graphs_of([it])) for it in items])
        if isinstance(enc, LaplacianEncoding):  # signs are arbitrary per item and column
            together, alone = together.abs(), alone.abs()
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    assert torch.all(LaplacianEncoding(k=3).compute(graphs_of([(1, [])])) == 0)


def test_index_encoding_and_its_limit():
    pe = IndexEncoding(dim=4, max_index=8).compute(graphs_of([TRIANGLE, PATH4]))
    assert pe[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="max_index=3"):
        IndexEncoding(max_index=3).compute(graphs_of([PATH4]))


def entry(name: str, **options) -> dict:
    """A pe entry as conf/pe/encoding/<name>.yaml writes it: ``_target_`` + options."""
    cls = {"none": NoEncoding, "sinusoidal": SinusoidalEncoding, "laplacian": LaplacianEncoding,
           "rwse": RandomWalkEncoding, "index": IndexEncoding}[name]
    return {"_target_": f"mmgnn.data.pe.{cls.__name__}", **options}


def test_config_errors_name_the_modality_and_the_option():
    has_pos = {"text": False, "image": True}
    with pytest.raises(ValueError, match="'text'.*sinusoidal.*pos"):
        encodings_from_config(["text", "image"], has_pos, entry("sinusoidal"))
    fallback = encodings_from_config(["text", "image"], has_pos, entry("sinusoidal"),
                                     without_pos=entry("rwse", steps=3))
    assert fallback == {"text": RandomWalkEncoding(3), "image": SinusoidalEncoding()}
    per = encodings_from_config(["text", "image"], has_pos, entry("none"),
                                {"image": entry("laplacian", k=2)})
    assert per == {"text": NoEncoding(), "image": LaplacianEncoding(2)}
    with pytest.raises(ValueError, match="'image'.*cannot load pe encoding 'mmgnn.data.pe.LapPE'"):
        encodings_from_config(["image"], has_pos, {"_target_": "mmgnn.data.pe.LapPE"})
    with pytest.raises(ValueError, match="'image'.*is not a mmgnn.data.pe.Encoding subclass"):
        encodings_from_config(["image"], has_pos, {"_target_": "mmgnn.data.graphs.ChainGraph"})
    with pytest.raises(ValueError, match="names its encoding with _target_ .`kind: rwse` is the old form"):
        encodings_from_config(["image"], has_pos, {"kind": "rwse"})
    with pytest.raises(ValueError, match="'rwse' .*has no options \\['k'\\]"):
        encodings_from_config(["image"], has_pos, entry("rwse", k=2))
    with pytest.raises(ValueError, match="'image'.*rwse steps must be an integer"):
        encodings_from_config(["image"], has_pos, entry("rwse", steps=0))
    with pytest.raises(ValueError, match="does not have"):
        encodings_from_config(["image"], has_pos, entry("none"), {"audio": entry("index")})


def test_every_encoding_option_file_builds_its_class_with_the_class_defaults():
    """conf/pe/encoding/<name>.yaml names the class whose ``kind`` is <name>, with its fields."""
    from dataclasses import fields

    from omegaconf import OmegaConf

    from mmgnn.config import CONF_DIR
    from mmgnn.data.pe import Encoding, make_encoding

    files = sorted((CONF_DIR / "pe" / "encoding").glob("*.yaml"))
    assert {f.stem for f in files} == {c.kind for c in Encoding.__subclasses__()}
    for file in files:
        options = OmegaConf.to_container(OmegaConf.load(file))
        encoding = make_encoding(options, file.name)
        assert encoding.kind == file.stem
        assert set(options) - {"_target_"} == {f.name for f in fields(encoding)}
        assert encoding == type(encoding)()  # the file repeats the defaults


def tiny_dataset() -> MultimodalDataset:
    import pandas as pd

    counts = np.array([3, 4, 3, 5])
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rng = np.random.default_rng(0)
    local = np.arange(ptr[-1]) - np.repeat(ptr[:-1], counts)
    mods = {m: ModalityData(m, rng.normal(size=(ptr[-1], 3)).astype(np.float32), ptr,
                            local[:, None].astype(np.float32)) for m in ("a", "b")}
    return MultimodalDataset(
        items=pd.DataFrame({"item_id": list("wxyz")}), modalities=mods, labels=np.array([0, 1, 0, 1]),
        label_names=["0", "1"], groups=np.zeros(4, dtype=np.int64), group_names=["g"],
        split=np.array(["train", "train", "val", "test"]),
    )


def test_prepared_batches_carry_each_items_encoding_and_the_cache_keys_the_encoding():
    clear_pe_cache()
    specs = {"a": ChainGraph(), "b": ChainGraph()}
    encodings = {"a": RandomWalkEncoding(steps=2), "b": IndexEncoding(dim=2)}
    data = prepare_data(tiny_dataset(), specs, standardize=False, encodings=encodings)
    assert data.pe_dims == {"a": 2, "b": 1}
    batch = data.collator([3, 1])
    assert batch.graphs["b"].ndata["pe"][:, 0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    # chain of 5 nodes, end node: returns after 1, 2 steps are 0 and 1/2.
    assert batch.graphs["a"].ndata["pe"][0].tolist() == [0.0, 0.5]
    other = prepare_data(tiny_dataset(), specs, standardize=False, encodings={"a": RandomWalkEncoding(steps=3)})
    assert other.pe["a"].shape[1] == 3 and "b" not in other.pe


def model_for(encodings, combine="concat", readout="mean") -> tuple[MultimodalGNN, object]:
    specs = {"a": ChainGraph(), "b": ChainGraph()}
    data = prepare_data(tiny_dataset(), specs, standardize=False, encodings=encodings)
    torch.manual_seed(0)
    model = MultimodalGNN(
        {"a": 3, "b": 3},
        branch=lambda d: GNNBranch(d, LinearLayer, hidden_dim=8, num_layers=1),
        skip=lambda in_dim, branch_dim: ModalitySkip("sum", in_dim, branch_dim),
        fusion=lambda n, d: ConcatFusion(n, d),
        readout=readout, embed_dim=8, num_classes=2,
        encodings=data.encodings, pe_dims=data.pe_dims, pe_combine=combine,
    )
    return model, data.collator([0, 1, 2, 3])


def test_without_encodings_the_model_is_unchanged():
    plain, batch = model_for({})
    none, _ = model_for({"a": NoEncoding()})
    assert len(none.encoders) == 0
    plain.eval(), none.eval()
    torch.testing.assert_close(plain(batch).logits, none(batch).logits)


def test_concat_and_add_widths_and_positions_change_the_output():
    cat, batch = model_for({"a": SinusoidalEncoding(num_frequencies=2)})
    assert cat.branches["a"].in_dim == 3 + 4 and cat.branches["b"].in_dim == 3
    add, _ = model_for({"a": SinusoidalEncoding(num_frequencies=2)}, combine="add")
    assert add.branches["a"].in_dim == 3
    cat.eval()
    before = cat(batch).embeddings["a"]
    batch.graphs["a"].ndata["pe"] = batch.graphs["a"].ndata["pe"].flip(0)  # positions moved
    assert not torch.allclose(cat(batch).embeddings["a"], before)


def test_laplacian_signs_flip_per_item_in_training_only():
    model, batch = model_for({"a": LaplacianEncoding(k=2)})
    pe = batch.graphs["a"].ndata["pe"]
    encoder = model.encoders["a"]
    model.eval()
    assert torch.equal(encoder.features(batch.graphs["a"], pe), pe)
    model.train()
    torch.manual_seed(3)
    flipped = torch.stack([encoder.features(batch.graphs["a"], pe) for _ in range(20)])
    ratio = flipped / torch.where(pe == 0, torch.ones_like(pe), pe)
    assert set(ratio[:, pe != 0].unique().tolist()) == {-1.0, 1.0}
    counts = batch.graphs["a"].batch_num_nodes().tolist()
    for chunk, item_pe in zip(ratio.split(counts, dim=1), pe.split(counts)):
        for col in range(pe.shape[1]):  # one sign per item and column
            signs = chunk[:, item_pe[:, col] != 0, col]
            assert torch.all(signs == signs[:, :1])
    with pytest.raises(ValueError, match="combine"):
        model_for({"a": LaplacianEncoding(k=2)}, combine="sum")


def test_a_folder_dataset_gets_the_global_default_pe_auto_which_encodes_where_pos_is():
    """``data=folder`` chooses no encoding of its own: it gets the default ``pe=auto`` (chosen
    on validation across the suite, docs/results/suite_positions.md): a modality with ``pos``
    gets sinusoidal encodings counted in steps, one without ``pos`` none (no error); ``pe=``
    overrides."""
    from omegaconf import OmegaConf

    from experiments.bench_pe import compose_cfg
    from mmgnn.data.pe import dataset_encodings

    folder = ["data=folder", "data.path=/nowhere"]
    data = tiny_dataset()
    data.modalities["b"] = ModalityData("b", data.modalities["b"].x, data.modalities["b"].ptr, None)
    for overrides in (folder, [], folder + ["pe=auto"]):
        pe = OmegaConf.to_container(compose_cfg(overrides).pe, resolve=True)
        assert dataset_encodings(pe, data) == {"a": SinusoidalEncoding(num_frequencies=8, unit="spacing"),
                                               "b": NoEncoding()}
    none = OmegaConf.to_container(compose_cfg(folder + ["pe=none"]).pe, resolve=True)
    assert dataset_encodings(none, tiny_dataset()) == {"a": NoEncoding(), "b": NoEncoding()}
    rwse = OmegaConf.to_container(compose_cfg(folder + ["pe=rwse"]).pe, resolve=True)
    assert rwse["default"]["_target_"] == "mmgnn.data.pe.RandomWalkEncoding"


def test_spacing_unit_reads_positions_in_steps_whatever_their_unit():
    """``unit=spacing`` (``pe=auto``) divides each pos column by its median step within an
    item: frames at a 10 ms hop in seconds encode as the frame indices do; a raw encoding of
    the seconds barely varies along the item (the angle of its fastest frequency moves by
    0.01 rad per frame), the step-counted one moves by 1 rad per frame."""
    import torch

    from mmgnn.data.graphs.base import ModalityGraphs
    from mmgnn.data.pe import pos_spacing

    def graphs(pos):
        n = pos.shape[0]
        empty = torch.zeros(0, dtype=torch.int64)
        return ModalityGraphs("audio", torch.zeros(n, 1), torch.tensor([0, 5, n]), empty, empty,
                              torch.zeros(3, dtype=torch.int64), pos=pos)

    frames = torch.cat([torch.arange(5.0), torch.arange(7.0)])[:, None]
    seconds = frames * 0.01
    assert pos_spacing(seconds, torch.tensor([0, 5, 12])).tolist() == pytest.approx([0.01])
    spaced = SinusoidalEncoding(num_frequencies=4, unit="spacing")
    raw = SinusoidalEncoding(num_frequencies=4)
    torch.testing.assert_close(spaced.compute(graphs(seconds)), raw.compute(graphs(frames)))
    first_sine = raw.compute(graphs(seconds))[:5, 0]
    assert (first_sine[1:] - first_sine[:-1]).abs().max() < 0.011
    # steps across an item boundary (4 -> 0) are not steps: a grid's col column still reads 1
    grid = torch.tensor([[r, c] for r in range(3) for c in range(3)], dtype=torch.float32) * 16
    assert pos_spacing(grid, torch.tensor([0, 9])).tolist() == [16.0, 16.0]
