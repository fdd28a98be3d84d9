"""The development suite's scores: candidates x datasets x seeds on validation, ranked.

``python -m experiments.suite`` (the command) launches the runs; this module reads them and
makes the tables: per dataset, each candidate's validation fused accuracy, fused accuracy with
each modality alone (``missing/<the others>/fused/acc``: the other modalities removed at
evaluation) and retrieval mAP, mean +- std over seeds, with the dataset's linear control
(:func:`linear_control`) beside them; then each candidate's rank per dataset and its mean rank
across datasets. Test-split numbers come only from :func:`score_keys` with ``split="test"``,
which the command asks for only with ``--test``, for the chosen candidate.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mmgnn import paths
from mmgnn.analysis.runs import FINISHED, load_runs, read_metrics_csv
from mmgnn.analysis.tables import markdown_table
from mmgnn.data.dataset import MultimodalDataset
from mmgnn.metrics import metric_key_part
from mmgnn.tracking.names import METRICS_FILE, TAG_RUN_DIR

#: The suite's datasets (``data=`` options), in the order of the tables.
SUITE = ("synthetic", "synthetic_hard", "synthetic_positional", "digits", "ktuberling", "ktuberling_small",
         "klettres")
FUSED, MAP = "fused acc", "mAP"
#: What ranks the candidates of a dataset (``--rank-by``): a score column, or ``all`` (the
#: mean of a run's score columns) or ``alone`` (the mean of its modality-alone columns).
RANK_BY = ("all", "alone", "fused", "map")
#: The prefix of validation metrics at the best epoch (the checkpoint a run keeps).
VAL = "best_val"
TEST = "test"
CONTROL = "linear control"
DEFAULTS = "defaults"  # the candidate without overrides
HYDRA_FILE = "hydra.yaml"  # in a run's Hydra folder: its runtime choices


@dataclass(frozen=True)
class Candidate:
    """A setting to score: a name and the command-line overrides that make it."""

    name: str
    overrides: tuple[str, ...] = ()


def _overrides(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"{where}: a candidate is a string or a list of overrides, got {value!r}")


def parse_candidates(specs: Sequence[str]) -> list[Candidate]:
    """Candidates from ``--candidates`` arguments.

    An argument naming an existing ``.yaml``/``.yml``/``.json`` file is a mapping of candidate
    name -> overrides (a string or a list); any other argument is one candidate, its overrides
    separated by spaces (``"pe=index model.readout=query"``), named by them; ``defaults`` (or
    an empty string) is the candidate without overrides.
    """
    found: list[Candidate] = []
    for spec in specs:
        path = Path(spec)
        if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
            table = yaml.safe_load(path.read_text())
            if not isinstance(table, dict) or not table:
                raise ValueError(f"{path}: expected a mapping of candidate name -> overrides")
            found += [Candidate(str(name), _overrides(value, f"{path}: {name}")) for name, value in table.items()]
        elif spec.strip() in ("", DEFAULTS):
            found.append(Candidate(DEFAULTS))
        else:
            overrides = _overrides(spec, "--candidates")
            found.append(Candidate(" ".join(overrides), overrides))
    names = [c.name for c in found]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"candidate name(s) given more than once: {repeated}")
    if not found:
        raise ValueError("no candidate given")
    return found


def slug(text: str) -> str:
    """A folder-name form of a candidate's name (no ``=``: it goes into a Hydra override)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("=", "-")).strip("_.")[:60] or "candidate"


# ----------------------------------------------------------------------------- run scores
def alone_column(modality: str) -> str:
    return f"{modality} alone"


def score_keys(modalities: Sequence[str], split: str = VAL) -> dict[str, str]:
    """Score column -> metric key of a run: fused accuracy, fused accuracy with each modality
    alone (the others removed: ``<split>/missing/<others>/fused/acc``), retrieval mAP."""
    parts = [metric_key_part(m) for m in modalities]
    keys = {FUSED: f"{split}/fused/acc"}
    if len(parts) > 1:
        for m, part in zip(modalities, parts):
            others = "_and_".join(p for p in parts if p != part)
            keys[alone_column(m)] = f"{split}/missing/{others}/fused/acc"
    keys[MAP] = f"{split}/retrieval/map"
    return keys


def run_scores(metrics: Mapping[str, float], keys: Mapping[str, str]) -> dict[str, float]:
    """A run's score columns from its metrics (NaN for a key it lacks)."""
    out = {}
    for column, key in keys.items():
        value = metrics.get(key)
        out[column] = float(value) if value is not None and not pd.isna(value) else math.nan
    return out


