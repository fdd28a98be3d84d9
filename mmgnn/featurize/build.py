"""Raw manifest -> dataset folder: decode, featurize in batches, cache, write atomically."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mmgnn.data.folder import ITEMS_FILE, load_folder
from mmgnn.featurize.base import Featurizer, package_versions
from mmgnn.featurize.cache import ItemCache, item_key
from mmgnn.featurize.manifest import FeaturizeError, ItemError, Manifest, read_manifest
from mmgnn.featurize.record import INFO_FILE

SKIPPED_FILE = "skipped.csv"


@dataclass
class Skipped:
    """One bad item left out under ``skip_bad`` (a row of ``skipped.csv``)."""

    row: int
    item_id: str
    column: str
    file: str
    error: str


def default_cache(out: str | os.PathLike) -> Path:
    """The cache folder beside the output folder: ``<out>.cache``."""
    out = Path(out)
    return out.with_name(out.name + ".cache")


def _content(manifest: Manifest, row: int, column: str, featurizer: Featurizer) -> bytes:
    """The cell's text as UTF-8, or the bytes of the file it names."""
    value = manifest.table[column].iat[row]
    if not featurizer.reads_files:
        return value.encode("utf-8")
    if not value.strip():
        raise ItemError(f"blank file name {value!r}")
    file = manifest.file(row, column)
    if not file.exists():
        raise ItemError("file not found")
    if file.is_dir():
        raise ItemError("is a folder, not a file")
    try:
        return file.read_bytes()
    except OSError as err:
        raise ItemError(f"file cannot be read ({type(err).__name__}: {err.strerror or err})") from None


