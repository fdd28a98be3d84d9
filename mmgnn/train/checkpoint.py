"""Checkpoints as plain data: tensors, numbers, strings, lists, tuples and dicts only.

A run folder may come from someone else, and ``torch.load`` without ``weights_only=True``
unpickles arbitrary Python objects (torch 2.2's default), which can run code. Every checkpoint
mmgnn writes is loadable by torch's weights-only unpickler, and every load goes through
:func:`load_checkpoint`, which uses it and refuses anything else with an error naming the file.
"""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read (truncated, corrupt or not a torch checkpoint)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled Python objects (not plain tensors and numbers)."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with torch's weights-only unpickler; never unpickle objects.

    Raises :class:`UnsafeCheckpointError` naming ``path`` when the file carries anything but
    tensors and plain containers, and :class:`CheckpointError` when it is not a readable
    torch checkpoint (e.g. truncated by a full disk).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).rsplit("WeightsUnpickler error:", 1)[-1].strip()
        raise UnsafeCheckpointError(
            f"{path} is not a plain-tensor checkpoint and will not be unpickled "
            f"(torch's weights-only loader: {reason})"
        ) from None
    except RuntimeError as err:
        if "PytorchStreamReader" not in str(err):
            raise
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint (truncated or corrupt?): {err}"
        ) from None


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch CPU generator states as plain data.

    Python's state is a tuple of ints; NumPy's MT19937 key becomes an int64 tensor (the
    weights-only unpickler rejects numpy arrays); torch's is a uint8 tensor.
    """
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    torch.set_rng_state(state["torch"].cpu())
