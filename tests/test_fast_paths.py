"""The fast paths equal the implementations they replaced.

The previous code is kept here as the reference: the crossmodal block through
``nn.MultiheadAttention`` (a dummy first key for rows without a source, then the update zeroed),
merge-then-pool fusion, and ``pad_tokens`` as a loop over items. Both sides share weights; they
are compared in train mode with dropout 0 and in eval mode with dropout on, with padded tokens,
missing modalities and a modality absent from the whole batch, on outputs and on gradients.
"""
from __future__ import annotations

import dgl
import pytest
import torch

from mmgnn.models.fusion import CrossAttentionFusion, CrossModalBlock, masked_mean, weighted_sum, zero_missing
from mmgnn.models.multimodal import pad_tokens

pytestmark = pytest.mark.usefixtures("one_thread")
B, D = 6, 16
# Tokens per item and modality; 0 = the item lacks it (rows: items, columns: modalities).
COUNTS = torch.tensor([[4, 3, 5], [2, 0, 1], [1, 0, 0], [0, 3, 2], [0, 0, 0], [3, 1, 4]])


# ----------------------------------------------------------------------------- reference code
def reference_block(block: CrossModalBlock, target, source, source_mask):
    """The previous ``CrossModalBlock.forward`` (``nn.MultiheadAttention`` with a key padding mask)."""
    has_source = source_mask.any(dim=1)
    ignore = ~source_mask
    ignore = torch.cat([ignore[:, :1] & has_source.unsqueeze(1), ignore[:, 1:]], dim=1)
    source = block.norm_source(source)
    update, _ = block.attn(block.norm_target(target), source, source, key_padding_mask=ignore, need_weights=False)
    update = zero_missing(update, has_source)
    h = target + block.drop(update)
    return h + block.drop(block.ff(block.norm_ff(h)))


def reference_fusion(fusion: CrossAttentionFusion, tokens, token_mask, present):
    """The previous ``CrossAttentionFusion`` forward: every stream per token, merge, then pool."""
    xs, masks = fusion.in_norm.tokens(tokens, token_mask, present)
    outputs = [[] for _ in range(fusion.num_modalities)]
    for (t, s), stream in zip(fusion.directions, fusion.streams):
        if s is None:
            others = [m for m in range(fusion.num_modalities) if m != t]
            source, source_mask = torch.cat([xs[m] for m in others], 1), torch.cat([masks[m] for m in others], 1)
        else:
            source, source_mask = xs[s], masks[s]
        target = xs[t]
        for block in stream.blocks:
            target = reference_block(block, target, source, source_mask)
        outputs[t].append(target)
    pooled, gates = [], []
    for t, outs in enumerate(outputs):
        u = fusion.merge[t](torch.cat(outs, dim=-1)) if fusion.merge is not None else outs[0]
        v = masked_mean(u, masks[t])
        pooled.append(v)
        gates.append(torch.sigmoid(fusion.gates[t](v)).squeeze(-1))
    g = zero_missing(torch.stack(gates, dim=1), present)
    return fusion.out_norm(weighted_sum(g, torch.stack(pooled, dim=1))), g


def reference_pad_tokens(graph: dgl.DGLGraph, h: torch.Tensor, present: torch.Tensor):
    """The padding as a loop over items."""
    counts = graph.batch_num_nodes().tolist()
    length = max([1, *counts])
    tokens, mask = h.new_zeros(len(counts), length, h.shape[1]), torch.zeros(len(counts), length, dtype=torch.bool)
    for i, part in enumerate(torch.split(h, counts)):
        if present[i]:
            tokens[i, : len(part)] = part
            mask[i, : len(part)] = True
    return tokens, mask


