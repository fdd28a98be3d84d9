"""Alignment losses, the embedding queue and the objective against direct reference computations."""
from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmgnn.losses import (
    CosineAlignment,
    EmbeddingQueue,
    HardNegativeInfoNCE,
    InfoNCE,
    MultimodalObjective,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "loss"
NAMES = ("text", "image", "audio")


def make_batch(seed=0, b=8, d=5, m=3, garbage_missing=False):
    """Normalised embeddings with some modalities missing (zero rows, or garbage rows)."""
    g = torch.Generator().manual_seed(seed)
    present = torch.ones(b, m, dtype=torch.bool)
    present[1, 0] = present[2, 1] = present[5, m - 1] = present[6, 0] = False
    emb = {}
    for col, name in enumerate(NAMES[:m]):
        e = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=-1).float()
        garbage = torch.randn(b, d, generator=g) * 3
        fill = garbage if garbage_missing else torch.zeros(b, d)
        emb[name] = torch.where(present[:, col, None], e, fill)
    labels = torch.tensor([0, 1, 0, 1, 2, 0, 1, 3])[:b]
    groups = torch.tensor([0, 0, 1, 1, 0, 1, 0, 1])[:b]
    return emb, present, labels, groups


def reference_contrastive(
    emb, present, labels, groups, *, scale, pairing="item", label_positives=False,
    queue=None, hard=None,
):
    """Loop-by-loop float64 InfoNCE (``hard=None``) or hard-negative InfoNCE (``hard=dict``).

    ``hard``: ``beta``, ``tau_plus``, ``gamma`` and optionally ``beta_scale`` (logit) and
    ``cross_group_topk`` (0); the loop adds ``floor_hits`` and ``anchors`` (with negatives).

    ``queue``: ``(emb dict [Q, D], present [Q, M], labels [Q], groups [Q])`` extra keys.
    """
    names = list(emb)
    z = {n: F.normalize(e.double(), dim=-1) for n, e in emb.items()}
    terms = []
    for a, b in itertools.permutations(range(len(names)), 2):
        keys = [(z[names[b]][j], j, int(labels[j]), int(groups[j]))
                for j in range(len(present)) if present[j, b]]
        if queue is not None:
            q_emb, q_present, q_labels, q_groups = queue
            qz = F.normalize(q_emb[names[b]].double(), dim=-1)
            keys += [(qz[j], None, int(q_labels[j]), int(q_groups[j]))
                     for j in range(len(q_present)) if q_present[j, b]]
        losses = []
        for i in range(len(present)):
            if not present[i, a] or (pairing == "item" and not present[i, b]):
                continue
            li, gi = int(labels[i]), int(groups[i])
            is_pos = []
            for _, j, lj, _ in keys:
                if pairing == "item":
                    is_pos.append(j == i or (label_positives and lj == li))
                else:
                    is_pos.append(lj == li)
            if not any(is_pos):
                continue
            sims = [float(z[names[a]][i] @ k) for k, *_ in keys]
            logits = [scale * s for s in sims]
            pos_logits = [l for l, p in zip(logits, is_pos) if p]
            if hard is None:
                log_norm = math.log(sum(math.exp(l) for l in logits))
                losses.append(-sum(l - log_norm for l in pos_logits) / len(pos_logits))
                continue
            negs = [(s, l, key[3]) for s, l, p, key in zip(sims, logits, is_pos, keys) if not p]
            n = len(negs)
            beta_scale = scale if hard.get("beta_scale", "logit") == "logit" else 1.0
            other = sorted((-s for s, _, gj in negs if gj != gi))  # most similar first
            topk = hard.get("cross_group_topk", 0)
            cutoff = -other[min(topk, len(other)) - 1] if other and topk else -math.inf
            u = [math.exp(hard["beta"] * beta_scale * s)
                 * (hard["gamma"] if gj != gi and s >= cutoff else 1.0) for s, _, gj in negs]
            w = [x / (sum(u) / n) for x in u] if n else []
            pos_exp = [math.exp(l) for l in pos_logits]
            pos_mean = sum(pos_exp) / len(pos_exp)
            ng = max(
                (sum(wj * math.exp(l) for wj, (_, l, _) in zip(w, negs)) - hard["tau_plus"] * n * pos_mean)
                / (1 - hard["tau_plus"]),
                n * math.exp(-scale),
            )
            hard.setdefault("floor_hits", 0)
            hard.setdefault("anchors", 0)
            hard["floor_hits"] += n > 0 and ng == n * math.exp(-scale)
            hard["anchors"] += n > 0
            denominator = sum(pos_exp) + ng
            losses.append(-sum(math.log(p / denominator) for p in pos_exp) / len(pos_exp))
        if losses:
            terms.append(sum(losses) / len(losses))
    return sum(terms) / len(terms)


