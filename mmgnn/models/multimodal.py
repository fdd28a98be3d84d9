"""MultimodalGNN: branches -> skips -> projection heads -> readout -> fusion -> classifier."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping


import dgl
import torch
import torch.nn.functional as F
from torch import nn

from mmgnn.data.batch import MultimodalBatch
from mmgnn.data.pe import Encoding
from mmgnn.models.branch import GNNBranch
from mmgnn.models.encoding import NodeEncoder
from mmgnn.models.readout import READOUTS, Readout
from mmgnn.models.skip import ModalitySkip
from mmgnn.models.text_encoder import TokenEncodedBranch


@dataclass
class ModelOutput:
    """What :class:`MultimodalGNN` returns for a batch of ``B`` items and ``M`` modalities.

    Attributes:
        modalities: modality names, the column order of ``present`` and ``gates``.
        embeddings: modality -> float ``[B, embed_dim]``, L2-normalised; rows of items lacking
            the modality (``present`` False) are zero.
        present: bool ``[B, M]`` (the batch's).
        fused: float ``[B, fusion.out_dim]``; ``None`` when the forward was asked not to fuse.
        gates: float ``[B, M]``, the fusion's weight per modality; exactly 0 where not present;
            ``None`` when not fused.
        logits: float ``[B, num_classes]``, or ``None`` when the model has no classifier (or
            did not fuse).
    """

    modalities: tuple[str, ...]
    embeddings: dict[str, torch.Tensor]
    present: torch.Tensor
    fused: torch.Tensor | None
    gates: torch.Tensor | None
    logits: torch.Tensor | None


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def pad_tokens(
    graph: dgl.DGLGraph, h: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Node tokens of a batched graph as a padded tensor, vectorised (no loop over items).

    Args:
        graph: batched graph of ``B`` items, ``N`` nodes.
        h: float ``[N, D]`` node tokens.
        present: bool ``[B]``; items where False get no valid token.

    Returns:
        ``tokens`` ``[B, L, D]`` with ``L = max(1, max nodes per item)`` (zeros at padded
        positions and for non-present items) and ``mask`` bool ``[B, L]`` (True = real token
        of a present item).

    When every item is present with ``L`` nodes, ``tokens`` is a view of ``h`` (no copy);
    otherwise the rows of present items are copied into a zero tensor in one ``index_copy``.
    """
    counts = graph.batch_num_nodes().to(h.device)
    batch_size = counts.shape[0]
    length = max(1, int(counts.max())) if batch_size else 1
    mask = (torch.arange(length, device=h.device) < counts.unsqueeze(1)) & present.unsqueeze(1)
    if h.shape[0] == batch_size * length and bool(present.all()):
        return h.view(batch_size, length, h.shape[1]), mask
    item = torch.repeat_interleave(torch.arange(batch_size, device=h.device), counts)
    start = torch.cumsum(counts, 0) - counts
    slot = item * length + torch.arange(h.shape[0], device=h.device) - start[item]
    keep = present[item]
    tokens = h.new_zeros(batch_size * length, h.shape[1])
    tokens = tokens.index_copy(0, slot[keep], h[keep])
    return tokens.view(batch_size, length, h.shape[1]), mask


PROJECTIONS = ("mlp", "linear", "none")


def projection_head(kind: str, dim: int) -> nn.Module:
    """The contrastive projection head ``[B, dim] -> [B, dim]`` (SimCLR's ``g``)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
    if kind == "linear":
        return nn.Linear(dim, dim)
    return nn.Identity()


class MultimodalGNN(nn.Module):
    """The multimodal model: one GNN branch per modality and a fusion metamodel.

    Per modality ``m`` with features ``x`` ``[N_m, d_m]`` and, when it has an encoding
    (``mmgnn.data.pe``, ``graph.ndata["pe"]``), ``f = encoders[m].features(pe)`` and
    ``x = encoders[m].inputs(x, f)`` (concatenated or added): ``h = branches[m](graph, x)``,
    ``h = skips[m](h, x)`` (node level), ``tokens = heads[m](h)`` (``Linear(skip.out_dim,
    embed_dim)`` per node, plus ``encoders[m].tokens(f)`` with an encoding, so readout and
    cross-attention fusion see where each token sits), ``pooled = readouts[m](graph, tokens)`` ``[B, embed_dim]``, zeroed
    where the item lacks ``m``; ``embeddings[m] = z / ||z||`` with ``z = projections[m](pooled)``
    (a contrastive projection head, SimCLR, Chen et al. 2020: the alignment loss shapes ``z``,
    while fusion reads ``pooled``, so aligning modalities does not erase what fusion needs;
    ``projection="none"`` makes ``z = pooled``). Then
    ``fusion(tokens padded [B, L_m, embed_dim] + masks, pooled stacked [B, M, embed_dim],
    present) -> fused, gates`` and ``logits = classifier(fused)`` when ``num_classes > 0``.

    ``batch.present`` decides which modalities an item has (not its node count): with
    ``present`` False, the item's nodes of that modality still run through the branch (items
    are independent), but its tokens are masked, its pooled vector and embedding are zero and
    its gate is 0.

    Args:
        modality_dims: modality -> node feature size, in the batch's modality order.
        branch: ``branch(in_dim) -> GNNBranch`` (e.g. ``instantiate(cfg.gnn)``).
        skip: ``skip(in_dim=, branch_dim=) -> ModalitySkip`` (e.g. ``instantiate(cfg.skip)``;
            called with keywords).
        fusion: ``fusion(num_modalities, dim)`` -> a fusion of :mod:`mmgnn.models.fusion`.
        readout: ``"mean"``, ``"max"``, ``"sum"``, ``"attention"`` or ``"query"``.
        readout_queries: learned queries of the ``"query"`` readout.
        embed_dim: size ``D`` of tokens, pooled vectors and embeddings.
        projection: contrastive head on the pooled vector: ``"mlp"`` (Linear-ReLU-Linear),
            ``"linear"`` or ``"none"``.
        num_classes: classifier outputs; 0 = no classifier (``logits`` is ``None``).
        encodings: modality -> encoding of :mod:`mmgnn.data.pe` (``None`` or kind ``none``:
            the modality has none).
        pe_dims: modality -> raw encoding columns (``PreparedData.pe_dims``).
        pe_combine: ``"concat"`` or ``"add"`` (see :class:`NodeEncoder`).
        token_encoders: modality -> a pretrained token encoder (``out_dim``,
            ``encode_nodes(ids, counts)``, e.g. :class:`MiniLMTextEncoder`): that modality's
            ``x`` is ``encode_nodes(ndata["ids"], batch_num_nodes())`` ``[N_m, out_dim]``
            instead of ``ndata["x"]``, and ``branches[m]`` is a :class:`TokenEncodedBranch`
            holding the encoder (so stages naming ``branches.<m>`` cover it).

    Submodules: ``encoders[m]`` (modalities with an encoding), ``branches[m]``, ``skips[m]``, ``heads[m]``, ``readouts[m]``,
    ``projections[m]``, ``fusion``,
    ``classifier`` (``None`` without classes).
    """

    def __init__(
        self,
        modality_dims: Mapping[str, int],
        branch: Callable[[int], GNNBranch],
        skip: Callable[..., ModalitySkip],
        fusion: Callable[[int, int], nn.Module],
        readout: Literal[READOUTS] = "mean",
        embed_dim: int = 64,
        num_classes: int = 0,
        projection: Literal[PROJECTIONS] = "none",
        readout_queries: int = 8,
        encodings: Mapping[str, Encoding] | None = None,
        pe_dims: Mapping[str, int] | None = None,
        pe_combine: Literal["concat", "add"] = "concat",
        token_encoders: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
        token_encoders = dict(token_encoders or {})
        unknown = [m for m in token_encoders if m not in modality_dims]
        if unknown:
            raise ValueError(f"token encoders for modalities {unknown} the model does not have: {list(modality_dims)}")
        modality_dims = {m: token_encoders[m].out_dim if m in token_encoders else d for m, d in modality_dims.items()}
        self.token_encoded = tuple(token_encoders)
        self.modalities = tuple(modality_dims)
        self.embed_dim = embed_dim
        encoded = {m: e for m, e in (encodings or {}).items() if e.kind != "none"}
        self.encoders = nn.ModuleDict(
            {m: NodeEncoder(e, (pe_dims or {}).get(m, 0), int(modality_dims[m]), embed_dim, pe_combine)
             for m, e in encoded.items()}
        )
        dims = {m: self.encoders[m].out_dim if m in self.encoders else int(d) for m, d in modality_dims.items()}
        self.branches = nn.ModuleDict(
            {m: TokenEncodedBranch(token_encoders[m], branch(d)) if m in token_encoders else branch(d)
             for m, d in dims.items()}
        )
        self.skips = nn.ModuleDict(
            {m: skip(in_dim=d, branch_dim=self.branches[m].out_dim) for m, d in dims.items()}
        )
        self.heads = nn.ModuleDict({m: nn.Linear(self.skips[m].out_dim, embed_dim) for m in self.modalities})
        self.readouts = nn.ModuleDict({m: Readout(readout, embed_dim, readout_queries) for m in self.modalities})
        self.projections = nn.ModuleDict(
            {m: projection_head(projection, embed_dim) for m in self.modalities}
        )
        self.fusion = fusion(len(self.modalities), embed_dim)
        self.classifier = nn.Linear(self.fusion.out_dim, num_classes) if num_classes > 0 else None

    def forward(self, batch: MultimodalBatch, fuse: bool = True) -> ModelOutput:
        """The batch's embeddings and, with ``fuse`` (the default), its fused embedding, gates
        and logits. ``fuse=False`` skips token padding, fusion and classifier (``fused``,
        ``gates`` and ``logits`` are ``None``): a training step whose loss reads only the
        per-modality embeddings (``loss.fused=none``) needs none of them, and they would get
        no gradient."""
        if tuple(batch.modalities) != self.modalities:
            raise ValueError(f"batch modalities {batch.modalities} != model modalities {self.modalities}")
        present = batch.present
        tokens, token_mask, pooled = [], [], []
        for i, m in enumerate(self.modalities):
            graph = batch.graphs[m]
            x, position = graph.ndata["x"], None
            if m in self.token_encoded:
                x = self.branches[m].encode(graph)
            if m in self.encoders:
                position = self.encoders[m].features(graph, graph.ndata["pe"])
                x = self.encoders[m].inputs(x, position)
            h = self.skips[m](self.branches[m](graph, x), x)
            node_tokens = self.heads[m](h)
            if position is not None:
                node_tokens = node_tokens + self.encoders[m].tokens(position)
            if fuse:
                padded, mask = pad_tokens(graph, node_tokens, present[:, i])
                tokens.append(padded)
                token_mask.append(mask)
            item_pooled = self.readouts[m](graph, node_tokens)
            pooled.append(torch.where(present[:, i : i + 1], item_pooled, torch.zeros_like(item_pooled)))
        fused = gates = logits = None
        if fuse:
            fused, gates = self.fusion(tokens, token_mask, torch.stack(pooled, dim=1), present)
            logits = None if self.classifier is None else self.classifier(fused)
        return ModelOutput(
            modalities=self.modalities,
            embeddings={
                m: torch.where(
                    present[:, i : i + 1],
                    F.normalize(self.projections[m](pooled[i]), dim=-1),
                    torch.zeros_like(pooled[i]),
                )
                for i, m in enumerate(self.modalities)
            },
            present=present,
            fused=fused,
            gates=gates,
            logits=logits,
        )