# ----------------------------------------------------------------------------- inputs
def make_inputs(counts: torch.Tensor = COUNTS, seed: int = 0):
    """Padded tokens (garbage at padded positions) with masks, and ``present``."""
    g = torch.Generator().manual_seed(seed)
    tokens, masks = [], []
    for m in range(counts.shape[1]):
        length = int(counts[:, m].max())
        tokens.append(torch.randn(counts.shape[0], length, D, generator=g) * 3 + 1)
        masks.append(torch.arange(length) < counts[:, m : m + 1])
    return tokens, masks, counts > 0


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("attend", ["pair", "all"])
@pytest.mark.parametrize("num_blocks", [1, 2])
@pytest.mark.parametrize("mode", ["train_dropout0", "eval_dropout"])
def test_fusion_equals_the_previous_implementation(attend, num_blocks, mode):
    torch.manual_seed(1)
    dropout = 0.0 if mode == "train_dropout0" else 0.3
    fusion = CrossAttentionFusion(3, D, num_heads=4, num_blocks=num_blocks, attend=attend, dropout=dropout)
    fusion.train(mode == "train_dropout0")
    tokens, masks, present = make_inputs()
    pooled = torch.zeros(B, 3, D)
    fused, gates = fusion(tokens, masks, pooled, present)
    (fused * torch.linspace(-1, 1, D)).sum().backward()
    fast_grads = grads(fusion)
    fusion.zero_grad()
    ref_fused, ref_gates = reference_fusion(fusion, tokens, masks, present)
    (ref_fused * torch.linspace(-1, 1, D)).sum().backward()
    torch.testing.assert_close(fused, ref_fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gates, ref_gates, atol=1e-5, rtol=1e-5)
    ref_grads = grads(fusion)
    assert fast_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(fast_grads[name], ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    assert ref_grads["in_norm.norms.0.weight"].abs().sum() > 0  # the check compares real gradients


def test_fusion_equals_previous_with_a_modality_absent_from_the_batch():
    torch.manual_seed(2)
    fusion = CrossAttentionFusion(3, D, dropout=0.0).train()
    counts = COUNTS.clone()
    counts[:, 1] = 0  # no item has modality 1: its tokens are [B, 0, D]
    tokens, masks, present = make_inputs(counts)
    assert tokens[1].shape[1] == 0
    fused, gates = fusion(tokens, masks, torch.zeros(B, 3, D), present)
    fused.sum().backward()
    assert fusion.in_norm.norms[1].weight.grad is not None  # the padding sits before the input norm
    ref_fused, ref_gates = reference_fusion(fusion, tokens, masks, present)
    torch.testing.assert_close(fused, ref_fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gates, ref_gates, atol=1e-5, rtol=1e-5)
    assert torch.equal(gates[:, 1], torch.zeros(B))


def test_train_mode_with_dropout_keeps_the_token_path():
    """Active dropout does not commute with the mean: the fast pooled path must not be taken."""
    torch.manual_seed(3)
    fusion = CrossAttentionFusion(3, D, dropout=0.5).train()
    assert not fusion.streams[0].blocks[-1].can_pool_early()
    tokens, masks, present = make_inputs()
    torch.manual_seed(7)
    fused, _ = fusion(tokens, masks, torch.zeros(B, 3, D), present)
    torch.manual_seed(7)
    ref_fused, _ = reference_fusion(fusion, tokens, masks, present)
    torch.testing.assert_close(fused, ref_fused, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="dropout"):
        fusion.streams[0].blocks[-1](tokens[0], tokens[1], masks[1], pool_weights=masks[0].float())


def test_block_equals_multihead_attention_with_masks():
    torch.manual_seed(4)
    block = CrossModalBlock(D, num_heads=4, ff_mult=2, dropout=0.0)
    target, source = torch.randn(B, 5, D), torch.randn(B, 4, D)
    mask = torch.arange(4) < torch.tensor([4, 1, 0, 2, 3, 0])[:, None]
    torch.testing.assert_close(block(target, source, mask), reference_block(block, target, source, mask),
                               atol=1e-5, rtol=1e-5)


def test_pad_tokens_equals_the_loop():
    counts = [3, 0, 5, 1, 2]
    graph = dgl.batch([dgl.graph(([], []), num_nodes=n) for n in counts])
    h = torch.randn(sum(counts), 4)
    present = torch.tensor([True, True, True, False, True])
    tokens, mask = pad_tokens(graph, h, present)
    ref_tokens, ref_mask = reference_pad_tokens(graph, h, present)
    assert torch.equal(tokens, ref_tokens) and torch.equal(mask, ref_mask)
    h.requires_grad_(True)
    pad_tokens(graph, h, present)[0].sum().backward()
    assert torch.equal(h.grad[:, 0], torch.tensor([1.0] * 8 + [0.0] + [1.0] * 2))  # item 3 not present


def test_pad_tokens_of_fixed_size_items_is_a_view_equal_to_the_loop():
    graph = dgl.batch([dgl.graph(([], []), num_nodes=3)] * 4)
    h = torch.randn(12, 5)
    present = torch.ones(4, dtype=torch.bool)
    tokens, mask = pad_tokens(graph, h, present)
    ref_tokens, ref_mask = reference_pad_tokens(graph, h, present)
    assert torch.equal(tokens, ref_tokens) and torch.equal(mask, ref_mask)
    assert tokens.data_ptr() == h.data_ptr()
    present[2] = False  # one item not present: copied, its tokens zero
    tokens, mask = pad_tokens(graph, h, present)
    ref_tokens, ref_mask = reference_pad_tokens(graph, h, present)
    assert torch.equal(tokens, ref_tokens) and torch.equal(mask, ref_mask)
    assert tokens.data_ptr() != h.data_ptr() and torch.equal(tokens[2], torch.zeros(3, 5))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gat_layer_equals_dgl_gatconv(mode):
    """The GAT fast path against DGL's own ``GATConv.forward`` with the same parameters, on a
    batch with an isolated node and an item of one node (zero in-degree), outputs and gradients."""
    from mmgnn.models.convs import GATLayer

    torch.manual_seed(5)
    graphs = [dgl.graph(([0, 1, 2, 2], [1, 2, 0, 1]), num_nodes=4), dgl.graph(([], []), num_nodes=1),
              dgl.add_self_loop(dgl.graph(([0, 1], [1, 0]), num_nodes=3))]
    graph = dgl.batch(graphs)
    layer = GATLayer(6, 8, heads=2).train(mode == "train")
    with torch.no_grad():
        layer.conv.bias.normal_()  # DGL starts it at 0: make it count
    h = torch.randn(graph.num_nodes(), 6, requires_grad=True)
    out = layer(graph, h)
    out.pow(2).sum().backward()
    fast = grads(layer), h.grad.clone()
    layer.zero_grad()
    h.grad = None
    ref = layer.conv(graph, h).flatten(1)
    ref.pow(2).sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast[1], h.grad, atol=1e-5, rtol=1e-4)
    for name, grad in grads(layer).items():
        torch.testing.assert_close(fast[0][name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert set(fast[0]) == {"conv.fc.weight", "conv.attn_l", "conv.attn_r", "conv.bias"}


def test_block_pooled_output_is_the_masked_mean_of_its_tokens():
    """``pool_weights`` gives the masked mean of the token output; a row without a valid target
    token gives exactly zero (the FF's last bias must not leak into it)."""
    torch.manual_seed(6)
    block = CrossModalBlock(D, num_heads=4, ff_mult=2, dropout=0.0)
    with torch.no_grad():
        block.ff[-1].bias.normal_()
    target, source = torch.randn(B, 5, D), torch.randn(B, 4, D)
    source_mask = torch.arange(4) < torch.tensor([4, 1, 0, 2, 3, 4])[:, None]
    target_mask = torch.arange(5) < torch.tensor([5, 2, 3, 0, 1, 4])[:, None]
    weights = target_mask.float() / target_mask.sum(1, keepdim=True).clamp(min=1)
    pooled = block(target, source, source_mask, pool_weights=weights)
    expected = masked_mean(block(target, source, source_mask), target_mask)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(pooled[3], torch.zeros(D))