CONTRASTIVE_MODES = [
    dict(pairing="item", label_positives=False),
    dict(pairing="item", label_positives=True),
    dict(pairing="label", label_positives=False),
]


# ----------------------------------------------------------------------------- cosine
def test_cosine_item_pairing_matches_reference_and_leaves_missing_out():
    emb, present, labels, groups = make_batch(garbage_missing=True)
    loss = CosineAlignment()(emb, present, labels, groups)
    terms = []
    for a, b in itertools.combinations(range(3), 2):
        ea, eb = emb[NAMES[a]], emb[NAMES[b]]
        rows = [i for i in range(8) if present[i, a] and present[i, b]]
        terms.append(sum(1 - F.cosine_similarity(ea[i], eb[i], dim=0) for i in rows) / len(rows))
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-6)
    zero_rows, *_ = make_batch(garbage_missing=False)
    assert torch.allclose(loss, CosineAlignment()(zero_rows, present, labels, groups), atol=1e-6)


def test_cosine_label_pairing_averages_every_same_label_pair():
    emb, present, labels, groups = make_batch()
    loss = CosineAlignment(pairing="label")(emb, present, labels, groups)
    terms = []
    for a, b in itertools.combinations(range(3), 2):
        values = [1 - float(emb[NAMES[a]][i] @ emb[NAMES[b]][j])
                  for i in range(8) for j in range(8)
                  if present[i, a] and present[j, b] and labels[i] == labels[j]]
        terms.append(sum(values) / len(values))
    assert loss.item() == pytest.approx(sum(terms) / len(terms), abs=1e-6)


# ----------------------------------------------------------------------------- InfoNCE
def test_infonce_equals_clip_symmetric_cross_entropy():
    emb, _, labels, groups = make_batch(m=2)
    present = torch.ones(8, 2, dtype=torch.bool)
    emb = {k: F.normalize(torch.randn(8, 5), dim=-1) for k in emb}
    loss = InfoNCE(temperature=0.07)(emb, present, labels, groups)
    logits = emb["text"] @ emb["image"].T / 0.07
    target = torch.arange(8)
    clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert torch.allclose(loss, clip, atol=1e-5)


@pytest.mark.parametrize("mode", CONTRASTIVE_MODES)
def test_infonce_matches_reference_with_missing_modalities(mode):
    emb, present, labels, groups = make_batch()
    loss = InfoNCE(temperature=0.2, **mode)(emb, present, labels, groups)
    expected = reference_contrastive(emb, present, labels, groups, scale=1 / 0.2, **mode)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.dtype == torch.float32


@pytest.mark.parametrize("loss_cls", [CosineAlignment, InfoNCE, HardNegativeInfoNCE])
@pytest.mark.parametrize("pairing", ["item", "label"])
def test_missing_items_are_neither_anchors_nor_negatives(loss_cls, pairing):
    zero_rows, present, labels, groups = make_batch(garbage_missing=False)
    garbage_rows, *_ = make_batch(garbage_missing=True)
    loss = loss_cls(pairing=pairing)
    assert torch.allclose(
        loss(zero_rows, present, labels, groups), loss(garbage_rows, present, labels, groups)
    )


def test_label_pairing_drops_anchors_without_positive():
    # label 3 (item 7) has no other item: its anchors have only themselves when both exist,
    # and none when its other modality is missing; SupCon would give NaN for such rows
    emb, present, labels, groups = make_batch()
    present[7, 1] = False
    loss = InfoNCE(pairing="label")(emb, present, labels, groups)
    expected = reference_contrastive(emb, present, labels, groups, scale=1 / 0.07, pairing="label")
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss_cls", [CosineAlignment, InfoNCE, HardNegativeInfoNCE])
def test_nothing_valid_gives_a_zero_with_grad_fn(loss_cls):
    emb, _, labels, groups = make_batch()
    emb = {k: v.clone().requires_grad_() for k, v in emb.items()}
    present = torch.zeros(8, 3, dtype=torch.bool)
    present[torch.arange(8), torch.arange(8) % 3] = True  # one modality per item
    loss = loss_cls()(emb, present, labels, groups)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert all(torch.isfinite(e.grad).all() for e in emb.values())


