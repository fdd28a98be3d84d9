"""Specs from config, every modality's graphs built once and cached, and their summary."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields

import numpy as np
import pandas as pd
import torch
from hydra.utils import get_class

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.graphs.base import (
    Edges,
    GraphSpec,
    ModalityGraphs,
    concat_grouped,
    node_layout,
)


def add_self_loops(modality: ModalityData, edges: Edges) -> Edges:
    """``edges`` plus ``(i, i)`` for every node, still grouped by item (each item's own edges
    first, then its self-loops)."""
    layout = node_layout(modality)
    return concat_grouped([edges, (layout.local, layout.local, layout.ptr)])


_GRAPH_CACHE: dict[tuple, dict[str, ModalityGraphs]] = {}


def clear_graph_cache() -> None:
    """Forget every cached :func:`build_graphs` result."""
    _GRAPH_CACHE.clear()


def _check_modality_names(names, available: tuple[str, ...], what: str) -> None:
    unknown = [m for m in names if m not in available]
    if unknown:
        raise ValueError(
            f"{what} names modalities {unknown} that the dataset does not have; "
            f"the dataset's modalities are {list(available)}"
        )


def build_graphs(
    dataset: MultimodalDataset, specs: Mapping[str, GraphSpec], self_loops: bool = False
) -> dict[str, ModalityGraphs]:
    """Build every modality's graphs (in the dataset's modality order).

    Results are cached in memory by ``(dataset.fingerprint(), specs, self_loops)``: a second
    call with equal content returns the *same* dict, so treat it as read-only. Specs are equal
    only when their class and every option are, so any option change builds anew.

    Args:
        dataset: the dataset (standardise it first if configured).
        specs: one :class:`GraphSpec` per modality of the dataset.
        self_loops: add ``(i, i)`` for every node.
    Returns:
        modality -> :class:`ModalityGraphs` with torch tensors (``x`` float32, ``pos``
        float32 or ``None``, ``ids`` int64 or ``None``).
    """
    available = dataset.modality_names
    _check_modality_names(specs, available, "the graph specs")
    missing = [m for m in available if m not in specs]
    if missing:
        raise ValueError(
            f"no graph spec for modalities {missing}; every modality of the dataset "
            f"{list(available)} needs one"
        )
    for name, spec in specs.items():
        if not isinstance(spec, GraphSpec):
            raise TypeError(f"graph spec for {name!r} must be a GraphSpec, got {type(spec)}")
    key = (dataset.fingerprint(), tuple((m, specs[m]) for m in available), bool(self_loops))
    cached = _GRAPH_CACHE.get(key)
    if cached is not None:
        return cached
    graphs = {}
    for name, modality in dataset.modalities.items():
        edges = specs[name].edges(modality)
        if self_loops:
            edges = add_self_loops(modality, edges)
        src, dst, edge_ptr = edges
        graphs[name] = ModalityGraphs(
            name=name,
            x=torch.as_tensor(np.asarray(modality.x, dtype=np.float32)),
            ptr=torch.as_tensor(np.asarray(modality.ptr), dtype=torch.int64),
            src=src,
            dst=dst,
            edge_ptr=edge_ptr,
            pos=None if modality.pos is None
            else torch.as_tensor(np.asarray(modality.pos, dtype=np.float32)),
            ids=None if modality.ids is None
            else torch.as_tensor(np.asarray(modality.ids), dtype=torch.int64),
        )
    _GRAPH_CACHE[key] = graphs
    return graphs


def graph_spec_from_options(options: Mapping, where: str) -> GraphSpec:
    """The :class:`GraphSpec` that ``options`` (``_target_`` + the builder's options) name.

    ``where`` says whose options these are (``"modality 'text'"``); every error names it.
    """
    options = dict(options)
    target = options.pop("_target_", None)
    if target is None:
        raise ValueError(
            f"graph config for {where} names no builder (_target_); choose one from "
            "conf/graph/builder/, e.g. graph/builder@graph.default=chain"
        )
    try:
        cls = get_class(str(target))
    except Exception as error:  # Hydra's error names the module or attribute it missed
        raise ValueError(f"graph config for {where}: cannot load builder {target!r}: {error}")
    if not issubclass(cls, GraphSpec):
        raise ValueError(
            f"graph config for {where}: builder {target!r} is not a {GraphSpec.__module__}"
            ".GraphSpec subclass"
        )
    valid = [f.name for f in fields(cls)]
    unknown = [o for o in options if o not in valid]
    if unknown:
        raise ValueError(
            f"graph config for {where} has options {unknown} that the {cls.name or target} "
            f"builder does not take; it takes {valid}. To change a modality's builder "
            "replace its whole entry: graph/builder@graph.modalities.<modality>=<builder>"
        )
    try:
        return cls(**options)
    except ValueError as error:
        raise ValueError(f"graph config for {where}: {error}") from None


def graph_specs_from_config(
    modalities: Iterable[str], default: Mapping, per_modality: Mapping | None = None
) -> dict[str, GraphSpec]:
    """One :class:`GraphSpec` per modality from config mappings (plain dicts or OmegaConf).

    Args:
        modalities: the dataset's modality names, in order.
        default: the builder of every modality without its own entry: ``_target_`` (a
            :class:`GraphSpec` subclass) and its options, e.g.
            ``{"_target_": "mmgnn.data.graphs.KnnGraph", "k": 6}``.
        per_modality: modality -> its own builder (``_target_`` + options), or options
            without ``_target_`` that override ``default``'s for that modality.
    """
    modalities = tuple(modalities)
    per_modality = dict(per_modality or {})
    _check_modality_names(per_modality, modalities, "the per-modality graph config")
    specs = {}
    for name in modalities:
        own = dict(per_modality.get(name) or {})
        options = own if "_target_" in own else {**dict(default or {}), **own}
        specs[name] = graph_spec_from_options(options, f"modality {name!r}")
    return specs


def graph_summary(
    dataset: MultimodalDataset,
    graphs: Mapping[str, ModalityGraphs],
    specs: Mapping[str, GraphSpec] | None = None,
) -> pd.DataFrame:
    """One row per modality (index ``modality``): ``builder``, ``items``, ``present``,
    ``missing``, ``nodes``, ``edges``, ``nodes/item`` and ``edges/item`` (means over the items
    that have the modality).

    ``builder`` describes ``specs`` when given, otherwise the specs (and self-loops) that
    :func:`build_graphs` used for this very ``graphs`` dict while it is cached (``None`` when
    unknown).
    """
    suffix = ""
    if specs is None:
        key = next((key for key, value in _GRAPH_CACHE.items() if value is graphs), None)
        specs = {} if key is None else dict(key[1])
        suffix = " + self-loops" if key is not None and key[2] else ""
    rows = []
    for name, g in graphs.items():
        present = int(dataset.modalities[name].present.sum())
        nodes, edges = int(g.ptr[-1] - g.ptr[0]), g.num_edges
        rows.append(
            {
                "modality": name,
                "builder": specs[name].describe() + suffix if name in specs else None,
                "items": dataset.n_items,
                "present": present,
                "missing": dataset.n_items - present,
                "nodes": nodes,
                "edges": edges,
                "nodes/item": nodes / present if present else 0.0,
                "edges/item": edges / present if present else 0.0,
            }
        )
    return pd.DataFrame(rows).set_index("modality")
