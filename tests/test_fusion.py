"""Fusion metamodels on hand-made tokens, masks and pooled vectors.

5 items x 3 modalities: item 0 has every modality, item 1 lacks the 2nd, item 2 has only the
1st, item 3 lacks the 1st, item 4 has none (a degenerate item that must stay finite).

The contract tests run on every option of the ``fusion`` config group (``conf/fusion/*.yaml``
and ``$MMGNN_CONFIG_PATH``), each built from its YAML: a new fusion (one class + one YAML) is
tested without editing this file.
"""
from __future__ import annotations

import functools
import itertools

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from mmgnn.config import CONF_DIR, config_search_path, group_options
from mmgnn.models import count_parameters
from mmgnn.models.fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    CrossModalBlock,
    Fusion,
    GatedFusion,
    LowRankFusion,
    masked_mean,
    presence_gates,
    weighted_sum,
    zero_missing,
)

B, M, D = 5, 3, 8
LENGTHS = (4, 3, 5)
PRESENT = torch.tensor(
    [[1, 1, 1], [1, 0, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.bool
)
# Real tokens per item and modality (0 where missing).
COUNTS = torch.tensor([[4, 3, 5], [2, 0, 1], [1, 0, 0], [0, 3, 2], [0, 0, 0]])

# Options of a fusion that change its structure, covered beside its YAML defaults.
VARIANTS = {"xattn": [("num_blocks=2",), ("attend=all",)], "lowrank": [("rank=3",)]}


def fusion_cases() -> list[tuple[str, tuple[str, ...]]]:
    """(option of the fusion group, overrides of its fields): every option as its YAML has it,
    then the :data:`VARIANTS`."""
    options = group_options("fusion")
    return [(name, ()) for name in options] + [
        (name, overrides) for name in options for overrides in VARIANTS.get(name, [])
    ]


@functools.cache
def fusion_config(name: str, overrides: tuple[str, ...] = ()) -> DictConfig:
    """``conf/fusion/<name>.yaml`` (or one in ``$MMGNN_CONFIG_PATH``) composed by Hydra."""
    GlobalHydra.instance().clear()
    extra = ",".join(config_search_path()[1:])
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            overrides=[f"+fusion={name}", f"hydra.searchpath=[{extra}]"] + [f"fusion.{o}" for o in overrides]
        )
    GlobalHydra.instance().clear()
    return cfg.fusion


def build(case: tuple[str, tuple[str, ...]], num_modalities: int = M) -> Fusion:
    """The fusion of ``case`` as the run builds it: ``instantiate(cfg.fusion)(M, dim)``."""
    return instantiate(fusion_config(*case))(num_modalities, D)


CASES = fusion_cases()
CASE_IDS = [" ".join((name,) + overrides) for name, overrides in CASES]
pytestmark = pytest.mark.usefixtures("one_thread")


def make_inputs(seed: int = 0, counts: torch.Tensor = COUNTS, present: torch.Tensor = PRESENT, lengths=LENGTHS):
    """tokens / token_mask / pooled / present as MultimodalGNN passes them: padded and missing
    entries hold zeros, rows of missing modalities in ``pooled`` are zero."""
    gen = torch.Generator().manual_seed(seed)
    tokens, masks = [], []
    for m, length in enumerate(lengths):
        mask = (torch.arange(length) < counts[:, m : m + 1]) & present[:, m : m + 1]
        tok = torch.randn(len(counts), length, D, generator=gen) * mask.unsqueeze(-1)
        tokens.append(tok)
        masks.append(mask)
    pooled = torch.randn(len(counts), M, D, generator=gen) * present.unsqueeze(-1)
    return tokens, masks, pooled, present


def garbage_everywhere_unused(tokens, masks, pooled, present, seed: int = 1):
    """The same inputs with large random values at every padded / missing position."""
    gen = torch.Generator().manual_seed(seed)
    noisy_tokens = [
        torch.where(mask.unsqueeze(-1), tok, 1e3 * torch.randn(tok.shape, generator=gen))
        for tok, mask in zip(tokens, masks)
    ]
    noisy_pooled = torch.where(present.unsqueeze(-1), pooled, 1e3 * torch.randn(pooled.shape, generator=gen))
    return noisy_tokens, masks, noisy_pooled, present


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_shapes_gates_and_gradients(case):
    torch.manual_seed(0)
    fusion = build(case)
    fused, gates = fusion(*make_inputs())
    assert fused.shape == (B, fusion.out_dim) and gates.shape == (B, M)
    assert torch.isfinite(fused).all() and torch.isfinite(gates).all()
    assert torch.all(gates[~PRESENT] == 0)
    assert torch.all((gates[PRESENT] > 0) & (gates[PRESENT] <= 1))
    gen = torch.Generator().manual_seed(2)
    (fused * torch.randn(fused.shape, generator=gen)).sum().add(gates.sum()).backward()
    for pname, param in fusion.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_padding_and_missing_modalities_do_not_matter(case):
    """Garbage in padded token positions, in the tokens of missing modalities and in their
    pooled rows leaves fused and gates exactly unchanged."""
    torch.manual_seed(0)
    fusion = build(case).eval()
    inputs = make_inputs()
    with torch.no_grad():
        clean = fusion(*inputs)
        noisy = fusion(*garbage_everywhere_unused(*inputs))
    assert torch.equal(clean[0], noisy[0]) and torch.equal(clean[1], noisy[1])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fused_depends_only_on_present_modalities(case):
    """Dropping a modality (present False) while its data stays equals never having had it;
    the remaining modalities still matter."""
    torch.manual_seed(0)
    fusion = build(case).eval()
    tokens, masks, pooled, present = make_inputs()
    dropped = present.clone()
    dropped[0, 2] = False  # item 0 loses its 3rd modality; its tokens and pooled row stay
    masks_dropped = [mask & dropped[:, m : m + 1] for m, mask in enumerate(masks)]
    with torch.no_grad():
        kept_data = fusion(tokens, masks_dropped, pooled, dropped)
        changed = [t.clone() for t in tokens]
        changed[2][0] = 50.0
        changed_pooled = pooled.clone()
        changed_pooled[0, 2] = 50.0
        changed_data = fusion(changed, masks_dropped, changed_pooled, dropped)
        other = pooled.clone()
        other[0, 0] += torch.linspace(-1.0, 1.0, D)  # not a constant shift: LayerNorm removes those
        other_tokens = [t.clone() for t in tokens]
        other_tokens[0][0, : COUNTS[0, 0]] += torch.linspace(-1.0, 1.0, D)
        moved = fusion(other_tokens, masks_dropped, other, dropped)
    torch.testing.assert_close(kept_data[0], changed_data[0], rtol=0, atol=0)
    assert kept_data[1][0, 2] == 0
    assert not torch.allclose(kept_data[0][0], moved[0][0])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_items_are_fused_independently(case):
    torch.manual_seed(0)
    fusion = build(case).eval()
    tokens, masks, pooled, present = make_inputs()
    rows = [3, 0]
    # The sub-batch is padded to other lengths (shorter for modality 0, longer for 2).
    lengths = (int(COUNTS[rows, 0].max()), LENGTHS[1], LENGTHS[2] + 2)
    sub_tokens = [torch.zeros(len(rows), n, D) for n in lengths]
    for m, n in enumerate(lengths):
        k = min(n, LENGTHS[m])
        sub_tokens[m][:, :k] = tokens[m][rows, :k]
    sub_masks = [(torch.arange(n) < COUNTS[rows, m : m + 1]) & present[rows, m : m + 1] for m, n in enumerate(lengths)]
    with torch.no_grad():
        full = fusion(tokens, masks, pooled, present)
        part = fusion(sub_tokens, sub_masks, pooled[rows], present[rows])
    torch.testing.assert_close(full[0][rows], part[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(full[1][rows], part[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_two_modalities_and_a_modality_absent_from_the_batch(case):
    torch.manual_seed(0)
    fusion_m2 = build(case, num_modalities=2)
    present = torch.tensor([[1, 0], [1, 0]], dtype=torch.bool)
    tokens = [torch.randn(2, 3, D), torch.zeros(2, 0, D)]  # modality 1: no node in the batch
    masks = [torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 0, dtype=torch.bool)]
    pooled = torch.randn(2, 2, D) * present.unsqueeze(-1)
    fused, gates = fusion_m2(tokens, masks, pooled, present)
    assert torch.isfinite(fused).all() and torch.all(gates[:, 1] == 0) and torch.all(gates[:, 0] > 0)


def test_presence_gates():
    gates = presence_gates(PRESENT)
    expected = torch.tensor([[1 / 3] * 3, [0.5, 0, 0.5], [1, 0, 0], [0, 0.5, 0.5], [0, 0, 0]])
    torch.testing.assert_close(gates, expected)
    _, concat_gates = ConcatFusion(M, D)(*make_inputs())
    torch.testing.assert_close(concat_gates, expected)


def test_concat_is_an_mlp_of_the_normalised_concatenation():
    torch.manual_seed(0)
    fusion = ConcatFusion(M, D, hidden_dim=6, out_dim=5, num_layers=3).eval()
    tokens, masks, pooled, present = make_inputs()
    normed = torch.stack([fusion.in_norm.norms[m](pooled[:, m]) for m in range(M)], 1) * present.unsqueeze(-1)
    fused, _ = fusion(tokens, masks, pooled, present)
    torch.testing.assert_close(fused, fusion.out_norm(fusion.mlp(normed.flatten(1))))
    assert fusion.out_dim == 5 and sum(isinstance(l, torch.nn.Linear) for l in fusion.mlp) == 3


def test_gated_is_a_gmu():
    """fused = LN(sum_m z_m tanh(W_m x_m)), z = sigmoid(W_z [x_1..x_M]) zeroed where missing."""
    torch.manual_seed(0)
    fusion = GatedFusion(M, D).eval()
    tokens, masks, pooled, present = make_inputs()
    x = torch.stack([fusion.in_norm.norms[m](pooled[:, m]) for m in range(M)], 1) * present.unsqueeze(-1)
    z = torch.sigmoid(fusion.gate(x.flatten(1))) * present
    h = torch.stack([torch.tanh(fusion.transforms[m](x[:, m])) for m in range(M)], 1)
    fused, gates = fusion(tokens, masks, pooled, present)
    torch.testing.assert_close(gates, z)
    torch.testing.assert_close(fused, fusion.out_norm((z.unsqueeze(-1) * h).sum(1)))


def test_lowrank_equals_full_tensor_fusion():
    """LMF (Liu et al. 2018): the rank-r factors are a decomposition of the weight tensor of the
    outer product z_1 x z_2 x z_3 (z_m = [x_m, 1]); build that tensor and compare."""
    torch.manual_seed(0)
    dim, out, rank = 3, 4, 2
    fusion = LowRankFusion(M, dim, rank=rank, out_dim=out).eval()
    present = PRESENT
    pooled = torch.randn(B, M, dim) * present.unsqueeze(-1)
    x = torch.stack([fusion.in_norm.norms[m](pooled[:, m]) for m in range(M)], 1) * present.unsqueeze(-1)
    z = torch.cat([x, torch.ones(B, M, 1)], -1)
    outer = torch.einsum("bi,bj,bk->bijk", z[:, 0], z[:, 1], z[:, 2]).flatten(1)  # [B, (dim+1)^3]
    f = fusion.factors  # [M, r, dim + 1, out]
    weight = torch.einsum("r,rio,rjo,rko->ijko", fusion.rank_weights, f[0], f[1], f[2]).reshape(-1, out)
    expected = fusion.out_norm(outer @ weight + fusion.bias)
    fused, gates = fusion([], [], pooled, present)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gates, presence_gates(present))
    assert count_parameters(fusion) == M * rank * (dim + 1) * out + rank + out + 2 * M * dim + 2 * out


@pytest.mark.parametrize("num_modalities", [2, 3, 4])
@pytest.mark.parametrize("num_blocks", [1, 2])
def test_xattn_has_one_stack_per_ordered_pair(num_modalities, num_blocks):
    pair = CrossAttentionFusion(num_modalities, D, num_blocks=num_blocks)
    assert len(pair.streams) == num_modalities * (num_modalities - 1)
    assert sorted(pair.directions) == [
        (t, s) for t, s in itertools.product(range(num_modalities), repeat=2) if t != s
    ]
    blocks = [b for b in pair.modules() if isinstance(b, CrossModalBlock)]
    assert len(blocks) == num_modalities * (num_modalities - 1) * num_blocks
    assert all(b.attn.num_heads >= 4 and b.attn.batch_first for b in blocks)
    every = CrossAttentionFusion(num_modalities, D, num_blocks=num_blocks, attend="all")
    assert len(every.streams) == num_modalities
    assert sum(isinstance(b, CrossModalBlock) for b in every.modules()) == num_modalities * num_blocks


def test_xattn_rejects_bad_options():
    with pytest.raises(ValueError, match="attend"):
        CrossAttentionFusion(M, D, attend="self")
    with pytest.raises(ValueError, match="2 modalities"):
        CrossAttentionFusion(1, D)


def test_cross_modal_block_without_source_is_only_the_feed_forward():
    """A row whose source keys are all masked: no NaN, and no influence of the source values."""
    torch.manual_seed(0)
    block = CrossModalBlock(D, num_heads=4, ff_mult=2, dropout=0.0).eval()
    target = torch.randn(2, 3, D)
    source = torch.randn(2, 4, D)
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    out = block(target, source, mask)
    other_source = source.clone()
    other_source[1] = 1e4  # the masked row's values, dummy key included
    other_source[0, 2:] = -7.0  # padded keys of row 0
    out_other = block(target, other_source, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, out_other, rtol=0, atol=0)
    torch.testing.assert_close(out[1], target[1] + block.ff(block.norm_ff(target[1])))
    # Row 0 does attend to its source.
    moved = source.clone()
    moved[0, 0] += torch.linspace(-1.0, 1.0, D)
    assert not torch.allclose(block(target, moved, mask)[0], out[0])


def test_xattn_missing_source_stream_matches_target_alone():
    """For an item whose only other modalities are missing (item 2), the pair streams reduce to
    the target's own feed-forward path: the result is the same as with no source tokens at all."""
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(M, D).eval()
    tokens, masks, pooled, present = make_inputs()
    emptied = [tokens[0]] + [torch.zeros_like(t) for t in tokens[1:]]
    with torch.no_grad():
        base = fusion(tokens, masks, pooled, present)
        alone = fusion(emptied, masks, pooled, present)
    torch.testing.assert_close(base[0][2], alone[0][2], rtol=0, atol=0)
    assert torch.equal(base[1][2, 1:], torch.zeros(2))


def test_every_fusion_of_the_config_group_is_tested_from_its_yaml():
    """The case list is the config group: the four fusions, each built by its YAML's target."""
    names = {name for name, _ in CASES}
    assert {"concat", "gated", "lowrank", "xattn"} <= names
    built = {name: type(build((name, ()))) for name in ("concat", "gated", "lowrank", "xattn")}
    assert built == {
        "concat": ConcatFusion, "gated": GatedFusion, "lowrank": LowRankFusion, "xattn": CrossAttentionFusion
    }
    assert build(("xattn", ("attend=all",))).attend == "all"
    assert build(("lowrank", ("rank=3",))).rank == 3


def test_a_fusion_added_by_config_path_joins_the_cases(tmp_path, monkeypatch):
    (tmp_path / "fusion").mkdir()
    (tmp_path / "fusion" / "deepconcat.yaml").write_text(
        "_target_: mmgnn.models.fusion.ConcatFusion\n_partial_: true\nnum_layers: 3\n"
    )
    monkeypatch.setenv("MMGNN_CONFIG_PATH", str(tmp_path))
    assert ("deepconcat", ()) in fusion_cases()
    fusion = build(("deepconcat", ()))
    assert isinstance(fusion, ConcatFusion) and sum(isinstance(l, torch.nn.Linear) for l in fusion.mlp) == 3


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fusions_share_the_base_layout(case):
    """Every fusion is a Fusion: input norms first, its own layers, the output norm last."""
    fusion = build(case)
    children = [n for n, _ in fusion.named_children()]
    assert isinstance(fusion, Fusion) and fusion.num_modalities == M
    assert children[0] == "in_norm" and len(fusion.in_norm.norms) == M
    assert children[-1] == "out_norm" and fusion.out_norm.normalized_shape == (fusion.out_dim,)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_inputs_of_another_number_of_modalities_are_rejected(case):
    fusion = build(case)
    tokens, masks, pooled, present = make_inputs()
    with pytest.raises(ValueError, match=rf"{type(fusion).__name__}: present must be \[B, 3\]"):
        fusion(tokens, masks, pooled[:, :2], present[:, :2])
    wrong = (tokens[:2], masks[:2], pooled, present) if fusion.reads_tokens else (tokens, masks, pooled[:, :2], present)
    with pytest.raises(ValueError, match=type(fusion).__name__):
        fusion(*wrong)


class MeanFusion(Fusion):
    """A minimal variant: the sum of the normalised pooled vectors, uniform gates."""

    def __init__(self, num_modalities: int, dim: int) -> None:
        super().__init__(num_modalities, dim)
        self.out_norm = torch.nn.LayerNorm(dim)

    def fuse(self, x, present):
        return x.sum(dim=1), presence_gates(present)


def test_the_base_normalises_masks_and_checks_for_a_new_variant():
    torch.manual_seed(0)
    fusion = MeanFusion(M, D)
    with torch.no_grad():
        for norm in fusion.in_norm.norms:
            norm.bias.fill_(3.0)  # LayerNorm of a zero row is its bias: the base must zero it
    tokens, masks, pooled, present = make_inputs()
    fused, gates = fusion(*garbage_everywhere_unused(tokens, masks, pooled, present))
    normed = torch.stack([fusion.in_norm.norms[m](pooled[:, m]) for m in range(M)], 1) * present.unsqueeze(-1)
    expected = fusion.out_norm(normed.sum(1))
    torch.testing.assert_close(fused, expected)
    torch.testing.assert_close(gates, presence_gates(present))

    class NoRule(Fusion):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoRule(M, D)


def test_shared_helpers():
    values = torch.tensor([[[1.0, 2.0], [float("nan"), 4.0], [5.0, 6.0]]])  # [1, 3, 2]
    keep = torch.tensor([[True, False, True]])
    assert torch.equal(zero_missing(values, keep), torch.tensor([[[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]]]))
    assert torch.equal(masked_mean(values, keep), torch.tensor([[3.0, 4.0]]))
    assert torch.equal(masked_mean(values, torch.zeros_like(keep)), torch.zeros(1, 2))
    weights = torch.tensor([[0.5, 0.0, 2.0]])
    assert torch.equal(weighted_sum(weights, zero_missing(values, keep)), torch.tensor([[10.5, 13.0]]))
