"""Read and write a dataset folder: DESIGN.md's folder contract, fully validated.

A dataset folder holds ``items.csv`` (one row per item) and one ``<modality>.npz`` per modality
(see :func:`load_folder`). Every violation of the contract raises :class:`DatasetError` naming the
file, the item (row number and ``item_id``) and the problem; the whole folder is validated before
any array is converted or any split is drawn. The checks are vectorised, so a folder of 100k
items loads in about the time it takes to read it; the offending item is located only once a
check has failed.
"""
from __future__ import annotations

import os


from pathlib import Path
from typing import NoReturn, Sequence

import numpy as np
import pandas as pd

from mmgnn.data.dataset import SPLITS, ModalityData, MultimodalDataset
from mmgnn.data.splits import check_fractions, stratified_split

ITEMS_FILE = "items.csv"
ARRAY_KEYS = ("x", "ptr", "pos", "edge_index", "edge_ptr", "ids")
NO_GROUP = "all"
_TEXT_COLUMNS = ("item_id", "label", "group", "split")
_MAX_LISTED = 5


class DatasetError(ValueError):
    """A dataset folder breaks the contract; the message names the file, the item and the problem."""


def _fail(file: Path, problem: str) -> NoReturn:
    raise DatasetError(f"{file}: {problem}")


def _line(row: int) -> str:
    """A data row of items.csv: 0-based row (= the item's index in ``ptr``) and its file line."""
    return f"row {row}, line {row + 2} of {ITEMS_FILE}"


def _item(row: int, ids: np.ndarray) -> str:
    return f"item {ids[row]!r} ({_line(row)})"


def _items(rows: np.ndarray, ids: np.ndarray | None = None) -> str:
    """Name the first few of ``rows`` (as items when ``ids`` is given) and count the rest."""
    shown = [(_item(r, ids) if ids is not None else _line(r)) for r in rows[:_MAX_LISTED]]
    more = f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else ""
    return ", ".join(shown) + more


# ---------------------------------------------------------------------------- items.csv


def _read_items(file: Path) -> pd.DataFrame:
    """items.csv with ``item_id``/``label``/``group``/``split`` as raw strings ("" = missing)."""
    try:
        header = pd.read_csv(file, nrows=0).columns
        converters = {c: str for c in _TEXT_COLUMNS if c in header}
        table = pd.read_csv(file, converters=converters)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        _fail(file, f"cannot be read as CSV ({err})")
    if table.columns.duplicated().any():
        _fail(file, f"duplicate column names {sorted(set(table.columns[table.columns.duplicated()]))}")
    if "item_id" not in table.columns:
        _fail(file, f"missing column 'item_id' (columns: {list(table.columns)})")
    if len(table) == 0:
        _fail(file, "has no items (no data rows)")
    return table


def _missing_rows(column: pd.Series) -> np.ndarray:
    return np.flatnonzero(column.str.strip().to_numpy() == "")


def _check_items(file: Path, table: pd.DataFrame) -> np.ndarray:
    """Validate the items table; return ``item_id`` as an object array of str."""
    ids = table["item_id"].to_numpy(dtype=object)
    missing = _missing_rows(table["item_id"])
    if len(missing):
        _fail(file, f"missing item_id in {_items(missing)}")
    duplicated = table["item_id"].duplicated(keep=False).to_numpy()
    if duplicated.any():
        first = ids[np.argmax(duplicated)]
        rows = np.flatnonzero(ids == first)
        _fail(
            file,
            f"duplicate item_id {first!r} in rows {' and '.join(str(r) for r in rows)} "
            f"(lines {' and '.join(str(r + 2) for r in rows)} of {ITEMS_FILE})",
        )
    for column in ("label", "group"):
        if column in table.columns:
            missing = _missing_rows(table[column])
            if len(missing):
                _fail(
                    file,
                    f"column {column!r} has missing values in {len(missing)} row(s): "
                    f"{_items(missing, ids)}",
                )
    if "split" in table.columns:
        values = table["split"].to_numpy(dtype=object)
        unknown = np.flatnonzero(~np.isin(values, SPLITS))
        if len(unknown):
            _fail(
                file,
                f"unknown split value {values[unknown[0]]!r} for {_item(unknown[0], ids)} "
                f"({len(unknown)} row(s) with an unknown split; expected one of {SPLITS})",
            )
    return ids