def test_label_pairing_without_labels_is_an_error():
    emb, present, _, groups = make_batch()
    with pytest.raises(ValueError, match="needs labels"):
        InfoNCE(pairing="label")(emb, present, None, groups)
    with pytest.raises(ValueError, match="needs labels"):
        InfoNCE(label_positives=True)(emb, present, None, groups)


def test_logit_scale_init_clamp_and_frozen_temperature():
    loss = InfoNCE(temperature=0.07)
    assert isinstance(loss.logit_scale, torch.nn.Parameter)
    assert loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert loss.temperature == pytest.approx(0.07)
    emb, present, labels, groups = make_batch()
    loss(emb, present, labels, groups).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.abs() > 0
    with torch.no_grad():
        loss.logit_scale.fill_(7.0)
    loss.clamp_()
    assert loss.logit_scale.item() == pytest.approx(math.log(100))
    with torch.no_grad():
        loss.logit_scale.fill_(-1.0)
    loss.clamp_()
    assert loss.logit_scale.item() == 0.0 and loss.temperature == 1.0

    frozen = InfoNCE(temperature=0.5, learn_temperature=False)
    assert list(frozen.parameters()) == []
    assert "logit_scale" in frozen.state_dict()
    assert frozen.temperature == pytest.approx(0.5)


def test_loss_is_float32_under_bf16_autocast():
    emb, present, labels, groups = make_batch()
    loss = InfoNCE()
    expected = loss({k: v.bfloat16().float() for k, v in emb.items()}, present, labels, groups)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss({k: v.bfloat16() for k, v in emb.items()}, present, labels, groups)
    assert value.dtype == torch.float32
    assert torch.allclose(value, expected, atol=1e-5)


# ----------------------------------------------------------------------------- queue
def test_embedding_queue_is_fifo_and_keeps_masks():
    queue = EmbeddingQueue(size=4, dim=2, modalities=("text", "image"))
    for step in range(3):
        e = torch.full((2, 2), float(step))
        present = torch.tensor([[True, step != 1], [True, True]])
        queue.enqueue({"text": e, "image": -e}, present, torch.tensor([step, 10 + step]),
                      torch.tensor([0, 1]))
    emb, present, labels, groups = queue.entries("image")
    assert len(queue) == 4
    # slots 0-1 hold step 2 (overwrote step 0), slots 2-3 hold step 1
    assert emb[:, 0].tolist() == [-2.0, -2.0, -1.0, -1.0]
    assert labels.tolist() == [2, 12, 1, 11]
    assert present.tolist() == [True, True, False, True]
    assert groups.tolist() == [0, 1, 0, 1]


def test_queue_size_must_be_a_multiple_of_the_batch_size():
    queue = EmbeddingQueue(size=10, dim=2, modalities=("text", "image"))
    e = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="multiple of the batch size"):
        queue.enqueue({"text": e, "image": e}, torch.ones(4, 2, dtype=torch.bool))


@pytest.mark.filterwarnings("ignore:HardNegativeInfoNCE. tau_plus")
@pytest.mark.parametrize("mode", CONTRASTIVE_MODES)
@pytest.mark.parametrize("hard", [None, dict(beta=0.5, tau_plus=0.05, gamma=2.0, cross_group_topk=2)])
def test_queue_adds_keys_like_the_reference_and_changes_the_loss(mode, hard):
    first = make_batch(seed=1)
    second = make_batch(seed=2)
    kwargs = dict(temperature=0.3, queue_size=16, **mode)
    loss = HardNegativeInfoNCE(**kwargs, **hard) if hard else InfoNCE(**kwargs)
    plain = HardNegativeInfoNCE(temperature=0.3, **mode, **hard) if hard else InfoNCE(temperature=0.3, **mode)
    loss.train()
    # an empty queue adds nothing
    assert torch.allclose(loss(*first), plain(*first))
    value = loss(*second)
    emb, present, labels, groups = first
    expected = reference_contrastive(
        *second, scale=1 / 0.3, queue=(emb, present, labels, groups),
        hard=None if hard is None else dict(hard), **mode,
    )
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert abs(value.item() - plain(*second).item()) > 1e-3
    assert len(loss.queue) == 16


