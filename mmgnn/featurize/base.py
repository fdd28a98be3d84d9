"""What every featurizer provides: settings, per-item decoding with checks, batched computing."""
from __future__ import annotations

from abc import ABC, abstractmethod
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (``"absent"`` for one not installed)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


class Featurizer(ABC):
    """Raw values of one modality kind -> node arrays in the dataset folder contract.

    A cell's content (the text's UTF-8 bytes, or a file's bytes) goes through
    :meth:`decode` one item at a time (all checks of bad input happen there, raising
    :class:`~mmgnn.featurize.manifest.ItemError`), then through :meth:`compute` a batch at a
    time. Outputs depend only on the content and :meth:`settings`, which key the item cache.
    """

    kind: str
    reads_files: bool  # True: a cell names a file; False: a cell holds the value itself

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Every option that changes the output (JSON-serialisable)."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the libraries (and weights) that produce the output."""

    @abstractmethod
    def decode(self, content: bytes) -> Any:
        """One item's content -> the input of :meth:`compute`; raises ``ItemError`` if bad."""

    @abstractmethod
    def compute(self, decoded: list[Any]) -> list[dict[str, np.ndarray]]:
        """A batch of decoded items -> per item ``x`` float32 ``[n, d]``, ``pos`` float32
        ``[n, k]`` and optional ``ids`` int64 ``[n]``."""
