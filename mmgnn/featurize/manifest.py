"""The raw manifest: one row per item, one column per raw modality, validated before any work.

A manifest is a CSV with ``item_id`` and optional ``label``, ``group``, ``split`` (as in the
dataset folder contract) and one column per raw modality: the text itself for a text column,
a file path (relative to the manifest's folder, or absolute) for an image or audio column. An
empty cell means the item lacks that modality.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmgnn.data.dataset import SPLITS

KINDS = ("text", "image", "audio")
RESERVED = ("item_id", "label", "group", "split")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class FeaturizeError(ValueError):
    """Bad raw input; the message names the manifest, row, ``item_id``, column and file."""


class ItemError(ValueError):
    """One item's raw value cannot be featurized; the message says why (no location)."""


@dataclass
class Manifest:
    """A validated manifest.

    Attributes:
        path: the manifest file.
        table: every column as str, ``""`` where a cell is empty.
        columns: modality column -> kind (``text``, ``image`` or ``audio``), in output order.
    """

    path: Path
    table: pd.DataFrame
    columns: dict[str, str]

    @property
    def base(self) -> Path:
        """The folder that relative file paths are resolved against."""
        return self.path.resolve().parent

    def where(self, row: int, column: str | None = None) -> str:
        """``<manifest>: row R (line L), item 'ID'[, column 'C'[, file F]]``."""
        text = f"{self.path}: row {row} (line {row + 2}), item {self.table['item_id'].iat[row]!r}"
        if column is None:
            return text
        text += f", column {column!r}"
        if self.columns[column] != "text":
            text += f", file {self.file(row, column)}"
        return text

    def file(self, row: int, column: str) -> Path:
        """The file named by a file column's cell, resolved against the manifest's folder."""
        return self.base / self.table[column].iat[row].strip()

    def present(self, column: str) -> np.ndarray:
        """bool ``[n_items]``: the cell of ``column`` is not empty (a blank cell is not empty:
        it is a bad text or a bad file name)."""
        return (self.table[column] != "").to_numpy()


def _fail(path: Path, problem: str) -> None:
    raise FeaturizeError(f"{path}: {problem}")


def _check_columns(path: Path, header: list[str], columns: dict[str, str]) -> None:
    if "item_id" not in header:
        _fail(path, f"missing column 'item_id' (columns: {header})")
    if len(columns) < 2:
        _fail(path, f"needs at least 2 modality columns (--text/--image/--audio), got {list(columns)}")
    for column, kind in columns.items():
        if kind not in KINDS:
            raise ValueError(f"unknown modality kind {kind!r} for column {column!r}; expected one of {KINDS}")
        if column not in header:
            _fail(path, f"no column {column!r} (given as --{kind}); columns: {header}")
        if column in RESERVED:
            _fail(path, f"column {column!r} is reserved for the items table, not a modality")
        if not _NAME.fullmatch(column):
            _fail(path, f"column {column!r} cannot name a modality file (letters, digits, _ . - only)")


def _check_rows(manifest: Manifest) -> None:
    table, path = manifest.table, manifest.path
    if len(table) == 0:
        _fail(path, "has no items (no data rows)")
    ids = table["item_id"].str.strip()
    for row in np.flatnonzero((ids == "").to_numpy()):
        _fail(path, f"row {row} (line {row + 2}): missing item_id")
    duplicated = np.flatnonzero(table["item_id"].duplicated(keep=False).to_numpy())
    if len(duplicated):
        rows = np.flatnonzero(table["item_id"].to_numpy() == table["item_id"].iat[duplicated[0]])
        _fail(path, f"duplicate item_id {table['item_id'].iat[rows[0]]!r} in rows {rows.tolist()}")
    for column in ("label", "group"):
        if column in table.columns:
            for row in np.flatnonzero((table[column].str.strip() == "").to_numpy()):
                _fail(path, f"{manifest.where(row)}: missing {column}")
    if "split" in table.columns:
        for row in np.flatnonzero(~table["split"].isin(SPLITS).to_numpy()):
            value = table["split"].iat[row]
            _fail(path, f"{manifest.where(row)}: unknown split {value!r}, expected one of {SPLITS}")


def read_manifest(path: str | Path, columns: dict[str, str]) -> Manifest:
    """Read and validate a manifest.

    Args:
        path: the manifest CSV.
        columns: modality column -> kind (``text``, ``image``, ``audio``); at least two.

    Raises:
        FeaturizeError: the file is missing or not a CSV, a column is missing or misnamed, an
            ``item_id`` is missing or repeated, a ``label``/``group`` is missing, a ``split``
            is unknown; the message names the manifest, the row and the item.
    """
    path = Path(path)
    if not path.is_file():
        _fail(path, "manifest not found" if not path.exists() else "manifest is not a file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        _fail(path, f"cannot be read as CSV ({err})")
    header = list(table.columns)
    _check_columns(path, header, columns)
    manifest = Manifest(path, table, dict(columns))
    _check_rows(manifest)
    return manifest
