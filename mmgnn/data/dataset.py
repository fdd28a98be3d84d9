"""In-memory form of a multimodal dataset: the folder contract of DESIGN.md as arrays.

Every loader (``folder``, ``synthetic``) returns a :class:`MultimodalDataset`; everything
downstream (graph building, standardisation, batching) reads only this form.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
# What corresponds across modalities (data.pairing): the same item, or any same-label item.
PAIRINGS = ("item", "label")


def csr_take(ptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather the CSR ranges of ``rows`` (int64 ``[n]``, in the given order).

    Returns the positions of their entries (``[sum of lengths]``) and the ptr of the gathered
    layout (``[n + 1]``). The torch counterpart for batching is ``batch.csr_positions``.
    """
    start = ptr[rows]
    lengths = ptr[rows + 1] - start
    new_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.arange(new_ptr[-1], dtype=np.int64) - np.repeat(new_ptr[:-1], lengths)
    return flat + np.repeat(start, lengths), new_ptr


@dataclass
class ModalityData:
    """One modality of every item in CSR layout.

    Args:
        name: modality name (the ``<modality>.npz`` stem).
        x: float32 ``[total_nodes, d]`` node features, items in row order.
        ptr: int64 ``[n_items + 1]``; item ``i`` owns ``x[ptr[i]:ptr[i+1]]``; an empty
            range means the item lacks this modality.
        pos: optional float32 ``[total_nodes, k]`` node positions.
        edge_index: optional int64 ``[2, total_edges]`` user-given edges in local node ids.
        edge_ptr: optional int64 ``[n_items + 1]``, item ``i`` owns
            ``edge_index[:, edge_ptr[i]:edge_ptr[i+1]]``.
        ids: optional int64 ``[total_nodes]`` token ids of the nodes (a text modality made by
            ``mmgnn.featurize``: the vocabulary ids of the encoder that produced ``x``).
    """

    name: str
    x: np.ndarray
    ptr: np.ndarray
    pos: np.ndarray | None = None
    edge_index: np.ndarray | None = None
    edge_ptr: np.ndarray | None = None
    ids: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_items(self) -> int:
        return int(self.ptr.shape[0] - 1)

    @property
    def counts(self) -> np.ndarray:
        """int64 ``[n_items]`` nodes per item."""
        return np.diff(self.ptr)

    @property
    def present(self) -> np.ndarray:
        """bool ``[n_items]``: the item has at least one node of this modality."""
        return self.counts > 0


@dataclass
class MultimodalDataset:
    """Items plus one :class:`ModalityData` per modality (two or more), rows aligned.

    Args:
        items: the items table (``item_id``, optional ``label`` and ``group``, ``split``
            and any other kept column), one row per item in the modality arrays' order.
        modalities: modality name -> data, in a fixed order (the model's column order).
        labels: int64 ``[n_items]`` class codes into ``label_names``, or ``None`` when the
            dataset has no labels (retrieval only).
        label_names: original label values (as strings) in code order.
        groups: int64 ``[n_items]`` group codes into ``group_names`` (all 0 without groups).
        group_names: original group values in code order.
        split: ``[n_items]`` array of ``"train" | "val" | "test"``.
        name: a short name for summaries and run names.
    """

    items: pd.DataFrame
    modalities: dict[str, ModalityData]
    labels: np.ndarray | None
    label_names: list[str] | None
    groups: np.ndarray
    group_names: list[str]
    split: np.ndarray
    name: str = "dataset"
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def n_items(self) -> int:
        return int(len(self.items))

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(self.modalities)

    @property
    def num_classes(self) -> int:
        return 0 if self.label_names is None else len(self.label_names)

    def indices(self, split: str) -> np.ndarray:
        """int64 row indices of one split (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return np.flatnonzero(self.split == split).astype(np.int64)

    def present_matrix(self) -> np.ndarray:
        """bool ``[n_items, n_modalities]``: which item has which modality."""
        return np.stack([m.present for m in self.modalities.values()], axis=1)

    def fingerprint(self) -> str:
        """A content hash of every array and the split; keys caches of derived data."""
        if self._fingerprint is None:
            h = hashlib.sha1()
            for name, m in self.modalities.items():
                h.update(name.encode())
                for arr in (m.x, m.ptr, m.pos, m.edge_index, m.edge_ptr, m.ids):
                    if arr is not None:
                        h.update(str(arr.shape).encode())
                        h.update(np.ascontiguousarray(arr).tobytes())
            h.update(np.asarray(self.split).astype("U5").tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint
