"""Synthetic multimodal dataset whose class lives in the arrangement of nodes.

mmgnn's default dataset: three modalities, culture-like groups, missing modalities, and a class
that only structure-aware, multimodal models can read. The generative process, for ``C``
classes, ``G`` groups and ``n_bits = ceil(log2 C)`` code bits:

1. **Items.** Item ``i`` draws a class ``c_i`` and a group ``g_i`` (the ``C * G`` strata are
   balanced), an identity latent ``z_i ~ N(0, I_8)``, and, for ``round(missing_fraction *
   n_items)`` random items, exactly one modality it lacks (an empty ``ptr`` range; no item
   lacks more than one, so none lacks all).
2. **Culture.** The item's arrangement code is ``r_i = c_i XOR f(g_i)``: group ``g >= 1``
   inverts bit ``(g - 1) mod n_bits`` (:func:`culture_flips`; ``culture_flip=False`` makes
   ``r = c``). Class ``c`` of group ``g`` is thus drawn exactly like class ``c XOR f(g) XOR
   f(g')`` of group ``g'``, differing only in the group's style (step 5): hard negatives
   across cultures, which a model tells apart only by reading arrangement and style together.
   (When ``C`` is not a power of two a code may exceed ``C - 1``; it is still rendered.)
3. **Bits per modality.** Modality ``m`` (text 0, image 1, audio 2) shows the bits ``k`` of
   ``r`` with ``k mod 3 != (m + 2) mod 3``: for 8 classes text shows ``(b0, b1)``, image
   ``(b1, b2)``, audio ``(b0, b2)``. Every bit is shown by exactly two modalities, so one
   modality leaves classes confused in pairs (at best 1/2 accuracy with 8 classes) while any
   two determine the class. With ``C <= 4`` (fewer than 3 bits) every modality shows every bit.
4. **Arrangement.** Each shown bit owns a contiguous region of the item's nodes (a segment of
   a sequence, a stripe of the grid along a random axis; regions in random order) and two
   prototypes ``A_k, B_k`` of the modality, used half and half. Bit value 0 is *grouped* (a
   run of ``A`` then a run of ``B``; two blocks in a stripe), 1 is *alternating* (``ABAB``; a
   checkerboard), with ``A``/``B`` swapped at random. Every class has the same multiset of
   prototypes, so mean-pooled (bag-of-nodes) features carry no class information; whether
   neighbours share a prototype carries all of it (chain windows 1 and 2, 4- and 8-neighbour
   grids all see it, window 1 and 4 neighbours most clearly).
5. **Features.** ``x = P_m[type] + s_{m,g} + z_i W_m + noise * eps`` (float32): prototypes
   ``P_m ~ N(0, 2.5^2)``, a group style ``s_{m,g} ~ N(0, style_scale^2)`` (default 2: a
   per-culture shift, so items of one group are closer to each other than to same-class
   items of other groups and negatives from other groups are the easy ones), the
   identity through a modality-specific projection ``W_m ~ N(0, 0.4^2 / 8)`` (the same item
   can be retrieved across modalities beyond its class, but not trivially), and
   ``eps ~ N(0, 1)``.

**Hard cross-culture variant** (``style_scale=0``, ``data=synthetic_hard``): every group
renders in the same style, so nothing but the meaning separates cultures. An item of class
``c`` in group ``g`` is then drawn exactly like an item of class ``c XOR f(g) XOR f(g')`` in
group ``g'`` (same arrangement, same style, another label): a ``1 / C`` share of each other
group's items are as similar to it as its own class is, and cross-culture negatives are as
hard as same-culture ones. Cultures cannot be told apart from the features, so the fused
classifier's accuracy is bounded by ``1 / G`` for the codes every group shares (same-item
retrieval, the monitored metric, is unaffected by this bound).

Modalities: ``text`` 12-16 tokens of ``d = 32`` (``pos`` = token index), ``image`` a 4x4 grid of
patches of ``d = 24`` (``pos`` = (row, col)), ``audio`` 20 frames of ``d = 16`` (``pos`` = time
in seconds, 25 ms hop). No ``edge_index``: :mod:`mmgnn.data.graphs` builds graphs from ``pos``.
Prototypes, styles and projections depend on ``seed`` only; items on ``seed`` and ``n_items``.
The same arguments give identical arrays.

Command line: ``python -m mmgnn.data.synthetic --out DIR [--n-items N] [--seed S]
[--missing-fraction F] [--n-classes C] [--n-groups G] [--noise SIGMA] [--style-scale S]
[--no-culture-flip]``
writes the dataset in the folder contract of DESIGN.md (``mmgnn.data.folder.write_folder``).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass


import numpy as np
import pandas as pd

from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.splits import stratified_split

IDENTITY_DIM = 8
PROTOTYPE_SCALE = 2.5
STYLE_SCALE = 2.0
IDENTITY_SCALE = 0.4
AUDIO_HOP_SECONDS = 0.025


@dataclass(frozen=True)
class _Layout:
    """How one modality lays out its nodes.

    Args:
        name: modality name.
        dim: node feature dimension.
        kind: ``"sequence"`` (1-D, ``pos`` = index * ``pos_step``) or ``"grid"``
            (``side x side`` patches, ``pos`` = (row, col)).
        min_nodes, max_nodes: node count range of a sequence (inclusive); a grid has
            ``side**2`` nodes.
        side: grid side length.
        pos_step: distance between consecutive sequence positions.
    """

    name: str
    dim: int
    kind: str
    min_nodes: int = 0
    max_nodes: int = 0
    side: int = 0
    pos_step: float = 1.0


LAYOUTS = (
    _Layout("text", 32, "sequence", min_nodes=12, max_nodes=16),
    _Layout("image", 24, "grid", side=4),
    _Layout("audio", 16, "sequence", min_nodes=20, max_nodes=20, pos_step=AUDIO_HOP_SECONDS),
)


def shown_bits(modality_index: int, n_bits: int) -> np.ndarray:
    """int64 bit indices of the arrangement code that modality ``modality_index`` renders.

    With ``n_bits >= 3`` modality ``m`` omits the bits ``k`` with ``k % 3 == (m + 2) % 3``
    (8 classes: text (0, 1), image (1, 2), audio (0, 2)); with fewer bits it shows all.
    """
    bits = np.arange(n_bits)
    if n_bits < 3:
        return bits
    return bits[bits % 3 != (modality_index + 2) % 3]


def culture_flips(n_groups: int, n_bits: int) -> np.ndarray:
    """int64 ``[n_groups]`` code masks: group ``g >= 1`` inverts bit ``(g - 1) mod n_bits``.

    An item of class ``c`` and group ``g`` is drawn with arrangement code
    ``c ^ culture_flips(...)[g]``.
    """
    g = np.arange(n_groups)
    return np.where(g > 0, 1 << ((g - 1) % n_bits), 0).astype(np.int64)


def _even_regions(length: np.ndarray, n_regions: int, position: np.ndarray):
    """Split ``[0, length)`` into ``n_regions`` near-equal contiguous segments.

    Args:
        length: int ``[n, 1]`` extent per item.
        n_regions: number of segments.
        position: int ``[n, L]`` coordinates along the split axis.

    Returns:
        ``(region, local, size)``: int ``[n, L]`` segment index of each position, its offset
        inside the segment and the segment's size.
    """
    # segment j is [floor(j * length / n_regions), floor((j + 1) * length / n_regions))
    region = np.minimum(((position + 1) * n_regions - 1) // np.maximum(length, 1), n_regions - 1)
    start = region * length // n_regions
    end = (region + 1) * length // n_regions
    return region, position - start, end - start


def _first_prototype(layout: _Layout, n_items: int, n_regions: int, rng: np.random.Generator):
    """Node slots of every item: their region and which of its two prototypes they show.

    Returns:
        ``(region, first, counts)``: int ``[n, L_max]`` region of each node slot; bool
        ``[2, n, L_max]`` whether the slot shows the region's first prototype under the
        *grouped* (index 0, bit value 0) and *alternating* (index 1) pattern; int64 ``[n]``
        node counts (slots ``>= counts`` are padding).
    """
    if layout.kind == "sequence":
        counts = rng.integers(layout.min_nodes, layout.max_nodes + 1, size=n_items)
        t = np.broadcast_to(np.arange(layout.max_nodes), (n_items, layout.max_nodes))
        region, local, size = _even_regions(counts[:, None], n_regions, t)
        grouped = local < (size + 1) // 2
        alternating = local % 2 == 0
        return region, np.stack([grouped, alternating]), counts
    side = layout.side
    row, col = np.divmod(np.arange(side * side), side)
    # Stripes along a random axis: `across` indexes stripes, `along` runs inside a stripe.
    transposed = rng.random(n_items)[:, None] < 0.5
    across = np.where(transposed, col, row)
    along = np.where(transposed, row, col)
    region, local, _ = _even_regions(np.full((n_items, 1), side), n_regions, across)
    grouped = along < (side + 1) // 2
    alternating = (local + along) % 2 == 0
    counts = np.full(n_items, side * side, dtype=np.int64)
    return region, np.stack([grouped, alternating]), counts


def _positions(layout: _Layout, counts: np.ndarray) -> np.ndarray:
    """float32 ``[sum(counts), k]`` node positions of the present items, in node order."""
    if layout.kind == "sequence":
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return (local * layout.pos_step).astype(np.float32)[:, None]
    row, col = np.divmod(np.arange(layout.side**2), layout.side)
    grid = np.stack([row, col], axis=1).astype(np.float32)
    return np.tile(grid, (int((counts > 0).sum()), 1))


def _render_modality(
    layout: _Layout,
    modality_index: int,
    code: np.ndarray,
    groups: np.ndarray,
    identity: np.ndarray,
    present: np.ndarray,
    n_bits: int,
    n_groups: int,
    noise: float,
    style_scale: float,
    seed: int,
) -> ModalityData:
    """Node features of one modality for every item (see the module docstring, steps 3-5)."""
    n_items = code.shape[0]
    bits = shown_bits(modality_index, n_bits)
    n_regions = len(bits)
    world = np.random.default_rng([seed, 1, modality_index])
    prototypes = world.normal(scale=PROTOTYPE_SCALE, size=(2 * n_regions, layout.dim))
    style = style_scale * world.normal(size=(n_groups, layout.dim))
    projection = world.normal(
        scale=IDENTITY_SCALE * IDENTITY_DIM**-0.5, size=(IDENTITY_DIM, layout.dim)
    )

    rng = np.random.default_rng([seed, 2, modality_index, n_items])
    region, first_by_pattern, counts = _first_prototype(layout, n_items, n_regions, rng)
    # Which shown bit each region renders (random order per item) and A/B swaps per region.
    region_bit = np.argsort(rng.random((n_items, n_regions)), axis=1)
    swap = rng.random((n_items, n_regions)) < 0.5
    rows = np.arange(n_items)[:, None]
    slot = region_bit[rows, region]
    bit_value = (code[:, None] >> bits[slot]) & 1
    first = np.where(bit_value == 1, first_by_pattern[1], first_by_pattern[0])
    node_type = 2 * slot + (first ^ swap[rows, region]).astype(np.int64)

    counts = np.where(present, counts, 0)
    valid = np.arange(node_type.shape[1])[None, :] < counts[:, None]
    item_of_node = np.repeat(np.arange(n_items), counts)
    x = (
        prototypes[node_type[valid]]
        + style[groups[item_of_node]]
        + (identity @ projection)[item_of_node]
        + noise * rng.normal(size=(int(counts.sum()), layout.dim))
    )
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ModalityData(
        name=layout.name, x=x.astype(np.float32), ptr=ptr, pos=_positions(layout, counts)
    )


def _check_arguments(n_items, n_classes, n_groups, missing_fraction, noise, style_scale) -> None:
    """Raise ``ValueError`` naming the first argument of :func:`make_synthetic` out of range."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    if not 0.0 <= missing_fraction <= 1.0:
        raise ValueError(f"missing_fraction must be in [0, 1], got {missing_fraction}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if style_scale < 0:
        raise ValueError(f"style_scale must be >= 0, got {style_scale}")


def make_synthetic(
    n_items: int = 1200,
    n_classes: int = 8,
    n_groups: int = 3,
    missing_fraction: float = 0.1,
    noise: float = 1.0,
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    name: str = "synthetic",
    culture_flip: bool = True,
    style_scale: float = STYLE_SCALE,
) -> MultimodalDataset:
    """Generate the synthetic dataset described in the module docstring.

    Args:
        n_items: number of items.
        n_classes: number of classes (>= 2); ``ceil(log2 n_classes)`` code bits.
        n_groups: number of groups (cultures) named ``g0, g1, ...`` (>= 1; zero-padded
            from 11 groups on, ``g00, g01, ...``, so that sorted names keep code order).
        missing_fraction: fraction of items that lack exactly one modality, in ``[0, 1]``.
        noise: standard deviation of the Gaussian noise added to every node feature.
        seed: random seed; the same arguments give identical arrays.
        split_fractions: train/val/test fractions of the stratified (class x group) split.
        name: dataset name.
        culture_flip: whether groups invert a code bit (step 2 of the module docstring);
            ``False`` renders every class the same way in every group (style still differs).
        style_scale: standard deviation of the per-group style shift (step 5; >= 0); 0 gives
            the hard cross-culture variant (every group in the same style).

    Returns:
        A :class:`MultimodalDataset` with modalities ``text``, ``image``, ``audio`` and items
        columns ``item_id``, ``label``, ``group``, ``split``.
    """
    _check_arguments(n_items, n_classes, n_groups, missing_fraction, noise, style_scale)

    rng = np.random.default_rng([seed, 0, n_items])
    stratum = rng.permutation(np.arange(n_items) % (n_classes * n_groups))
    labels = (stratum % n_classes).astype(np.int64)
    groups = (stratum // n_classes).astype(np.int64)
    identity = rng.normal(size=(n_items, IDENTITY_DIM))
    present = np.ones((n_items, len(LAYOUTS)), dtype=bool)
    lacking = rng.choice(n_items, size=int(round(missing_fraction * n_items)), replace=False)
    present[lacking, rng.integers(len(LAYOUTS), size=lacking.size)] = False

    n_bits = max(1, int(np.ceil(np.log2(n_classes))))
    code = labels ^ culture_flips(n_groups, n_bits)[groups] if culture_flip else labels
    modalities = {
        layout.name: _render_modality(
            layout, m, code, groups, identity, present[:, m], n_bits, n_groups, noise,
            style_scale, seed,
        )
        for m, layout in enumerate(LAYOUTS)
    }

    split = stratified_split(labels, groups, split_fractions, seed)
    width = len(str(n_groups - 1))  # zero-padded so that sorted names keep code order
    group_names = [f"g{g:0{width}d}" for g in range(n_groups)]
    items = pd.DataFrame(
        {
            "item_id": [f"item{i:05d}" for i in range(n_items)],
            "label": labels,
            "group": np.asarray(group_names, dtype=object)[groups],
            "split": split,
        }
    )
    return MultimodalDataset(
        items=items,
        modalities=modalities,
        labels=labels,
        label_names=[str(c) for c in range(n_classes)],
        groups=groups,
        group_names=group_names,
        split=np.asarray(split),
        name=name,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: write a synthetic dataset in the folder contract to ``--out``."""
    parser = argparse.ArgumentParser(
        prog="python -m mmgnn.data.synthetic",
        description="Write mmgnn's synthetic multimodal dataset as a dataset folder.",
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--n-items", type=int, default=1200)
    parser.add_argument("--n-classes", type=int, default=8)
    parser.add_argument("--n-groups", type=int, default=3)
    parser.add_argument("--missing-fraction", type=float, default=0.1)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--style-scale",
        type=float,
        default=STYLE_SCALE,
        help="per-group style shift (0: the hard cross-culture variant)",
    )
    parser.add_argument(
        "--no-culture-flip",
        dest="culture_flip",
        action="store_false",
        help="render every class the same way in every group",
    )
    args = parser.parse_args(argv)

    from mmgnn.data.folder import write_folder

    dataset = make_synthetic(
        n_items=args.n_items,
        n_classes=args.n_classes,
        n_groups=args.n_groups,
        missing_fraction=args.missing_fraction,
        noise=args.noise,
        seed=args.seed,
        culture_flip=args.culture_flip,
        style_scale=args.style_scale,
    )
    write_folder(dataset, args.out)
    print(f"wrote {dataset.n_items} items ({', '.join(dataset.modality_names)}) to {args.out}")


if __name__ == "__main__":
    main()
