"""Per-item cache of computed node arrays, keyed by the item's content hash and the settings."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FORMAT = 1  # bump when the stored arrays change meaning


def item_key(kind: str, settings: dict[str, Any], content: bytes) -> str:
    """sha256 of (kind, settings, cache format) and the item's raw content, as hex.

    ``settings`` holds every option and library version the output depends on."""
    digest = hashlib.sha256()
    digest.update(json.dumps([kind, settings, CACHE_FORMAT], sort_keys=True).encode())
    digest.update(b"\0")
    digest.update(content)
    return digest.hexdigest()


class ItemCache:
    """A folder of ``<kind>/<key[:2]>/<key>.npz``, one uncompressed archive per item.

    Entries are written to a temporary file and renamed, so an interrupted run leaves no
    partial entry; an unreadable entry counts as a miss and is recomputed.

    Args:
        root: the cache folder, or ``None`` to cache nothing.
    """

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = None if root is None else Path(root)

    def _file(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.npz"

    def get(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        if self.root is None:
            return None
        file = self._file(kind, key)
        if not file.is_file():
            return None
        try:
            with np.load(file, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except (OSError, ValueError, EOFError):
            return None

    def put(self, kind: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        if self.root is None:
            return
        file = self._file(kind, key)
        file.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=file.parent, suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, **arrays)
            os.replace(temporary, file)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