def test_queue_is_neither_used_nor_filled_in_eval_mode():
    loss = InfoNCE(queue_size=16)
    loss.train()
    loss(*make_batch(seed=1))
    loss.eval()
    batch = make_batch(seed=2)
    assert torch.allclose(loss(*batch), InfoNCE()(*batch))
    assert len(loss.queue) == 8


# ----------------------------------------------------------------------------- hard negatives
@pytest.mark.parametrize("mode", CONTRASTIVE_MODES)
@pytest.mark.parametrize("beta_scale", ["logit", "cosine"])
def test_hardneg_at_neutral_values_equals_infonce(mode, beta_scale):
    batch = make_batch()
    hard = HardNegativeInfoNCE(temperature=0.1, beta=0.0, beta_scale=beta_scale, tau_plus=0.0,
                               gamma=1.0, cross_group_topk=3, **mode)
    value = hard(*batch)
    assert torch.allclose(value, InfoNCE(temperature=0.1, **mode)(*batch), atol=1e-6)
    assert hard.diagnostics["hardneg/floor_share"].item() == 0.0
    assert hard.diagnostics["hardneg/weight_entropy"].item() == pytest.approx(1.0, abs=1e-5)


def test_negative_weights_follow_their_formula():
    sims = torch.tensor([[0.5, 0.2, -0.4, 0.9, 0.1], [0.1, 0.3, 0.0, 0.0, 0.0]])
    neg = torch.tensor([[False, True, True, True, True], [True, True, False, False, False]])
    anchor_groups, key_groups = torch.tensor([0, 1]), torch.tensor([0, 0, 1, 1, 1])
    # anchor 0 (group 0), logit scale s=10, beta=0.2: exponent beta*s*cos = 2*cos; other-group
    # negatives are keys 2, 3, 4 (cos -0.4, 0.9, 0.1): top-1 is key 3, the only one with gamma
    loss = HardNegativeInfoNCE(beta=0.2, gamma=3.0, cross_group_topk=1)
    weights = loss.negative_weights(sims, neg, anchor_groups, key_groups, scale=10.0)
    u0 = [math.exp(0.4), math.exp(-0.8), 3 * math.exp(1.8), math.exp(0.2)]
    # anchor 1 (group 1): both negatives are of group 0; top-1 is key 1 (cos 0.3)
    u1 = [math.exp(0.2), 3 * math.exp(0.6)]
    expected = torch.tensor([
        [0.0] + [x / (sum(u0) / 4) for x in u0],
        [x / (sum(u1) / 2) for x in u1] + [0.0, 0.0, 0.0],
    ])
    assert torch.allclose(weights, expected, atol=1e-5)
    assert torch.allclose(weights.sum(dim=1), neg.sum(dim=1).float())
    # cross_group_topk=0: gamma on every other-group negative; cosine scale: beta * cos
    loss = HardNegativeInfoNCE(beta=2.0, beta_scale="cosine", gamma=3.0, cross_group_topk=0)
    weights = loss.negative_weights(sims, neg, anchor_groups, key_groups, scale=10.0)
    u0 = [math.exp(0.4), 3 * math.exp(-0.8), 3 * math.exp(1.8), 3 * math.exp(0.2)]
    assert torch.allclose(weights[0, 1:], torch.tensor([x / (sum(u0) / 4) for x in u0]), atol=1e-5)


HARD_SETTINGS = [
    dict(beta=1.5, tau_plus=0.1, gamma=2.0, beta_scale="cosine", cross_group_topk=0),
    dict(beta=0.5, tau_plus=0.0, gamma=3.0, beta_scale="logit", cross_group_topk=2),
    dict(beta=0.3, tau_plus=0.2, gamma=0.5, beta_scale="logit", cross_group_topk=0),
]


@pytest.mark.filterwarnings("ignore:HardNegativeInfoNCE. tau_plus")
@pytest.mark.parametrize("mode", CONTRASTIVE_MODES)
@pytest.mark.parametrize("params", HARD_SETTINGS)
def test_hardneg_matches_reference(mode, params):
    batch = make_batch()
    loss_fn = HardNegativeInfoNCE(temperature=0.5, **params, **mode)
    loss = loss_fn(*batch)
    reference = dict(params)
    expected = reference_contrastive(*batch, scale=2.0, hard=reference, **mode)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    share = reference["floor_hits"] / reference["anchors"]
    assert loss_fn.diagnostics["hardneg/floor_share"].item() == pytest.approx(share)


