"""Evaluation passes: collect a split's outputs, score them, probe robustness."""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mmgnn.data.batch import MultimodalBatch, csr_positions
from mmgnn.data.pipeline import PreparedData
from mmgnn.metrics import metric_key_part, multimodal_metrics, robustness_auc

log = logging.getLogger(__name__)


@dataclass
class SplitOutputs:
    """A split's model outputs as numpy arrays (``N`` items, ``M`` modalities).

    ``embeddings`` modality -> ``[N, D]``; ``present`` bool ``[N, M]``; ``fused`` ``[N, D_f]``,
    ``gates`` ``[N, M]`` and ``logits`` ``[N, C]``, each None when the model did not fuse
    (``logits`` also without a classifier); ``labels`` ``[N]`` or None; ``groups`` ``[N]``;
    ``index`` ``[N]`` dataset rows.
    """

    embeddings: dict[str, np.ndarray]
    present: np.ndarray
    fused: np.ndarray | None
    gates: np.ndarray | None
    logits: np.ndarray | None
    labels: np.ndarray | None
    groups: np.ndarray
    index: np.ndarray


BatchTransform = Callable[[MultimodalBatch], MultimodalBatch]


@torch.no_grad()
def collect_outputs(
    model: nn.Module,
    loader,
    device: torch.device,
    transform: BatchTransform | None = None,
    fuse: bool = True,
) -> SplitOutputs:
    """Run ``model`` in eval mode over ``loader`` (optionally transforming each batch).

    ``fuse=False`` (a run whose loss never trains the fusion, ``loss.fused=none``) skips the
    fusion and classifier: ``fused``, ``gates`` and ``logits`` are None, so no metric of the
    randomly initialised fusion is computed.
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list] = {k: [] for k in ("present", "fused", "gates", "logits", "groups", "index")}
    parts["labels"], emb = [], {}
    for batch in loader:
        if transform is not None:
            batch = transform(batch)
        out = model(batch.to(device), fuse=fuse)
        for m in out.modalities:
            emb.setdefault(m, []).append(out.embeddings[m].float().cpu())
        parts["present"].append(out.present.cpu())
        for key in ("fused", "gates", "logits"):
            if getattr(out, key) is not None:
                parts[key].append(getattr(out, key).float().cpu())
        if batch.labels is not None:
            parts["labels"].append(batch.labels)
        parts["groups"].append(batch.groups)
        parts["index"].append(batch.index)
    model.train(was_training)

    def cat(key):
        return torch.cat(parts[key]).numpy() if parts[key] else None

    return SplitOutputs(
        embeddings={m: torch.cat(v).numpy() for m, v in emb.items()},
        present=cat("present"),
        fused=cat("fused"),
        gates=cat("gates"),
        logits=cat("logits"),
        labels=cat("labels"),
        groups=cat("groups"),
        index=cat("index"),
    )


def score(outputs: SplitOutputs, group_names: list[str], pairing: str) -> dict[str, float]:
    """Every metric of ``mmgnn.metrics.multimodal_metrics`` for one split's outputs (none of
    ``fused/*`` and ``gates/*`` when the outputs have no fused embedding)."""
    return multimodal_metrics(
        embeddings=outputs.embeddings,
        present=outputs.present,
        fused=outputs.fused,
        logits=outputs.logits,
        labels=outputs.labels,
        groups=outputs.groups,
        group_names=group_names,
        pairing=pairing,
        gates=outputs.gates,
    )


def drop_modalities(columns: list[int]) -> BatchTransform:
    """A transform that marks the modality columns ``columns`` missing for every item."""

    def transform(batch: MultimodalBatch) -> MultimodalBatch:
        present = batch.present.clone()
        present[:, columns] = False
        return batch.with_present(present)

    return transform


def add_noise(modality: str, sigma: torch.Tensor, seed: int) -> BatchTransform:
    """A transform adding Gaussian noise ``N(0, sigma^2)`` (``sigma`` ``[d]``) to one modality."""
    generator = torch.Generator().manual_seed(seed)

    def transform(batch: MultimodalBatch) -> MultimodalBatch:
        g = batch.graphs[modality]
        x = g.ndata["x"]
        g.ndata["x"] = x + torch.randn(x.shape, generator=generator) * sigma
        return batch

    return transform


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics a robustness probe reports: mean retrieval recall, retrieval mAP and, when
    the fusion is trained (``fused/acc`` computed), fused accuracy."""
    keys = ("fused/acc", "retrieval/mean_recall", "retrieval/map")
    return {k: metrics[k] for k in keys if k in metrics}


def noise_probed(model: nn.Module, names: list[str]) -> list[str]:
    """The modalities of ``names`` whose features ``x`` the model reads, so that noise added to
    them can change its outputs; logs the skipped ones (those encoded from token ids)."""
    skipped = [m for m in names if m in model.token_encoded]
    if skipped:
        log.info("noise probe skipped for %s: the model encodes them from token ids "
                 "(text_encoder) and never reads the features x the probe perturbs", skipped)
    return [m for m in names if m not in skipped]


def robustness(
    model: nn.Module,
    data: PreparedData,
    split: str,
    batch_size: int,
    device: torch.device,
    pairing: str,
    missing: bool,
    noise_levels: list[float],
    seed: int = 0,
    fuse: bool = True,
) -> dict[str, float]:
    """Missing-modality and noise robustness of a trained model on one split.

    Missing: every modality and every pair of modalities removed at test time (only
    combinations that leave at least one modality in the data). Every item of the split
    counts in every condition: an item left with no modality is a wrong class and a missed
    same-label query, never dropped from the denominator
    (:func:`mmgnn.metrics.multimodal_metrics`); a retrieval direction keeps the items having
    both its modalities. Noise (MultiBench, Liang et al. 2021):
    Gaussian noise of ``level`` feature standard deviations added to one modality at a time,
    for each level, and the normalised area under each metric's curve over the levels.
    A modality the model encodes from token ids (``model.token_encoded``, text_encoder=minilm)
    gets no noise probe: the model never reads the features ``x`` the probe perturbs.
    ``fuse=False`` (the fusion is not trained): no fused metric in any condition
    (:func:`collect_outputs`).
    """
    names = list(data.dataset.modality_names)
    groups = data.dataset.group_names
    results: dict[str, float] = {}

    def run(transform: BatchTransform | None) -> dict[str, float]:
        loader = data.loader(split, batch_size)
        return headline(score(collect_outputs(model, loader, device, transform, fuse), groups, pairing))

    if missing:
        for r in (1, 2):
            for combo in itertools.combinations(range(len(names)), r):
                if len(combo) >= len(names):
                    continue
                tag = "_and_".join(metric_key_part(names[c]) for c in combo)
                for k, v in run(drop_modalities(list(combo))).items():
                    results[f"missing/{tag}/{k}"] = v
    rows = data.dataset.indices(split)
    for m in noise_probed(model, names) if noise_levels else []:
        key = metric_key_part(m)
        graphs = data.graphs[m]
        node_rows, _ = csr_positions(graphs.ptr, torch.as_tensor(rows))
        sigma = graphs.x[node_rows].std(dim=0) if len(node_rows) > 1 else torch.ones(graphs.x.shape[1])
        curves: dict[str, list[float]] = {}
        for level in noise_levels:
            for k, v in run(add_noise(m, sigma * float(level), seed)).items():
                results[f"noise/{key}/{level:g}/{k}"] = v
                curves.setdefault(k, []).append(v)
        for k, values in curves.items():
            results[f"noise/{key}/auc/{k}"] = robustness_auc(list(noise_levels), values)
    return results
