"""From a loaded dataset to batches: subsample, standardise, build graphs and node encodings,
make loaders."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from mmgnn.data.batch import MultimodalCollator
from mmgnn.data.dataset import SPLITS, ModalityData, MultimodalDataset, csr_take
from mmgnn.data.graphs import GraphSpec, ModalityGraphs, build_graphs, graph_summary
from mmgnn.data.normalize import Standardizer
from mmgnn.data.pe import Encoding, compute_encoding


def subset_dataset(dataset: MultimodalDataset, rows: np.ndarray) -> MultimodalDataset:
    """The items ``rows`` (int64 ``[n]``) of ``dataset`` as a new dataset, arrays copied."""
    rows = np.asarray(rows, dtype=np.int64)
    modalities = {}
    for name, m in dataset.modalities.items():
        node_pos, ptr = csr_take(m.ptr, rows)
        edge_index = edge_ptr = None
        if m.edge_index is not None:
            edge_pos, edge_ptr = csr_take(m.edge_ptr, rows)
            edge_index = m.edge_index[:, edge_pos]
        modalities[name] = ModalityData(
            name=name,
            x=m.x[node_pos],
            ptr=ptr,
            pos=None if m.pos is None else m.pos[node_pos],
            edge_index=edge_index,
            edge_ptr=edge_ptr,
            ids=None if m.ids is None else m.ids[node_pos],
        )
    return replace(
        dataset,
        items=dataset.items.iloc[rows].reset_index(drop=True),
        modalities=modalities,
        labels=None if dataset.labels is None else dataset.labels[rows],
        groups=dataset.groups[rows],
        split=dataset.split[rows],
        _fingerprint=None,
    )


def sample_per_split(dataset: MultimodalDataset, max_items: int, seed: int) -> np.ndarray:
    """``max_items`` sorted rows drawn from every split in proportion to its size."""
    rng = np.random.default_rng([seed, 0x5AB5E7])  # a stream apart from the split's own
    fraction = max_items / dataset.n_items
    rows = []
    for split in SPLITS:
        pool = dataset.indices(split)
        take = min(len(pool), max(1, round(fraction * len(pool)))) if len(pool) else 0
        rows.append(rng.choice(pool, size=take, replace=False))
    return np.sort(np.concatenate(rows))


@dataclass
class PreparedData:
    """A dataset ready for training: standardised features, cached graphs, a collator.

    Attributes:
        dataset: the (subsampled, standardised) dataset.
        graphs: modality -> :class:`ModalityGraphs`.
        standardizer: the train-split statistics, or ``None`` when standardisation is off.
        collator: the ``collate_fn`` that turns row indices into a ``MultimodalBatch``.
        timings: seconds spent per preparation phase (``standardize``, ``graphs``, ``pe``).
        encodings: modality -> encoding (:mod:`mmgnn.data.pe`) for the modalities that have
            one (kind other than ``none``).
        pe: modality -> float32 ``[total_nodes, raw_dim]`` raw encodings, batched as
            ``ndata["pe"]``.
    """

    dataset: MultimodalDataset
    graphs: dict[str, ModalityGraphs]
    standardizer: Standardizer | None
    collator: MultimodalCollator
    specs: dict[str, GraphSpec]
    timings: dict[str, float]
    encodings: dict[str, Encoding] = field(default_factory=dict)
    pe: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def pe_dims(self) -> dict[str, int]:
        """modality -> raw encoding columns (what ``MultimodalGNN(pe_dims=)`` takes)."""
        return {m: int(v.shape[1]) for m, v in self.pe.items()}

    def loader(
        self,
        split: str,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        rows: np.ndarray | None = None,
    ) -> DataLoader:
        """A ``DataLoader`` over one split's rows (or the given ``rows``)."""
        rows = self.dataset.indices(split) if rows is None else rows
        return DataLoader(
            rows.tolist(),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=self.collator,
        )

    def summary(self) -> pd.DataFrame:
        """One row per modality: items, missing, nodes, edges, builder (+ split sizes)."""
        return graph_summary(self.dataset, self.graphs, self.specs)

    def split_sizes(self) -> dict[str, int]:
        return {s: int((self.dataset.split == s).sum()) for s in SPLITS}


def prepare_data(
    dataset: MultimodalDataset,
    specs: dict[str, GraphSpec],
    self_loops: bool = False,
    standardize: bool = True,
    max_items: int | None = None,
    seed: int = 0,
    encodings: dict[str, Encoding] | None = None,
) -> PreparedData:
    """Subsample (``max_items``), standardise with train statistics, build every graph and
    the node encodings (``encodings``: modality -> encoding; kind ``none`` or absent: none)."""
    if max_items is not None and max_items < dataset.n_items:
        dataset = subset_dataset(dataset, sample_per_split(dataset, max_items, seed))
    timings: dict[str, float] = {}
    standardizer = None
    t0 = time.perf_counter()
    if standardize:
        standardizer = Standardizer.fit(dataset, dataset.indices("train"))
        dataset = standardizer.transform(dataset)
    timings["standardize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    graphs = build_graphs(dataset, specs, self_loops=self_loops)
    timings["graphs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph_key = (dataset.fingerprint(), tuple((m, specs[m]) for m in dataset.modality_names), bool(self_loops))
    encodings = {m: e for m, e in (encodings or {}).items() if e.kind != "none"}
    pe = {m: compute_encoding(graphs[m], e, graph_key) for m, e in encodings.items()}
    timings["pe"] = time.perf_counter() - t0
    labels = None if dataset.labels is None else torch.as_tensor(dataset.labels)
    collator = MultimodalCollator(graphs, labels, torch.as_tensor(dataset.groups), pe)
    return PreparedData(dataset, graphs, standardizer, collator, specs, timings, encodings, pe)