def _featurize_column(
    manifest: Manifest, column: str, featurizer: Featurizer, cache: ItemCache, batch_size: int,
    bad: Callable[[int, str, str], None], progress: bool, threads: int,
) -> tuple[dict[int, dict[str, np.ndarray]], dict[str, int]]:
    """Node arrays of every item that has ``column`` (row -> arrays) and computed/reused counts."""
    rows = np.flatnonzero(manifest.present(column))
    kind = featurizer.kind
    settings = {**featurizer.settings(), "versions": featurizer.versions(), "threads": threads}
    results: dict[int, dict[str, np.ndarray]] = {}
    counts = {"computed": 0, "reused": 0}
    with tqdm(total=len(rows), desc=f"{column} ({kind})", unit="item", disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            batch, pending = rows[start:start + batch_size], []
            for row in batch:
                try:
                    content = _content(manifest, row, column, featurizer)
                    key = item_key(kind, settings, content)
                    cached = cache.get(kind, key)
                    if cached is None:
                        pending.append((row, key, featurizer.decode(content)))
                    else:
                        results[row] = cached
                        counts["reused"] += 1
                except ItemError as err:
                    bad(row, column, str(err))
            for (row, key, _), arrays in _compute(featurizer, pending, column, bad):
                cache.put(kind, key, arrays)
                results[row] = arrays
                counts["computed"] += 1
            bar.update(len(batch))
    return results, counts


def _check_arrays(arrays: dict[str, np.ndarray]) -> None:
    x, pos = arrays.get("x"), arrays.get("pos")
    if x is None or x.ndim != 2 or len(x) == 0:
        raise ItemError(f"the encoder gave no nodes (x of shape {None if x is None else x.shape})")
    if not np.isfinite(x).all():
        raise ItemError("the encoder gave non-finite features (NaN or inf)")
    if pos is not None and len(pos) != len(x):
        raise ItemError(f"the encoder gave {len(x)} nodes but {len(pos)} positions")


def _compute(featurizer: Featurizer, pending: list[tuple[int, str, Any]], column: str,
             bad: Callable[[int, str, str], None]) -> list[tuple[tuple[int, str, Any], dict[str, np.ndarray]]]:
    """``featurizer.compute`` on a batch; when the batch fails, each item alone, so that an
    item the encoder cannot take is named (row, item, file) like any bad item."""
    if not pending:
        return []
    try:
        computed = featurizer.compute([decoded for _, _, decoded in pending])
        for arrays in computed:
            _check_arrays(arrays)
        return list(zip(pending, computed))
    except Exception:  # noqa: BLE001  (which item? retried one by one below)
        if len(pending) == 1:
            return _compute_one(featurizer, pending[0], column, bad)
    return [done for entry in pending for done in _compute_one(featurizer, entry, column, bad)]


def _compute_one(featurizer, entry, column, bad):
    try:
        [arrays] = featurizer.compute([entry[2]])
        _check_arrays(arrays)
    except ItemError as err:
        bad(entry[0], column, str(err))
        return []
    except Exception as err:  # noqa: BLE001  (the encoder failed on this item)
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [""]
        message = " ... ".join(dict.fromkeys([lines[0], lines[-1]]))  # TorchScript: the cause is last
        bad(entry[0], column, f"{featurizer.kind} encoder {featurizer.encoder!r} failed: "
                              f"{type(err).__name__}: {message}")
        return []
    return [(entry, arrays)]


def _pack(rows: np.ndarray, results: dict[int, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The CSR arrays (``x``, ``ptr``, ``pos``, ``ids``) of ``rows`` in order; absent = empty."""
    parts = [results[r] for r in rows if r in results]
    keys = parts[0].keys()
    arrays = {key: np.concatenate([p[key] for p in parts]) for key in keys}
    lengths = [len(results[r]["x"]) if r in results else 0 for r in rows]
    arrays["ptr"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return arrays


def _check_out(out: Path) -> None:
    """Refuse to replace anything but an earlier output (or an empty folder)."""
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (out / INFO_FILE).is_file()):
        raise FeaturizeError(f"{out}: exists and is not an mmgnn.featurize output (no {INFO_FILE}); "
                             "refusing to replace it")


def _publish(partial: Path, out: Path) -> None:
    """Move the finished ``partial`` folder to ``out``, replacing an earlier output."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)


def _info(manifest: Manifest, featurizers: dict[str, Featurizer], modalities: dict[str, dict], **extra: Any) -> dict:
    versions = package_versions("numpy", "torch")
    for featurizer in featurizers.values():
        versions.update(featurizer.versions())
    return {
        "manifest": str(manifest.path.resolve()),
        "manifest_sha256": hashlib.sha256(manifest.path.read_bytes()).hexdigest(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": versions,
        "modalities": modalities,
        **extra,
    }


def _write(partial: Path, manifest: Manifest, keep: np.ndarray, featurizers: dict[str, Featurizer],
           results: dict[str, dict[int, dict[str, np.ndarray]]]) -> dict[str, dict]:
    """Write items.csv and one <column>.npz per modality column; return per-column facts."""
    manifest.table.iloc[keep].to_csv(partial / ITEMS_FILE, index=False)
    facts = {}
    for column, featurizer in featurizers.items():
        if not any(r in results[column] for r in keep):
            raise FeaturizeError(f"{manifest.path}: column {column!r} has no item left to featurize")
        arrays = _pack(keep, results[column])
        np.savez(partial / f"{column}.npz", **arrays)
        counts = np.diff(arrays["ptr"])
        facts[column] = {
            "kind": featurizer.kind, "settings": featurizer.settings(), "versions": featurizer.versions(),
            "dim": int(arrays["x"].shape[1]),
            "items": int((counts > 0).sum()), "nodes": int(counts.sum()), "max_nodes": int(counts.max()),
        }
    return facts


class _BadItems:
    """Raises at the first bad item, or (``skip``) collects them for ``skipped.csv``."""

    def __init__(self, manifest: Manifest, featurizers: dict[str, Featurizer], skip: bool) -> None:
        self.manifest, self.featurizers, self.skip = manifest, featurizers, skip
        self.skipped: list[Skipped] = []

    def __call__(self, row: int, column: str, error: str) -> None:
        if not self.skip:
            raise FeaturizeError(f"{self.manifest.where(row, column)}: {error}")
        reads_files = self.featurizers[column].reads_files
        file = str(self.manifest.file(row, column)) if reads_files else ""
        self.skipped.append(Skipped(int(row), self.manifest.table["item_id"].iat[row], column, file, error))

    def check_every_item_has_a_modality(self) -> None:
        present = np.stack([self.manifest.present(c) for c in self.featurizers], axis=1)
        for row in np.flatnonzero(~present.any(axis=1)):
            error = f"no modality (every column {list(self.featurizers)} is empty)"
            if not self.skip:
                raise FeaturizeError(f"{self.manifest.where(row)}: {error}")
            self.skipped.append(Skipped(int(row), self.manifest.table["item_id"].iat[row], "*", "", error))

    def write_report(self, folder: Path) -> None:
        """``skipped.csv`` (row, item_id, column, file, error) when skipping is on."""
        if self.skip:
            columns = list(Skipped.__dataclass_fields__)
            report = pd.DataFrame([asdict(s) for s in self.skipped], columns=columns)
            report.to_csv(folder / SKIPPED_FILE, index=False)


def featurize(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    featurizers: dict[str, Featurizer],
    cache: str | os.PathLike | None | bool = True,
    skip_bad: bool = False,
    batch_size: int = 32,
    progress: bool = True,
    threads: int = 1,
) -> dict[str, Any]:
    """Featurize a raw manifest into a dataset folder that ``data=folder`` reads unchanged.

    Args:
        manifest: the manifest CSV (see :mod:`mmgnn.featurize.manifest`).
        out: the output folder; written in ``.<out>.partial-<pid>`` beside it and renamed when
            complete, replacing an earlier output (never another folder).
        featurizers: modality column -> its featurizer; at least two columns.
        cache: the per-item cache folder; ``True`` = :func:`default_cache` (``<out>.cache``),
            ``None``/``False`` = no cache.
        skip_bad: leave bad items out (listed in ``skipped.csv``) instead of failing.
        batch_size: items per featurizer batch.
        progress: show a tqdm progress bar per column.
        threads: torch's intra-op threads while encoding (restored afterwards). A float32
            network's outputs can differ in their last bits with the thread count (about 1e-5
            for EfficientNet's head), so the count is recorded and keys the cache, and
            ``mmgnn.inference --manifest`` featurizes with the recorded count: new raw items
            get exactly the training items' features on the same machine and versions.

    Returns:
        What ``featurize.json`` records: manifest, versions, per-column settings and sizes,
        counts of items written, computed, reused from the cache and skipped, seconds.

    Raises:
        FeaturizeError: bad manifest or bad item (without ``skip_bad``), naming the row, the
            ``item_id``, the column and the file; nothing is written to ``out``.
    """
    started = time.perf_counter()
    out = Path(out)
    table = read_manifest(manifest, {column: f.kind for column, f in featurizers.items()})
    _check_out(out)
    cache_root = default_cache(out) if cache is True else (cache or None)
    bad = _BadItems(table, featurizers, skip_bad)
    bad.check_every_item_has_a_modality()
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    item_cache = ItemCache(cache_root)
    results, counts, seconds = {}, {"computed": 0, "reused": 0}, {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for column, featurizer in featurizers.items():
            column_started = time.perf_counter()
            results[column], column_counts = _featurize_column(
                table, column, featurizer, item_cache, batch_size, bad, progress, threads
            )
            seconds[column] = round(time.perf_counter() - column_started, 3)
            counts = {k: counts[k] + column_counts[k] for k in counts}
    finally:
        torch.set_num_threads(before)
    keep = np.setdiff1d(np.arange(len(table.table)), [s.row for s in bad.skipped])
    if len(keep) == 0:
        raise FeaturizeError(f"{table.path}: every item was bad; nothing to write ({len(bad.skipped)} problems)")

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        facts = _write(partial, table, keep, featurizers, results)
        for column, spent in seconds.items():
            facts[column]["seconds"] = spent
        bad.write_report(partial)
        info = _info(table, featurizers, facts, items=int(len(keep)), skipped=len(bad.skipped),
                     cache=None if cache_root is None else str(Path(cache_root).resolve()),
                     batch_size=batch_size, threads=threads, seconds=round(time.perf_counter() - started, 3),
                     **counts)
        (partial / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        load_folder(partial, modalities=list(featurizers))  # the output must meet the folder contract
        _publish(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return info
