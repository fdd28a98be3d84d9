"""Modality graphs: per-item edge sets built from each modality's structure.

Every item's modality is one small graph whose nodes are the modality's units (tokens, image
patches, audio frames). A :class:`GraphSpec` subclass, one per builder with its own options,
says how its edges are built:

:class:`ChainGraph` (``chain``)  edges between nodes at distance ``1..window`` in node order,
    both directions (sequences: tokens, frames).
:class:`GridGraph` (``grid``)  4- or 8-neighbour edges between nodes at integer 2-D positions
    ``pos = (row, col)``, both directions (image patches).
:class:`KnnGraph` (``knn``)  each node receives edges from its ``k`` nearest nodes of the same
    item, in ``pos`` or feature space (Euclidean distance).
:class:`FullGraph` (``full``)  every ordered pair of distinct nodes of an item.
:class:`GivenGraph` (``given``)  the edges the dataset supplies (``edge_index`` / ``edge_ptr``).

Configs choose a builder with ``_target_`` (``conf/graph/builder/<name>.yaml``). Builders are
vectorised over all items of a modality (no Python loop over items or edges) and return edges
in local node ids, grouped by item, as :class:`ModalityGraphs` stores them.
:func:`build_graphs` builds every modality once per (dataset content, specs, self_loops) and
caches the result in memory.
"""
from mmgnn.data.graphs.base import Edges, GraphSpec, ModalityGraphs
from mmgnn.data.graphs.build import (
    add_self_loops,
    build_graphs,
    clear_graph_cache,
    graph_specs_from_config,
    graph_summary,
)
from mmgnn.data.graphs.chain import ChainGraph
from mmgnn.data.graphs.full import FullGraph
from mmgnn.data.graphs.given import GivenGraph
from mmgnn.data.graphs.grid import GridGraph
from mmgnn.data.graphs.knn import KnnGraph

__all__ = [
    "ChainGraph",
    "Edges",
    "FullGraph",
    "GivenGraph",
    "GraphSpec",
    "GridGraph",
    "KnnGraph",
    "ModalityGraphs",
    "add_self_loops",
    "build_graphs",
    "clear_graph_cache",
    "graph_specs_from_config",
    "graph_summary",
]
