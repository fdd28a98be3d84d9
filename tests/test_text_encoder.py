"""MiniLMTextEncoder: the bundled all-MiniLM-L6-v2 checkpoint, loaded offline, packed-node input."""
import os

import pytest
import torch
from safetensors.torch import load_file

from mmgnn.models.text_encoder import (
    MINILM_DIM, MiniLMTextEncoder, load_minilm_tokenizer, minilm_path,
)

SENTENCE = "the cat sat on the mat"
LONGER = "a much longer sentence, with punctuation and several more words in it"


@pytest.fixture(scope="module")
def encoder(one_thread):
    return MiniLMTextEncoder(freeze=True).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return load_minilm_tokenizer()


def alone(encoder, ids):
    """States of one unpadded sequence ``[n, 384]``."""
    with torch.no_grad():
        return encoder(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.int64))[0]


def test_weights_start_equal_to_the_bundled_checkpoint(encoder):
    stored = load_file(minilm_path() / "model.safetensors")
    own = encoder.bert.state_dict()
    assert set(own) <= set(stored) and len(own) == 103
    for name, tensor in own.items():
        assert torch.equal(tensor, stored[name]), name
    assert sum(p.numel() for p in encoder.parameters()) == 22_713_216
    assert encoder.out_dim == MINILM_DIM == encoder.bert.config.hidden_size


def test_loading_switches_the_hub_offline(encoder):
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_sentence_token_count_and_ids(tokenizer):
    ids = tokenizer(SENTENCE)["input_ids"]
    # [CLS] the cat sat on the mat [SEP]: six word pieces between the two special tokens
    assert ids == [101, 1996, 4937, 2938, 2006, 1996, 13523, 102]


def test_encode_nodes_equals_each_item_encoded_alone(encoder, tokenizer):
    first, second = tokenizer(SENTENCE)["input_ids"], tokenizer(LONGER)["input_ids"]
    assert len(second) > len(first)  # the first is padded in the packed batch
    ids = torch.tensor(first + second)
    with torch.no_grad():
        states = encoder.encode_nodes(ids, torch.tensor([len(first), 0, len(second)]))  # item 1 has none
    assert states.shape == (len(first) + len(second), MINILM_DIM)
    torch.testing.assert_close(states[: len(first)], alone(encoder, first), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(states[len(first):], alone(encoder, second), atol=1e-5, rtol=1e-4)
    # contextual: the same token ("the", id 1996) gets different states at different places
    assert not torch.allclose(states[1], states[5], atol=1e-3)


def test_encode_nodes_checks_its_input(encoder):
    with pytest.raises(ValueError, match="counts sum to 3 but there are 4 token ids"):
        encoder.encode_nodes(torch.tensor([101, 1996, 102, 0]), torch.tensor([3]))
    with pytest.raises(ValueError, match="513 tokens; MiniLM takes at most 512"):
        encoder.encode_nodes(torch.full((513,), 1996), torch.tensor([513]))
    empty = encoder.encode_nodes(torch.zeros(0, dtype=torch.int64), torch.tensor([0, 0]))
    assert empty.shape == (0, MINILM_DIM)


def test_freeze_stops_gradients_and_trainable_learns(tokenizer, one_thread):
    frozen = MiniLMTextEncoder(freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = MiniLMTextEncoder()
    ids = torch.tensor(tokenizer(SENTENCE)["input_ids"])
    trainable.encode_nodes(ids, torch.tensor([len(ids)])).sum().backward()
    grad = trainable.bert.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad[ids].abs().sum() > 0 and grad[2000].abs().sum() == 0
