"""Positional and structural node encodings (the ``pe`` config group).

What a node is told about where it sits, after GraphGPS (Rampasek et al., NeurIPS 2022,
"Recipe for a General, Powerful, Scalable Graph Transformer"), which makes such encodings a
config choice per dataset. One :class:`Encoding` subclass per option, chosen in config by
``_target_`` plus the class's own fields, like the graph builders
(``conf/pe/encoding/<name>.yaml``; :func:`make_encoding`):

``none``        :class:`NoEncoding`, nothing (every node of a chain looks alike to the branch).
``sinusoidal``  :class:`SinusoidalEncoding`, Transformer sin/cos features of ``pos``
                (Vaswani et al. 2017), any number of position columns.
``laplacian``   :class:`LaplacianEncoding`, LapPE: the eigenvectors of the ``k`` smallest
                nonzero eigenvalues of each item's normalised Laplacian
                ``L = I - D^-1/2 A D^-1/2`` (Dwivedi et al. 2020; GraphGPS), skipping the
                null space (one eigenvector per connected component), sign-flipped at random
                per item and eigenvector while training (in the model).
``rwse``        :class:`RandomWalkEncoding`, RWSE: the return probabilities ``(P^t)_ii`` of a
                random walk ``P = D^-1 A`` for ``t = 1..steps`` (Dwivedi et al., ICLR 2022).
``index``       :class:`IndexEncoding`, a node's index within its item, which the model turns
                into a learned embedding (for chains).

Encodings are raw float32 ``[total_nodes, raw_dim]`` tensors computed once per (dataset
content, graph config, encoding) by :func:`compute_encoding`, vectorised: the graph encodings
stack all items of one node count into one ``[n_items, n, n]`` tensor (a Python loop over the
distinct sizes only), and results are cached in memory like the graphs.

>>> make_encoding({"_target_": "mmgnn.data.pe.RandomWalkEncoding", "steps": 4}, "pe.default")
RandomWalkEncoding(steps=4)
>>> describe(LaplacianEncoding(k=2))
'laplacian(k=2)'
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Literal

import numpy as np
import torch
from hydra.utils import get_class
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mmgnn.data.graphs import ModalityGraphs

COMBINES = ("concat", "add")
"""How the model joins an encoding to node features: ``concat`` appends it, ``add`` adds a
learned linear projection of it (the feature size stays ``d``)."""


class Encoding:
    """The base of every node encoding: a frozen dataclass whose fields are its options.

    Class attributes: ``kind``, the option's short name (messages, :func:`describe`, the
    model's choice of how to read it); ``needs_pos``, whether it reads node positions.
    ``compute(graphs)`` returns float32 ``[total_nodes, raw_dim]`` for one modality's graphs.
    """

    kind: str = ""
    needs_pos: bool = False

    def compute(self, graphs: ModalityGraphs) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class NoEncoding(Encoding):
    """``pe=none``: nodes carry only their features (raw_dim 0).

    >>> NoEncoding().raw_dim
    0
    """

    kind = "none"
    needs_pos = False

    @property
    def raw_dim(self) -> int:
        return 0

    def compute(self, graphs: ModalityGraphs) -> torch.Tensor:
        return torch.zeros(int(graphs.ptr[-1]), 0)


@dataclass(frozen=True)
class SinusoidalEncoding(Encoding):
    """Transformer-style features of node positions (Vaswani et al. 2017, Sec. 3.5).

    For every position column ``p`` (time for sequences, row and col for grids) and frequency
    ``w_j = base ** (-j / num_frequencies)``, ``j = 0..num_frequencies-1``, the features
    ``sin(scale * p * w_j)`` and ``cos(scale * p * w_j)``.

    Args:
        num_frequencies: frequencies per position column (``>= 1``).
        base: the longest wavelength is about ``2 pi base`` (Transformer: 10000).
        scale: multiplies ``pos`` first (e.g. 40 for frames at a 25 ms hop given in seconds).
        unit: ``raw`` reads ``pos`` as it is; ``spacing`` first divides each position column
            by its spacing (:func:`pos_spacing`: the median nonzero step between consecutive
            nodes of an item), so positions in seconds, pixels or tokens all count steps and
            the encoding varies along a sequence whatever the unit (``pe=auto``).

    Output: float32 ``[N, 2 * num_frequencies * pos_columns]``, per column all sines then all
    cosines.

    >>> SinusoidalEncoding(num_frequencies=2, base=100.0).frequencies().tolist()
    [1.0, 0.1]
    >>> SinusoidalEncoding(num_frequencies=0)
    Traceback (most recent call last):
    ...
    ValueError: sinusoidal num_frequencies must be an integer >= 1, got 0
    """

    num_frequencies: int = 8
    base: float = 10000.0
    scale: float = 1.0
    unit: Literal["raw", "spacing"] = "raw"
    kind = "sinusoidal"
    needs_pos = True

    def __post_init__(self) -> None:
        if int(self.num_frequencies) != self.num_frequencies or self.num_frequencies < 1:
            raise ValueError(f"sinusoidal num_frequencies must be an integer >= 1, got {self.num_frequencies!r}")
        if self.base <= 1:
            raise ValueError(f"sinusoidal base must be > 1, got {self.base!r}")
        if self.unit not in ("raw", "spacing"):
            raise ValueError(f"sinusoidal unit must be raw or spacing, got {self.unit!r}")

    def frequencies(self) -> torch.Tensor:
        """float64 ``[num_frequencies]``: ``base ** (-j / num_frequencies)``."""
        j = torch.arange(self.num_frequencies, dtype=torch.float64)
        return float(self.base) ** (-j / self.num_frequencies)

    def compute(self, graphs: ModalityGraphs) -> torch.Tensor:
        pos = graphs.pos.to(torch.float64)
        if self.unit == "spacing":
            pos = pos / pos_spacing(pos, graphs.ptr)
        angle = pos[:, :, None] * float(self.scale) * self.frequencies()
        features = torch.cat([torch.sin(angle), torch.cos(angle)], dim=2)  # [N, C, 2F]
        return features.reshape(angle.shape[0], -1).to(torch.float32)


def pos_spacing(pos: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """float64 ``[C]``: per position column, the median of the nonzero absolute steps between
    consecutive nodes of the same item (1 where a column never changes).

    ``pos``: ``[total_nodes, C]``; ``ptr``: int64 ``[n_items + 1]`` node ranges per item.

    >>> pos = torch.tensor([[0.0], [0.01], [0.02], [0.0], [0.01]], dtype=torch.float64)
    >>> pos_spacing(pos, torch.tensor([0, 3, 5])).tolist()
    [0.01]
    """
    pos = pos.to(torch.float64)
    steps = (pos[1:] - pos[:-1]).abs()
    same_item = torch.ones(steps.shape[0], dtype=torch.bool)
    starts = ptr[1:-1]
    same_item[starts[(starts > 0) & (starts < pos.shape[0])] - 1] = False
    steps = steps[same_item]
    spacing = torch.ones(pos.shape[1], dtype=torch.float64)
    for c in range(pos.shape[1]):
        nonzero = steps[:, c][steps[:, c] > 0]
        if nonzero.numel():
            spacing[c] = nonzero.median()
    return spacing


def _items_by_size(graphs: ModalityGraphs):
    """Per distinct node count ``n >= 1``: (n, items ``[n_items_n]``, dense symmetric
    adjacency float64 ``[n_items_n, n, n]`` without self-loops, node rows ``[n_items_n * n]``).

    Edges are symmetrised (a ``knn`` graph is directed; an encoding of where a node sits
    reads the undirected structure)."""
    counts = graphs.ptr[1:] - graphs.ptr[:-1]
    edge_counts = graphs.edge_ptr[1:] - graphs.edge_ptr[:-1]
    edge_item = torch.repeat_interleave(torch.arange(counts.shape[0]), edge_counts)
    slot = torch.zeros_like(counts)
    for n in torch.unique(counts).tolist():
        if n == 0:
            continue
        items = torch.nonzero(counts == n).flatten()
        slot[items] = torch.arange(items.shape[0])
        in_group = counts[edge_item] == n
        e_slot, src, dst = slot[edge_item[in_group]], graphs.src[in_group], graphs.dst[in_group]
        adjacency = torch.zeros(items.shape[0], n, n, dtype=torch.float64)
        adjacency[e_slot, dst, src] = 1.0
        adjacency[e_slot, src, dst] = 1.0
        adjacency.diagonal(dim1=1, dim2=2).zero_()
        rows = (graphs.ptr[items][:, None] + torch.arange(n)).flatten()
        yield n, items, adjacency, rows


def normalised_laplacian(adjacency: torch.Tensor) -> torch.Tensor:
    """float64 ``[n_items, n, n]``: ``L = I - D^-1/2 A D^-1/2`` of each stacked adjacency.

    Chung's definition (Spectral Graph Theory, 1997): an isolated node (degree 0) gets an
    all-zero row and column (``L_ii = 0``, no division by its degree), so it adds one zero
    eigenvalue like any other connected component. The eigenvalues lie in ``[0, 2]``.
    """
    degree = adjacency.sum(2)
    connected = degree > 0
    scale = degree.clamp(min=1.0).rsqrt() * connected  # D^-1/2, 0 for isolated nodes
    normalised_adjacency = scale[:, :, None] * adjacency * scale[:, None, :]
    return torch.diag_embed(connected.to(adjacency.dtype)) - normalised_adjacency


def component_counts(adjacency: torch.Tensor) -> torch.Tensor:
    """int64 ``[n_items]``: connected components of each stacked graph ``[n_items, n, n]``
    (an isolated node is one), i.e. the multiplicity of the Laplacian's eigenvalue 0.

    Counted exactly on the block-diagonal union (scipy), where a tolerance on the eigenvalues
    would have to sit between rounding error and the smallest nonzero eigenvalue, which falls
    with size (about ``pi^2 / (2 n^2)`` for a path of ``n`` nodes)."""
    items, n = adjacency.shape[:2]
    item, i, j = (t.numpy() for t in torch.nonzero(adjacency, as_tuple=True))
    union = coo_matrix((np.ones(item.shape[0]), (item * n + i, item * n + j)), shape=(items * n, items * n))
    _, component = connected_components(union, directed=False)
    first_node = np.unique(component, return_index=True)[1]
    return torch.as_tensor(np.bincount(first_node // n, minlength=items), dtype=torch.int64)


@dataclass(frozen=True)
class LaplacianEncoding(Encoding):
    """LapPE (Dwivedi et al. 2020, "Benchmarking Graph Neural Networks"): eigenvectors of each
    item's normalised Laplacian ``L = I - D^-1/2 A D^-1/2`` (:func:`normalised_laplacian`).

    An item with ``c`` connected components has ``c`` zero eigenvalues, whose eigenvectors
    only say which component a node is in; they are all skipped (:func:`component_counts`).
    Each node gets its entries of the unit-norm eigenvectors of the next ``k`` eigenvalues in
    ascending order, i.e. the ``k`` smallest nonzero ones counted with multiplicity; an item
    with fewer than ``k`` of them (``n - c < k``) is zero-padded to ``k`` columns. An
    eigenvector's sign (and, for a repeated eigenvalue, the basis of its eigenspace) is
    arbitrary, so the model flips signs at random per item while training. One
    ``torch.linalg.eigh`` per distinct node count on the stacked ``[n_items, n, n]`` Laplacians.

    Output: float32 ``[N, k]``.
    """

    k: int = 8
    kind = "laplacian"
    needs_pos = False

    def __post_init__(self) -> None:
        if int(self.k) != self.k or self.k < 1:
            raise ValueError(f"laplacian k must be an integer >= 1, got {self.k!r}")

    def compute(self, graphs: ModalityGraphs) -> torch.Tensor:
        out = torch.zeros(int(graphs.ptr[-1]), self.k, dtype=torch.float32)
        for n, _, adjacency, rows in _items_by_size(graphs):
            _, vectors = torch.linalg.eigh(normalised_laplacian(adjacency))  # ascending eigenvalues
            column = component_counts(adjacency)[:, None] + torch.arange(self.k)  # [items, k]
            kept = vectors.gather(2, column.clamp(max=n - 1)[:, None, :].expand(-1, n, -1))
            kept = kept * (column < n)[:, None, :]  # padding past the last eigenvector
            out[rows] = kept.reshape(rows.shape[0], self.k).to(torch.float32)
        return out


@dataclass(frozen=True)
class RandomWalkEncoding(Encoding):
    """RWSE: ``[(P^1)_ii, ..., (P^steps)_ii]`` with ``P = D^-1 A`` (rows of isolated nodes 0).

    Invariant to node order; one batched matrix power series per distinct node count.

    Output: float32 ``[N, steps]``.

    A triangle: from any node a walk returns after 2 steps with probability 1/2, after 3 with 1/4.

    >>> RandomWalkEncoding(steps=3).compute(_doctest_graphs(3, [(0, 1), (1, 2), (0, 2)]))[0].tolist()
    [0.0, 0.5, 0.25]
    """

    steps: int = 8
    kind = "rwse"
    needs_pos = False

    def __post_init__(self) -> None:
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"rwse steps must be an integer >= 1, got {self.steps!r}")

    def compute(self, graphs: ModalityGraphs) -> torch.Tensor:
        out = torch.zeros(int(graphs.ptr[-1]), self.steps, dtype=torch.float32)
        for _, _, adjacency, rows in _items_by_size(graphs):
            degree = adjacency.sum(2, keepdim=True)
            walk = adjacency / degree.clamp(min=1.0)
            power, returns = walk, []
            for _ in range(self.steps):
                returns.append(power.diagonal(dim1=1, dim2=2))
                power = power @ walk
            out[rows] = torch.stack(returns, dim=2).reshape(-1, self.steps).to(torch.float32)
        return out


@dataclass(frozen=True)
class IndexEncoding(Encoding):
    """A node's index within its item (``0..n-1`` in node order), embedded by the model
    (``nn.Embedding(max_index, dim)``, learned). Items longer than ``max_index`` fail at start.

    Output: float32 ``[N, 1]`` holding the integer index.

    >>> IndexEncoding().compute(_doctest_graphs(3, [(0, 1), (1, 2)]))[:, 0].tolist()
    [0.0, 1.0, 2.0]
    """

    dim: int = 16
    max_index: int = 256
    kind = "index"
    needs_pos = False

    def __post_init__(self) -> None:
        if int(self.dim) != self.dim or self.dim < 1 or int(self.max_index) != self.max_index or self.max_index < 1:
            raise ValueError(f"index dim and max_index must be integers >= 1, got {self.dim!r}, {self.max_index!r}")

    def compute(self, graphs: ModalityGraphs) -> torch.Tensor:
        counts = graphs.ptr[1:] - graphs.ptr[:-1]
        if counts.numel() and int(counts.max()) > self.max_index:
            raise ValueError(
                f"modality {graphs.name!r}: an item has {int(counts.max())} nodes, more than "
                f"the index encoding's max_index={self.max_index}; raise pe max_index"
            )
        item = torch.repeat_interleave(torch.arange(counts.shape[0]), counts)
        local = torch.arange(item.shape[0]) - graphs.ptr[:-1][item]
        return local.to(torch.float32)[:, None]


def _doctest_graphs(n: int, edges: list[tuple[int, int]]) -> ModalityGraphs:
    """One item of ``n`` nodes with the undirected ``edges`` (the docstrings' examples)."""
    both = edges + [(b, a) for a, b in edges]
    return ModalityGraphs(
        name="m", x=torch.zeros(n, 1), ptr=torch.tensor([0, n]),
        src=torch.tensor([a for a, _ in both]), dst=torch.tensor([b for _, b in both]),
        edge_ptr=torch.tensor([0, len(both)]), pos=None,
    )


def make_encoding(options: Mapping, where: str) -> Encoding:
    """The encoding that ``options`` name: ``_target_`` (an :class:`Encoding` subclass) and
    that class's fields, e.g. ``{"_target_": "mmgnn.data.pe.RandomWalkEncoding", "steps": 16}``
    (``conf/pe/encoding/<name>.yaml`` holds one per option).

    ``where`` says whose options these are (``"pe.default"``, ``"pe for modality 'text'"``);
    every error names it and the option.

    >>> make_encoding({"_target_": "mmgnn.data.pe.IndexEncoding", "dim": 4}, "pe.default")
    IndexEncoding(dim=4, max_index=256)
    >>> make_encoding({"_target_": "mmgnn.data.pe.RandomWalkEncoding", "k": 2}, "pe.default")
    Traceback (most recent call last):
    ...
    ValueError: pe.default: pe encoding 'rwse' (mmgnn.data.pe.RandomWalkEncoding) has no options ['k']; its options are ['steps']
    """
    options = dict(options or {})
    target = options.pop("_target_", None)
    if target is None:
        hint = (f" (`kind: {options['kind']}` is the old form)" if "kind" in options else "")
        raise ValueError(
            f"{where}: a pe entry names its encoding with _target_{hint}; choose one from "
            f"conf/pe/encoding/ (e.g. pe/encoding@pe.default=rwse) or give "
            f"_target_: {__name__}.<{' | '.join(c.__name__ for c in Encoding.__subclasses__())}>"
        )
    try:
        cls = get_class(str(target))
    except Exception as error:  # Hydra's error names the module or attribute it missed
        raise ValueError(f"{where}: cannot load pe encoding {target!r}: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, Encoding)):
        raise ValueError(f"{where}: pe encoding {target!r} is not a {__name__}.Encoding subclass")
    valid = [f.name for f in fields(cls)]
    unknown = [o for o in options if o not in valid]
    if unknown:
        raise ValueError(f"{where}: pe encoding {cls.kind!r} ({target}) has no options {unknown}; "
                         f"its options are {valid}")
    try:
        return cls(**options)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def describe(encoding: Encoding) -> str:
    """A short readable form, e.g. ``rwse(steps=8)``, ``none``."""
    options = ", ".join(f"{k}={v}" for k, v in asdict(encoding).items())
    return f"{encoding.kind}({options})" if options else encoding.kind


def encodings_from_config(
    modalities: Iterable[str],
    has_pos: Mapping[str, bool],
    default: Mapping,
    per_modality: Mapping | None = None,
    without_pos: Mapping | None = None,
) -> dict[str, Encoding]:
    """One encoding per modality from the ``pe`` group (like ``graph.modalities``).

    Args:
        modalities: the dataset's modality names, in order.
        has_pos: modality -> whether the data gives node positions.
        default: every modality's encoding (:func:`make_encoding`'s options), e.g.
            ``{"_target_": "mmgnn.data.pe.SinusoidalEncoding"}``.
        per_modality: modality -> its own encoding, replacing ``default``.
        without_pos: the encoding of modalities without ``pos`` (not listed in
            ``per_modality``) instead of ``default``; ``None``: no fallback.
    Raises:
        ValueError: an encoding that needs ``pos`` for a modality without it (naming the
            modality), an unknown encoding or option, or a listed modality the data lacks.

    >>> rwse = {"_target_": "mmgnn.data.pe.RandomWalkEncoding", "steps": 3}
    >>> encodings_from_config(["text", "image"], {"text": False, "image": True},
    ...                       {"_target_": "mmgnn.data.pe.SinusoidalEncoding"}, without_pos=rwse)
    {'text': RandomWalkEncoding(steps=3), 'image': SinusoidalEncoding(num_frequencies=8, base=10000.0, scale=1.0, unit='raw')}
    """
    modalities = tuple(modalities)
    per_modality = dict(per_modality or {})
    unknown = [m for m in per_modality if m not in modalities]
    if unknown:
        raise ValueError(
            f"pe.modalities names modalities {unknown} that the dataset does not have; "
            f"the dataset's modalities are {list(modalities)}"
        )
    encodings = {}
    for name in modalities:
        options = per_modality.get(name)
        if options is None:
            options = default if has_pos[name] or without_pos is None else without_pos
        encoding = make_encoding(options, f"pe for modality {name!r}")
        if encoding.needs_pos and not has_pos[name]:
            raise ValueError(
                f"pe for modality {name!r}: the {encoding.kind} encoding reads node positions "
                f"(pos), but modality {name!r} has none; choose another encoding for it "
                f"(+pe/encoding@pe.modalities.{name}=rwse) or give pos in {name}.npz"
            )
        encodings[name] = encoding
    return encodings


_PE_CACHE: dict[tuple, torch.Tensor] = {}


def clear_pe_cache() -> None:
    """Forget every cached :func:`compute_encoding` result."""
    _PE_CACHE.clear()


def compute_encoding(graphs: ModalityGraphs, encoding: Encoding, graph_key: tuple) -> torch.Tensor:
    """float32 ``[total_nodes, raw_dim]`` encoding of every node of one modality.

    Cached by ``(graph_key, modality, encoding)``; ``graph_key`` identifies the graphs
    (dataset fingerprint, graph spec, self-loops), so the encoding is part of what keys them.
    """
    key = (graph_key, graphs.name, encoding)
    cached = _PE_CACHE.get(key)
    if cached is None:
        if encoding.needs_pos and graphs.pos is None:
            raise ValueError(f"modality {graphs.name!r}: the {encoding.kind} encoding needs pos")
        cached = encoding.compute(graphs)
        _PE_CACHE[key] = cached
    return cached


def dataset_encodings(pe_config: Mapping, dataset) -> dict[str, Encoding]:
    """modality -> encoding for ``dataset`` (a ``MultimodalDataset``) from the resolved ``pe``
    group (``default``, ``modalities``, ``without_pos``)."""
    has_pos = {m: d.pos is not None for m, d in dataset.modalities.items()}
    return encodings_from_config(
        dataset.modality_names,
        has_pos,
        pe_config["default"],
        pe_config.get("modalities"),
        pe_config.get("without_pos"),
    )
