"""Encoders a user has on disk: a folder of Hugging Face weights, or a TorchScript file.

Nothing here reaches a network: Hugging Face folders load with ``local_files_only=True`` and the
offline switches set, TorchScript files with ``torch.jit.load`` (which runs no pickled Python:
a TorchScript archive holds code in TorchScript's own language and tensors). The weights'
content hash (:func:`files_sha256`) is part of a featurizer's versions, so the item cache and a
trained run's ``featurize.json`` notice when the file behind a path has changed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

# Files of a Hugging Face folder that decide what it computes (weights, config, preprocessing).
_HF_FILES = ("*.safetensors", "*.bin", "*.json", "*.txt", "*.model")


def pick_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def files_sha256(path: str | os.PathLike) -> str:
    """sha256 over a file, or over a folder's model files (names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted({f for pattern in _HF_FILES for f in path.rglob(pattern)})
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_local(path: str, what: str, folder: bool) -> Path:
    """``path`` as an existing folder (``folder``) or file, else a clear ``ValueError``."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise ValueError(f"{what}: {path} does not exist (encoders load from local files only)")
    if folder and not (resolved / "config.json").is_file():
        raise ValueError(f"{what}: {path} is not a Hugging Face model folder (no config.json); "
                         "save one with model.save_pretrained(folder) and processor.save_pretrained(folder)")
    if not folder and not resolved.is_file():
        raise ValueError(f"{what}: {path} is not a file (expected a TorchScript .pt file)")
    return resolved


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def load_hf_model(path: str, device: torch.device) -> torch.nn.Module:
    """``transformers.AutoModel`` from a local folder, eval mode, frozen, on ``device``."""
    folder = check_local(path, "Hugging Face encoder", folder=True)
    _offline()
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder, local_files_only=True)
    return model.to(device).eval().requires_grad_(False)


def load_hf_processor(path: str, kind: str):
    """The folder's preprocessing: ``AutoTokenizer`` (text), ``AutoImageProcessor`` (image) or
    ``AutoFeatureExtractor`` (audio)."""
    folder = check_local(path, "Hugging Face encoder", folder=True)
    _offline()
    import transformers

    loader = {"text": transformers.AutoTokenizer, "image": transformers.AutoImageProcessor,
              "audio": transformers.AutoFeatureExtractor}[kind]
    try:
        return loader.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        what = {"text": "tokenizer", "image": "image processor", "audio": "feature extractor"}[kind]
        raise ValueError(f"Hugging Face encoder {path}: no {what} in the folder ({err}); save it "
                         f"there with processor.save_pretrained(folder)") from None


def load_torchscript(path: str, device: torch.device) -> torch.jit.ScriptModule:
    """A TorchScript module (``torch.jit.save`` of a scripted or traced model), eval mode, frozen."""
    file = check_local(path, "TorchScript encoder", folder=False)
    try:
        module = torch.jit.load(str(file), map_location=device)
    except RuntimeError as err:
        raise ValueError(f"TorchScript encoder {path}: not a TorchScript file torch.jit.load "
                         f"reads ({str(err).splitlines()[0]})") from None
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


def hf_versions(path: str) -> dict[str, str]:
    from mmgnn.featurize.base import package_versions

    return {**package_versions("torch", "transformers"), "weights_sha256": files_sha256(path)}


def torchscript_versions(path: str) -> dict[str, str]:
    from mmgnn.featurize.base import package_versions

    return {**package_versions("torch"), "weights_sha256": files_sha256(path)}


def parse_encoder(value: str) -> tuple[str, str | None]:
    """``--<kind>-encoder`` value -> (encoder name, path): ``hf:/folder`` -> ("hf", "/folder"),
    ``torchscript:/m.pt`` -> ("torchscript", "/m.pt"), ``patches`` -> ("patches", None)."""
    for prefix in ("hf", "torchscript"):
        if value.startswith(prefix + ":"):
            path = value[len(prefix) + 1:]
            if not path:
                raise ValueError(f"{value!r}: give the path after '{prefix}:'")
            return prefix, str(Path(path).expanduser().resolve())
    return value, None
