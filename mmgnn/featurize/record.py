"""``featurize.json``: what a featurized folder records, read back into featurizers.

``python -m mmgnn.featurize`` writes ``<out>/featurize.json`` with, per modality column, the
featurizer's settings (``kind``, ``encoder`` and its constructor arguments) and the versions of
the libraries and weights that computed it. A run trained on that folder copies the file into
its run folder (:func:`record_featurize_info`, called by the training job), so that
``python -m mmgnn.inference --run RUN --manifest new.csv`` featurizes new raw items with the
same featurizers (:func:`load_featurizers`).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mmgnn.featurize.base import Featurizer, featurizer_from_settings

if TYPE_CHECKING:
    from mmgnn.data.dataset import MultimodalDataset

INFO_FILE = "featurize.json"

log = logging.getLogger(__name__)


def read_info(source: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``featurize.json`` of a folder (dataset or run), or of the file itself."""
    path = Path(source)
    file = path / INFO_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no {INFO_FILE} (written by python -m mmgnn.featurize; a run "
                                "records it only when it trained on a featurized folder)")
    try:
        info = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("modalities"), dict):
        raise ValueError(f"{file}: no 'modalities' mapping of column -> featurizer settings")
    return info


def load_featurizers(source: str | os.PathLike, columns: list[str] | None = None,
                     device: str = "auto", check_versions: bool = True) -> dict[str, Featurizer]:
    """The featurizers that wrote a featurized folder, rebuilt from its ``featurize.json``.

    Args:
        source: a dataset folder written by ``mmgnn.featurize``, a run folder that recorded it,
            or the ``featurize.json`` file.
        columns: the modality columns to rebuild (default: all, in the recorded order).
        device: torch device of the encoders that take one.
        check_versions: compare the recorded library and weight versions with the installed
            ones: a changed weights file (``weights_sha256``) is an error, another version a
            warning (the features may differ slightly from the recorded ones).

    Returns:
        column -> featurizer, with featurizers of equal settings shared (loaded once).

    Raises:
        FileNotFoundError: no ``featurize.json``. ValueError: a column it does not record, or
            settings this version cannot rebuild, or changed weights.
    """
    info = read_info(source)
    recorded = info["modalities"]
    columns = list(recorded) if columns is None else list(columns)
    missing = [c for c in columns if c not in recorded]
    if missing:
        raise ValueError(f"{source}: {INFO_FILE} records no featurizer for column(s) {missing} "
                         f"(it records {list(recorded)})")
    made: dict[str, Featurizer] = {}
    shared: dict[str, Featurizer] = {}
    for column in columns:
        facts = recorded[column]
        settings = facts["settings"]
        key = json.dumps([facts.get("kind"), settings], sort_keys=True)
        if key not in shared:
            try:
                shared[key] = featurizer_from_settings(settings, kind=facts.get("kind"), device=device)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{source}: column {column!r}: cannot rebuild its featurizer from "
                                 f"{settings}: {err}") from None
        made[column] = shared[key]
        if check_versions and "versions" in facts:
            _compare_versions(source, column, facts["versions"], made[column].versions())
    return made


def _compare_versions(source: Any, column: str, recorded: dict[str, str], installed: dict[str, str]) -> None:
    if recorded.get("weights_sha256", installed.get("weights_sha256")) != installed.get("weights_sha256"):
        raise ValueError(f"{source}: column {column!r}: the encoder's weights have changed since the data "
                         f"was featurized (sha256 {recorded['weights_sha256'][:12]}... recorded, "
                         f"{installed.get('weights_sha256', 'none')[:12]}... now)")
    changed = {k: (v, installed.get(k)) for k, v in recorded.items() if installed.get(k, v) != v}
    if changed:
        log.warning("%s: column %r was featurized with %s; installed now: %s (features may differ slightly)",
                    source, column, {k: v[0] for k, v in changed.items()}, {k: v[1] for k, v in changed.items()})


def record_featurize_info(data_path: str | os.PathLike | None, run_dir: str | os.PathLike) -> Path | None:
    """Copy ``<data_path>/featurize.json`` into ``run_dir`` when the run's dataset folder has one.

    Returns the copy's path, or ``None`` (no ``data_path``, or a folder not written by
    ``mmgnn.featurize``: such a run can embed prepared folders only).
    """
    if data_path is None:
        return None
    source = Path(data_path) / INFO_FILE
    if not source.is_file():
        return None
    target = Path(run_dir) / INFO_FILE
    shutil.copyfile(source, target)
    return target


def featurize_like(source: str | os.PathLike, manifest: str | os.PathLike, columns: list[str] | None = None,
                   device: str = "auto", cache: str | os.PathLike | None = None,
                   progress: bool = False) -> "MultimodalDataset":
    """New raw items featurized exactly as a recorded folder's: the dataset, in manifest order.

    Args:
        source: what records the featurizers (:func:`load_featurizers`): a trained run's folder,
            a featurized dataset folder, or a ``featurize.json``.
        manifest: the new items' manifest (the same columns as the recorded one; ``label``,
            ``group`` and ``split`` optional, empty cells for a modality an item lacks).
        columns: the modality columns to featurize (a run: the modalities it trained on).
        device: torch device of the encoders.
        cache: a per-item cache folder to use (``None``: none).
        progress: show progress bars.

    Raises:
        FeaturizeError: a bad manifest or item (naming row, item, column and file).
        FileNotFoundError, ValueError: see :func:`load_featurizers`.
    """
    from mmgnn.data.folder import ITEMS_FILE, load_folder
    from mmgnn.featurize.build import featurize

    featurizers = load_featurizers(source, columns, device=device)
    threads = int(read_info(source).get("threads", 1))  # the count the recorded features were made with
    with tempfile.TemporaryDirectory(prefix="mmgnn-featurize-") as tmp:
        out = Path(tmp) / "data"
        featurize(manifest, out, featurizers, cache=cache, progress=progress, threads=threads)
        items = pd.read_csv(out / ITEMS_FILE, dtype=str, keep_default_na=False)
        if "split" not in items.columns:  # every row is embedded: no split is drawn
            items.assign(split="test").to_csv(out / ITEMS_FILE, index=False)
        return load_folder(out, modalities=list(featurizers))
