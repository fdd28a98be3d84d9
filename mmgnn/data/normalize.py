"""Per-modality feature standardisation fitted on training items only."""
from __future__ import annotations

import os


from dataclasses import dataclass, replace

import numpy as np

from mmgnn.data.dataset import MultimodalDataset, csr_take

STD_FLOOR = 1e-6


@dataclass
class Standardizer:
    """Per-modality feature standardisation ``x' = (x - mean) / std`` (per feature dimension).

    Args:
        state: modality -> (mean float32 ``[d]``, std float32 ``[d]``), std floored at
            ``STD_FLOOR`` so constant features map to 0 instead of dividing by zero.
    """

    state: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def fit(cls, dataset: MultimodalDataset, rows: np.ndarray) -> Standardizer:
        """Fit mean and (population) std per modality on the nodes of ``rows`` only.

        Args:
            dataset: the dataset.
            rows: int item indices (the train split) or a bool mask ``[n_items]``.

        Raises:
            ValueError: a modality has no nodes in ``rows`` (nothing to fit it on).
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        state = {}
        for name, modality in dataset.modalities.items():
            nodes, _ = csr_take(modality.ptr, rows)
            if len(nodes) == 0:
                raise ValueError(
                    f"cannot fit the standardizer: modality {name!r} has no nodes in the "
                    f"{len(rows)} given (train) items"
                )
            x = modality.x[nodes].astype(np.float64)
            mean = x.mean(axis=0)
            std = np.maximum(x.std(axis=0), STD_FLOOR)
            state[name] = (mean.astype(np.float32), std.astype(np.float32))
        return cls(state)

    def transform(self, dataset: MultimodalDataset) -> MultimodalDataset:
        """A new dataset with every modality's ``x`` standardised; all other fields shared.

        Raises:
            ValueError: the dataset has a modality this standardizer was not fitted on, or a
                different feature dimension.
        """
        modalities = {}
        for name, modality in dataset.modalities.items():
            if name not in self.state:
                raise ValueError(
                    f"the standardizer has no statistics for modality {name!r} "
                    f"(fitted on {sorted(self.state)})"
                )
            mean, std = self.state[name]
            if modality.dim != len(mean):
                raise ValueError(
                    f"modality {name!r} has {modality.dim} features but the standardizer was "
                    f"fitted on {len(mean)}"
                )
            modalities[name] = replace(modality, x=(modality.x - mean) / std)
        return replace(dataset, modalities=modalities, _fingerprint=None)

    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics to ``path`` (npz with ``mean_<modality>``, ``std_<modality>``)."""
        arrays = {}
        for name, (mean, std) in self.state.items():
            arrays[f"mean_{name}"], arrays[f"std_{name}"] = mean, std
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Standardizer:
        """Read statistics written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as archive:
            names = [key[len("mean_"):] for key in archive.files if key.startswith("mean_")]
            return cls({name: (archive[f"mean_{name}"], archive[f"std_{name}"]) for name in names})
