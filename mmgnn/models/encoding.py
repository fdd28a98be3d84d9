"""NodeEncoder: joins a positional/structural encoding (``mmgnn.data.pe``) to node features."""
from __future__ import annotations

import dgl
import torch
from torch import nn

from mmgnn.data.pe import COMBINES, Encoding


class NodeEncoder(nn.Module):
    """One modality's encoding, read by the branch (input side) and by the tokens.

    ``features(graph, pe)``: the raw encoding ``[N, raw_dim]`` as features ``[N, p]``:
    ``index`` -> ``nn.Embedding(max_index, dim)`` of the node index (``p = dim``);
    ``laplacian`` -> eigenvectors times a random sign per item and eigenvector while training
    (Dwivedi et al. 2020; the sign of an eigenvector is arbitrary), unchanged in eval;
    others -> unchanged (``p = raw_dim``).

    ``inputs(x, f)``: ``combine="concat"`` -> ``[x, f]`` ``[N, d + p]``; ``"add"`` ->
    ``x + Linear(p, d)(f)`` ``[N, d]`` (``out_dim`` says which).

    ``tokens(f)``: ``Linear(p, embed_dim)(f)`` ``[N, embed_dim]``, added to the node tokens so
    that the readout and cross-attention fusion see where each token sits.

    Args:
        encoding: the modality's encoding (not ``none``).
        raw_dim: columns of the raw encoding (ignored by ``index``).
        in_dim: node feature size ``d``.
        embed_dim: token size.
        combine: ``"concat"`` or ``"add"``.
    """

    def __init__(self, encoding: Encoding, raw_dim: int, in_dim: int, embed_dim: int, combine: str) -> None:
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"pe combine must be one of {COMBINES}, got {combine!r}")
        self.kind = encoding.kind
        self.embedding = None
        dim = int(raw_dim)
        if encoding.kind == "index":
            self.embedding = nn.Embedding(encoding.max_index, encoding.dim)
            dim = encoding.dim
        self.dim = dim
        self.project = nn.Linear(dim, in_dim) if combine == "add" else None
        self.out_dim = in_dim if combine == "add" else in_dim + dim
        self.token = nn.Linear(dim, embed_dim)

    def features(self, graph: dgl.DGLGraph, pe: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding(pe[:, 0].long())
        if self.kind == "laplacian" and self.training:
            counts = graph.batch_num_nodes().to(pe.device)
            signs = torch.randint(0, 2, (counts.shape[0], pe.shape[1]), device=pe.device) * 2 - 1
            return pe * torch.repeat_interleave(signs, counts, dim=0).to(pe.dtype)
        return pe

    def inputs(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        if self.project is None:
            return torch.cat([x, f.to(x.dtype)], dim=1)
        return x + self.project(f.to(x.dtype))

    def tokens(self, f: torch.Tensor) -> torch.Tensor:
        return self.token(f)