def _encode(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """int64 codes and sorted unique names (as strings); integer labels sort numerically."""
    if values.str.fullmatch(r"\s*[+-]?\d{1,18}\s*").all():
        uniques, codes = np.unique(values.astype(np.int64).to_numpy(), return_inverse=True)
    else:
        uniques, codes = np.unique(values.to_numpy(dtype=str), return_inverse=True)
    return codes.reshape(-1).astype(np.int64), [str(u) for u in uniques]


# ---------------------------------------------------------------------------- <modality>.npz


def _read_npz(file: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as err:  # a corrupt zip, a pickled object array, a non-npz file
        _fail(file, f"cannot be read as an .npz archive ({type(err).__name__}: {err})")
    unknown = sorted(set(arrays) - set(ARRAY_KEYS))
    if unknown:
        _fail(file, f"unexpected arrays {unknown} (allowed: {list(ARRAY_KEYS)})")
    for key in ("x", "ptr"):
        if key not in arrays:
            _fail(file, f"missing array {key!r} (has: {sorted(arrays)})")
    if ("edge_index" in arrays) != ("edge_ptr" in arrays):
        given, absent = ("edge_index", "edge_ptr") if "edge_index" in arrays else ("edge_ptr", "edge_index")
        _fail(file, f"has {given!r} without {absent!r}: user-given edges need both arrays")
    return arrays


def _check_offsets(
    file: Path, key: str, offsets: np.ndarray, n_items: int, total: int, of: str, ids: np.ndarray
) -> None:
    """``offsets`` (``ptr`` or ``edge_ptr``) must be int [n_items + 1], 0 .. total, non-decreasing."""
    if offsets.ndim != 1:
        _fail(file, f"{key} must be 1-D [n_items + 1], got shape {offsets.shape}")
    if not np.issubdtype(offsets.dtype, np.integer):
        _fail(file, f"{key} must hold integers, got dtype {offsets.dtype}")
    if len(offsets) != n_items + 1:
        _fail(
            file,
            f"{key} has length {len(offsets)}, expected n_items + 1 = {n_items + 1} "
            f"({n_items} rows in {ITEMS_FILE})",
        )
    if offsets[0] != 0:
        _fail(file, f"{key}[0] must be 0, got {offsets[0]}")
    steps = np.diff(offsets.astype(np.int64))
    if (steps < 0).any():
        i = int(np.argmax(steps < 0))
        _fail(
            file,
            f"{key} decreases at {_item(i, ids)}: {key}[{i + 1}] = {offsets[i + 1]} < "
            f"{key}[{i}] = {offsets[i]} ({key} must be non-decreasing)",
        )
    if offsets[-1] != total:
        _fail(file, f"{key}[-1] = {offsets[-1]} must equal the number of {of} ({total})")


def _check_features(file: Path, key: str, values: np.ndarray, ptr: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Return ``values`` (x or pos) as finite float32 [total_nodes, k]."""
    if values.ndim != 2:
        _fail(file, f"{key} must be 2-D [total_nodes, dim], got shape {values.shape}")
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        _fail(file, f"{key} must be numeric, got dtype {values.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        values = np.ascontiguousarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.all():
        node = int(np.argmax(~finite.all(axis=1)))
        item = int(np.searchsorted(ptr, node, side="right") - 1)
        bad = values[node][~finite[node]][0]
        _fail(
            file,
            f"{key} is not finite: {bad} (as float32) in node row {node}, "
            f"which belongs to {_item(item, ids)}",
        )
    return values


def _check_modality(file: Path, arrays: dict[str, np.ndarray], ids: np.ndarray) -> ModalityData:
    n_items = len(ids)
    x, ptr = arrays["x"], arrays["ptr"]
    if x.ndim != 2:
        _fail(file, f"x must be 2-D [total_nodes, dim], got shape {x.shape}")
    if x.shape[1] == 0:
        _fail(file, "x has 0 feature columns")
    _check_offsets(file, "ptr", ptr, n_items, x.shape[0], "rows of x", ids)
    ptr = ptr.astype(np.int64)
    x = _check_features(file, "x", x, ptr, ids)

    pos = arrays.get("pos")
    if pos is not None:
        if pos.ndim >= 1 and pos.shape[0] != x.shape[0]:
            _fail(file, f"pos has {pos.shape[0]} rows but x has {x.shape[0]}: one position per node")
        pos = _check_features(file, "pos", pos, ptr, ids)

    edge_index, edge_ptr = arrays.get("edge_index"), arrays.get("edge_ptr")
    if edge_index is not None:
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            _fail(file, f"edge_index must have shape [2, total_edges], got {edge_index.shape}")
        if not np.issubdtype(edge_index.dtype, np.integer):
            _fail(file, f"edge_index must hold integers, got dtype {edge_index.dtype}")
        n_edges = edge_index.shape[1]
        _check_offsets(file, "edge_ptr", edge_ptr, n_items, n_edges, "edges (columns of edge_index)", ids)
        edge_index, edge_ptr = edge_index.astype(np.int64), edge_ptr.astype(np.int64)
        owner = np.repeat(np.arange(n_items), np.diff(edge_ptr))
        limit = np.diff(ptr)[owner]
        outside = ((edge_index < 0) | (edge_index >= limit)).any(axis=0)
        if outside.any():
            e = int(np.argmax(outside))
            i = int(owner[e])
            _fail(
                file,
                f"edge_index column {e} = ({edge_index[0, e]}, {edge_index[1, e]}) of "
                f"{_item(i, ids)} is outside the item's local node range [0, {limit[e]}) "
                "(edges use local node ids)",
            )
    token_ids = arrays.get("ids")
    if token_ids is not None:
        token_ids = _check_token_ids(file, token_ids, ptr, ids)
    return ModalityData(
        file.stem, x, ptr, pos=pos, edge_index=edge_index, edge_ptr=edge_ptr, ids=token_ids
    )


def _check_token_ids(file: Path, token_ids: np.ndarray, ptr: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Return the optional ``ids`` array as int64 ``[total_nodes]``: one token id (>= 0) per node."""
    if token_ids.ndim != 1:
        _fail(file, f"ids must be 1-D [total_nodes], got shape {token_ids.shape}")
    if not np.issubdtype(token_ids.dtype, np.integer):
        _fail(file, f"ids must hold integers (token ids), got dtype {token_ids.dtype}")
    if token_ids.shape[0] != ptr[-1]:
        _fail(file, f"ids has {token_ids.shape[0]} entries but x has {ptr[-1]} rows: one token id per node")
    negative = np.flatnonzero(token_ids < 0)
    if len(negative):
        node = int(negative[0])
        item = int(np.searchsorted(ptr, node, side="right") - 1)
        _fail(file, f"ids[{node}] = {token_ids[node]} is negative: node row {node} of {_item(item, ids)}")
    return token_ids.astype(np.int64)


# ---------------------------------------------------------------------------- public API


def _modality_files(folder: Path, modalities: Sequence[str] | None) -> list[Path]:
    if modalities is None:
        files = sorted(folder.glob("*.npz"), key=lambda p: p.name)
    else:
        names = [modalities] if isinstance(modalities, str) else list(modalities)
        repeated = sorted({m for m in names if names.count(m) > 1})
        if repeated:
            _fail(folder, f"modalities {repeated} are listed more than once")
        files = [folder / f"{m}.npz" for m in names]
        for file in files:
            if not file.is_file():
                _fail(file, f"missing modality file (modalities requested: {names})")
    if len(files) < 2:
        _fail(
            folder,
            f"needs at least 2 modalities (one <modality>.npz each), found {len(files)}: "
            f"{[f.name for f in files]}",
        )
    return files


def load_folder(
    path: str | os.PathLike,
    modalities: Sequence[str] | None = None,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    name: str | None = None,
) -> MultimodalDataset:
    """Load and validate a dataset folder.

    Contract (DESIGN.md): ``<path>/items.csv`` has one row per item with a unique ``item_id``,
    optional ``label`` (int or str), ``group`` (str) and ``split`` (``train|val|test``); other
    columns are kept in ``items`` and ignored. ``<path>/<modality>.npz`` holds ``x`` float
    ``[total_nodes, d]`` and ``ptr`` int ``[n_items + 1]`` (item ``i`` owns
    ``x[ptr[i]:ptr[i+1]]``, an empty range means the item lacks the modality), optionally ``pos``
    ``[total_nodes, k]`` and user-given edges ``edge_index`` int ``[2, total_edges]`` (local node
    ids) with ``edge_ptr`` int ``[n_items + 1]``, and token ids ``ids`` int ``[total_nodes]``
    (a text modality written by ``python -m mmgnn.featurize``). Every item has at least one
    modality.

    Args:
        path: the dataset folder.
        modalities: modality names to load, in this order; ``None`` loads every ``*.npz`` of
            the folder, sorted by file name. At least two.
        split_fractions: (train, val, test) for :func:`stratified_split` when items.csv has no
            ``split`` column (stratified by label and group).
        seed: seed of that split.
        name: the dataset's name; defaults to the folder's name.

    Returns:
        A :class:`MultimodalDataset`: ``x``/``pos`` cast to float32, offsets and edges to int64;
        ``labels`` int64 codes into ``label_names`` (sorted unique labels as strings, integer
        labels sorted numerically) or ``None`` without a label column; ``groups`` codes into
        ``group_names`` (one group ``"all"`` without a group column); ``items`` has the final
        ``split`` column.

    Raises:
        DatasetError: on any violation of the contract, naming the file, the item and the
            problem, before anything is converted or split.
    """
    fractions = check_fractions(split_fractions)
    folder = Path(path)
    if not folder.is_dir():
        _fail(folder, "dataset folder does not exist" if not folder.exists() else "is not a folder")
    items_file = folder / ITEMS_FILE
    if not items_file.is_file():
        _fail(items_file, f"missing {ITEMS_FILE} (one row per item with an item_id column)")
    files = _modality_files(folder, modalities)

    table = _read_items(items_file)
    ids = _check_items(items_file, table)
    data = {file.stem: _check_modality(file, _read_npz(file), ids) for file in files}
    present = np.logical_or.reduce([m.present for m in data.values()])
    if not present.all():
        absent = np.flatnonzero(~present)
        _fail(
            folder,
            f"no nodes in any modality file ({', '.join(f.name for f in files)}) for "
            f"{_items(absent, ids)}: every item needs at least one modality",
        )

    labels, label_names = _encode(table["label"]) if "label" in table.columns else (None, None)
    if "group" in table.columns:
        groups, group_names = _encode(table["group"])
    else:
        groups, group_names = np.zeros(len(table), dtype=np.int64), [NO_GROUP]
    if "split" in table.columns:
        split = table["split"].to_numpy(dtype="<U5")
    else:
        split = stratified_split(labels, groups, fractions, seed)
        table["split"] = split
    return MultimodalDataset(
        items=table,
        modalities=data,
        labels=labels,
        label_names=label_names,
        groups=groups,
        group_names=group_names,
        split=split,
        name=name if name is not None else folder.resolve().name,
    )


def write_folder(dataset: MultimodalDataset, path: str | os.PathLike) -> None:
    """Write ``dataset`` as a dataset folder that :func:`load_folder` reads back identically.

    Writes ``items.csv`` (``item_id``, ``label`` from ``label_names`` when the dataset has
    labels, ``group``, ``split``, then the items table's other columns) and one uncompressed
    ``<modality>.npz`` per modality (``x``, ``ptr`` and ``pos``/``edge_index``/``edge_ptr``/``ids``
    when present). Label and group codes read back unchanged when ``label_names`` and ``group_names``
    are in the loader's order (sorted; integer names numerically), as every loader produces.

    Raises:
        FileExistsError: the folder holds ``.npz`` files of other modalities (they would be
            loaded with this dataset); nothing is written.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    stray = sorted(p.name for p in folder.glob("*.npz") if p.stem not in dataset.modalities)
    if stray:
        raise FileExistsError(f"{folder}: holds other modality files {stray}; write to an empty folder")

    table = dataset.items.reset_index(drop=True)
    columns = {"item_id": table["item_id"].astype(str)}
    if dataset.labels is not None:
        columns["label"] = np.asarray(dataset.label_names, dtype=object)[dataset.labels]
    columns["group"] = np.asarray(dataset.group_names, dtype=object)[dataset.groups]
    columns["split"] = np.asarray(dataset.split)
    others = table.drop(columns=[c for c in _TEXT_COLUMNS if c in table.columns])
    pd.concat([pd.DataFrame(columns), others], axis=1).to_csv(folder / ITEMS_FILE, index=False)

    for name, modality in dataset.modalities.items():
        arrays = {"x": modality.x, "ptr": modality.ptr}
        for key in ("pos", "edge_index", "edge_ptr", "ids"):
            if getattr(modality, key) is not None:
                arrays[key] = getattr(modality, key)
        np.savez(folder / f"{name}.npz", **arrays)