def test_hardneg_debiasing_floor_and_large_logit_scale_stay_exact():
    batch = make_batch()
    params = dict(beta=0.01, tau_plus=0.9, gamma=2.0, cross_group_topk=1, floor_warn_share=1.0)
    with pytest.warns(UserWarning, match="known to have another label"):
        loss_fn = HardNegativeInfoNCE(temperature=0.01, **params, pairing="label")
    value = loss_fn(*batch)
    reference = {k: v for k, v in params.items() if k != "floor_warn_share"}
    expected = reference_contrastive(*batch, scale=100.0, hard=reference, pairing="label")
    assert 0 < reference["floor_hits"] < reference["anchors"]  # both branches of the max
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(expected, rel=1e-4)
    share = reference["floor_hits"] / reference["anchors"]
    assert loss_fn.diagnostics["hardneg/floor_share"].item() == pytest.approx(share)


def test_floor_warning_is_issued_once_per_training_epoch():
    batch = make_batch()
    loss_fn = HardNegativeInfoNCE(temperature=0.01, beta=0.0, tau_plus=0.9, floor_warn_share=0.1)
    loss_fn.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss_fn(*batch)  # evaluation: no warning
    loss_fn.train()
    with pytest.warns(RuntimeWarning, match="sit at the floor") as caught:
        loss_fn(*batch)
        loss_fn(*batch)
    assert len([w for w in caught if "floor" in str(w.message)]) == 1
    assert loss_fn.diagnostics["hardneg/floor_share"].item() > 0.1
    loss_fn.set_epoch(1)
    with pytest.warns(RuntimeWarning, match="epoch 2"):
        loss_fn(*batch)


def test_larger_beta_concentrates_the_weights():
    batch = make_batch()
    entropies, top1 = [], []
    for beta in (0.0, 0.5, 2.0, 8.0):
        loss_fn = HardNegativeInfoNCE(temperature=0.1, beta=beta, gamma=1.0)
        loss_fn(*batch)
        entropies.append(loss_fn.diagnostics["hardneg/weight_entropy"].item())
        top1.append(loss_fn.diagnostics["hardneg/top1_weight"].item())
    assert entropies[0] == pytest.approx(1.0, abs=1e-5)
    assert all(x > y for x, y in zip(entropies, entropies[1:]))
    assert all(x < y for x, y in zip(top1, top1[1:])) and top1[-1] > 0.9


@pytest.mark.parametrize("bad", [dict(beta=-1.0), dict(beta_scale="cos"), dict(tau_plus=1.0),
                                 dict(gamma=0.0), dict(cross_group_topk=-1),
                                 dict(floor_warn_share=1.5), dict(beta_warmup_epochs=-1)])