def rank_value(scores: Mapping[str, float], rank_by: str) -> float:
    """The number that ranks a run (higher is better); NaN when it has none of its columns."""
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    if rank_by == "fused":
        values = [scores.get(FUSED, math.nan)]
    elif rank_by == "map":
        values = [scores.get(MAP, math.nan)]
    elif rank_by == "alone":
        values = [v for k, v in scores.items() if k.endswith(" alone")]
    else:
        values = list(scores.values())
    values = [v for v in values if not pd.isna(v)]
    return float(np.mean(values)) if values else math.nan


# ----------------------------------------------------------------------------- reading runs
def _dataset_of(row: pd.Series) -> str | None:
    value = row.get("data")
    if isinstance(value, str) and value and not value.startswith("("):
        return value
    run_dir = row.get(f"tags.{TAG_RUN_DIR}")
    if isinstance(run_dir, str):  # a reused run launched without data=: its recorded choice
        hydra = Path(run_dir) / paths.HYDRA_DIR / HYDRA_FILE
        if hydra.is_file():
            choices = yaml.safe_load(hydra.read_text()).get("hydra", {}).get("runtime", {}).get("choices", {})
            return choices.get("data")
    return None


def _int_or_nan(value: object) -> float:
    try:
        return float(int(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def sweep_frame(client, parent_id: str, candidate: str, keys: Iterable[str]) -> pd.DataFrame:
    """The runs of one candidate's sweep (children and reused runs: :func:`load_runs`), one row
    each: ``candidate``, ``dataset``, ``data.seed``, ``seed``, ``status``, ``run_id``,
    ``run_dir`` and ``metrics.<key>`` for ``keys`` only (no other metric is kept)."""
    keys = list(dict.fromkeys(keys))
    df = load_runs(client, parent_id, metrics=keys)
    rows = []
    for _, row in df.iterrows():
        data_seed = row.get("params.data.seed")
        if pd.isna(data_seed) if not isinstance(data_seed, str) else False:
            data_seed = row.get("data.seed")
        seed = _int_or_nan(row.get("params.seed", row.get("seed")))
        if isinstance(data_seed, str) and data_seed.strip() == "${seed}":
            data_seed = seed
        record = {"candidate": candidate, "dataset": _dataset_of(row), "data.seed": _int_or_nan(data_seed),
                  "seed": seed, "status": row.get("status"), "run_id": row.get("run_id"),
                  "run_dir": row.get(f"tags.{TAG_RUN_DIR}"), "error": row.get("error")}
        for key in keys:
            value = row.get(f"metrics.{key}")
            record[f"metrics.{key}"] = float(value) if value is not None and not pd.isna(value) else math.nan
        rows.append(record)
    return pd.DataFrame(rows)


def folder_frame(sweep_dir: str | Path, candidate: str, keys: Iterable[str]) -> pd.DataFrame:
    """As :func:`sweep_frame` from a sweep folder's job folders (``tracking.enabled=false``):
    each job's Hydra record and the metrics it wrote (the tracked final metrics file when
    there is one, else the test metrics training writes; validation scores missing from
    them are left NaN for the caller to compute)."""
    keys = list(dict.fromkeys(keys))
    rows = []
    for job in sorted(p for p in Path(sweep_dir).iterdir() if (p / paths.HYDRA_DIR / paths.CONFIG_FILE).is_file()):
        cfg = yaml.safe_load((job / paths.HYDRA_DIR / paths.CONFIG_FILE).read_text())
        hydra = yaml.safe_load((job / paths.HYDRA_DIR / HYDRA_FILE).read_text())
        metrics_file, test_file = job / METRICS_FILE, job / paths.TEST_METRICS_FILE
        values: dict[str, float] = {}
        if test_file.is_file():
            values.update(json.loads(test_file.read_text()).get("metrics", {}))
        if metrics_file.is_file():
            values.update(read_metrics_csv(metrics_file).to_dict())
        seed = _int_or_nan(cfg.get("seed"))
        data_seed = cfg.get("data", {}).get("seed")
        record = {"candidate": candidate, "dataset": hydra["hydra"]["runtime"]["choices"].get("data"),
                  "data.seed": seed if data_seed == "${seed}" else _int_or_nan(data_seed), "seed": seed,
                  "status": FINISHED if test_file.is_file() else "FAILED", "run_id": "", "run_dir": str(job),
                  "error": None}
        record.update({f"metrics.{k}": float(values[k]) if k in values else math.nan for k in keys})
        rows.append(record)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the control
def flattened_nodes(dataset: MultimodalDataset, modality: str) -> np.ndarray:
    """float64 ``[n_items, max_nodes * d]``: each item's nodes of ``modality`` in order,
    flattened (items with fewer nodes, or none, zero-padded)."""
    m = dataset.modalities[modality]
    counts = m.counts
    width = max(int(counts.max()), 1)
    flat = np.zeros((dataset.n_items, width, m.dim), dtype=np.float64)
    item = np.repeat(np.arange(dataset.n_items), counts)
    local = np.arange(m.x.shape[0]) - np.repeat(m.ptr[:-1], counts)
    flat[item, local] = m.x
    return flat.reshape(dataset.n_items, -1)


def logreg_accuracy(features: np.ndarray, dataset: MultimodalDataset, split: str) -> float:
    """Accuracy on ``split`` of a logistic regression (sklearn, C=1) fit on the train split's
    ``features``, z-scored with the train split's statistics."""
    from sklearn.linear_model import LogisticRegression

    train, rows = dataset.indices("train"), dataset.indices(split)
    if len(rows) == 0:
        return math.nan
    mean, std = features[train].mean(0), features[train].std(0) + 1e-8
    model = LogisticRegression(C=1.0, max_iter=5000)
    model.fit((features[train] - mean) / std, dataset.labels[train])
    return float((model.predict((features[rows] - mean) / std) == dataset.labels[rows]).mean())


def linear_control(dataset: MultimodalDataset, split: str = "val") -> dict[str, float]:
    """The linear control of a labelled dataset on ``split``: logistic regression on each
    modality's nodes kept in order and flattened (:func:`flattened_nodes`; the generalised
    ``experiments.bench_pe`` control), as ``<m> alone``, and on every modality's concatenated
    as ``fused acc``; no mAP (NaN)."""
    if dataset.labels is None:
        return {}
    features = {m: flattened_nodes(dataset, m) for m in dataset.modality_names}
    out = {FUSED: logreg_accuracy(np.concatenate(list(features.values()), axis=1), dataset, split)}
    for m, x in features.items():
        out[alone_column(m)] = logreg_accuracy(x, dataset, split)
    out[MAP] = math.nan
    return out


# ----------------------------------------------------------------------------- tables
def cell(values: Sequence[float]) -> str:
    """``mean +- std (n=count)`` over the finite values (std with n - 1; ``-`` when none)."""
    finite = [float(v) for v in values if not pd.isna(v)]
    if not finite:
        return "-"
    if len(finite) == 1:
        return f"{finite[0]:.3f} (n=1)"
    return f"{np.mean(finite):.3f} +- {np.std(finite, ddof=1):.3f} (n={len(finite)})"


def dataset_table(scores: pd.DataFrame, dataset: str, columns: Sequence[str],
                  control: pd.DataFrame | None = None, candidates: Sequence[str] | None = None) -> pd.DataFrame:
    """One dataset's table: a row per candidate (then the control), a ``mean +- std`` cell per
    score column, over the seeds. ``scores``: one row per run with ``candidate``,
    ``dataset`` and the score columns; ``control``: one row per data seed with ``dataset``
    and the control's columns."""
    part = scores[scores["dataset"] == dataset]
    order = list(candidates) if candidates is not None else list(dict.fromkeys(part["candidate"]))
    rows = {name: {c: cell(part.loc[part["candidate"] == name, c]) if c in part else "-" for c in columns}
            for name in order}
    if control is not None and not control.empty:
        own = control[control["dataset"] == dataset]
        rows[CONTROL] = {c: cell(own[c]) if c in own else "-" for c in columns}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(columns))
    table.index.name = "candidate"
    return table


def rank_table(scores: pd.DataFrame, rank_by: str, datasets: Sequence[str],
               candidates: Sequence[str]) -> pd.DataFrame:
    """Each candidate's rank per dataset (1 = best mean over seeds of :func:`rank_value`; ties
    share the mean rank; a candidate without a value on a dataset is ranked last there) and
    its mean rank across the datasets, best first; ``score`` columns hold the means ranked."""
    means = scores.groupby(["dataset", "candidate"])["rank_value"].mean().unstack("dataset")
    means = means.reindex(index=list(candidates), columns=[d for d in datasets if d in means.columns])
    ranks = means.rank(axis=0, ascending=False, method="average", na_option="bottom")
    table = ranks.copy()
    table["mean rank"] = ranks.mean(axis=1)
    table["mean score"] = means.mean(axis=1)
    table = table.sort_values(["mean rank", "mean score"], ascending=[True, False], kind="stable")
    table.index.name = "candidate"
    return table


def table_markdown(table: pd.DataFrame) -> str:
    frame = table.reset_index()
    return markdown_table(frame, align_right=[c for c in frame.columns if c != frame.columns[0]])


def ranks_markdown(table: pd.DataFrame) -> str:
    frame = table.reset_index()
    for column in frame.columns[1:]:
        digits = 3 if column == "mean score" else 2
        frame[column] = frame[column].map(lambda v, d=digits: "-" if pd.isna(v) else f"{v:.{d}f}")
    return markdown_table(frame, align_right=list(frame.columns[1:]))