def test_hardneg_rejects_out_of_range_options(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        HardNegativeInfoNCE(**bad)


def test_hardneg_groups_only_matter_through_gamma():
    emb, present, labels, groups = make_batch()
    loss = HardNegativeInfoNCE(gamma=2.0)
    no_groups = loss(emb, present, labels, None)
    assert torch.allclose(no_groups, HardNegativeInfoNCE(gamma=1.0)(emb, present, labels, groups))
    assert not torch.allclose(no_groups, loss(emb, present, labels, groups))


def test_beta_ramps_linearly_over_the_warmup_epochs():
    batch = make_batch()
    loss = HardNegativeInfoNCE(beta=1.0, beta_warmup_epochs=2)
    assert loss.current_beta == 0.0
    assert torch.allclose(loss(*batch), HardNegativeInfoNCE(beta=0.0)(*batch))
    loss.set_epoch(1)
    assert loss.current_beta == 0.5
    assert torch.allclose(loss(*batch), HardNegativeInfoNCE(beta=0.5)(*batch))
    loss.set_epoch(5)
    assert loss.current_beta == 1.0


# ----------------------------------------------------------------------------- objective
def test_objective_adds_cross_entropy_on_labelled_items_only():
    emb, present, labels, groups = make_batch()
    logits = torch.randn(8, 4, requires_grad=True)
    labels = labels.clone()
    labels[[2, 4]] = -1  # unlabelled items
    out = SimpleNamespace(embeddings=emb, present=present, logits=logits)
    batch = SimpleNamespace(labels=labels, groups=groups)
    alignment = InfoNCE()
    objective = MultimodalObjective(alignment, fused="classify", fused_weight=0.5, alignment_weight=2.0)
    total, terms = objective(out, batch)
    keep = labels >= 0
    ce = F.cross_entropy(logits[keep], labels[keep])
    align = alignment(emb, present, labels, groups)
    assert set(terms) == {"align", "fused_ce", "total"}
    assert torch.allclose(terms["fused_ce"], ce)
    assert torch.allclose(total, 2.0 * align + 0.5 * ce)
    assert terms["total"] is total
    total.backward()
    assert logits.grad[~keep].abs().sum() == 0 and logits.grad[keep].abs().sum() > 0


@pytest.mark.parametrize("case", ["no_labels", "no_logits", "fused_none"])
def test_objective_skips_cross_entropy_when_it_cannot_or_should_not_apply(case):
    emb, present, labels, groups = make_batch()
    out = SimpleNamespace(embeddings=emb, present=present,
                          logits=None if case == "no_logits" else torch.randn(8, 4))
    batch = SimpleNamespace(labels=None if case == "no_labels" else labels, groups=groups)
    objective = MultimodalObjective(CosineAlignment(), fused="none" if case == "fused_none" else "classify")
    total, terms = objective(out, batch)
    assert set(terms) == {"align", "total"}
    assert torch.allclose(total, CosineAlignment()(emb, present, batch.labels, groups))


def test_objective_terms_carry_the_loss_diagnostics_detached():
    emb, present, labels, groups = make_batch()
    out = SimpleNamespace(embeddings=emb, present=present, logits=None)
    batch = SimpleNamespace(labels=labels, groups=groups)
    hard = HardNegativeInfoNCE(temperature=0.1, beta=1.0, gamma=2.0, cross_group_topk=2)
    _, terms = MultimodalObjective(hard)(out, batch)
    diagnostics = {"hardneg/floor_share", "hardneg/weight_entropy", "hardneg/top1_weight"}
    assert set(terms) == {"align", "total"} | diagnostics
    for key in diagnostics:
        assert not terms[key].requires_grad and terms[key].dim() == 0
    assert 0.0 < terms["hardneg/weight_entropy"].item() < 1.0
    _, terms = MultimodalObjective(InfoNCE())(out, batch)
    assert set(terms) == {"align", "total"}


def test_objective_passes_epoch_clamp_and_temperature_through():
    hard = HardNegativeInfoNCE(beta=1.0, beta_warmup_epochs=4)
    objective = MultimodalObjective(hard)
    objective.set_epoch(2)
    assert hard.current_beta == 0.5
    with torch.no_grad():
        hard.logit_scale.fill_(9.0)
    objective.clamp_()
    assert objective.temperature == pytest.approx(0.01)
    assert MultimodalObjective(CosineAlignment()).clamp_().temperature is None
    assert "alignment.logit_scale" in dict(objective.named_parameters())
    with pytest.raises(ValueError, match="fused"):
        MultimodalObjective(hard, fused="regress")


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "name, cls", [("cosine", CosineAlignment), ("infonce", InfoNCE), ("hardneg", HardNegativeInfoNCE)]
)
def test_loss_configs_instantiate_with_the_data_pairing(name, cls):
    from mmgnn.train.preflight import build_objective

    cfg = OmegaConf.create({"data": {"pairing": "label"}, "loss": OmegaConf.load(CONF / f"{name}.yaml")})
    objective = build_objective(cfg)
    assert type(objective.alignment) is cls and objective.alignment.pairing == "label"
    # loss.fused=auto: a classifier with labels, none without (retrieval-only pairs)
    assert (objective.fused, build_objective(cfg, has_labels=False).fused) == ("classify", "none")
    assert instantiate(cfg.loss.alignment, pairing="item").pairing == "item"
    if cls is HardNegativeInfoNCE:
        a = objective.alignment
        assert (a.beta_scale, a.tau_plus) == ("logit", 0.0)
        assert a.beta > 0 and a.gamma > 1 and a.cross_group_topk > 0
        assert a.temperature == pytest.approx(0.07)
