"""Benchmark of graph building and collation on random datasets.

Times four builders of :mod:`mmgnn.data.graphs` on one modality each, a whole (uncached)
:func:`~mmgnn.data.graphs.build_graphs`, and collating 100 batches of 256 items with
:class:`~mmgnn.data.batch.MultimodalCollator`; prints the medians of several repeats
(``time.perf_counter``) as a markdown table, with the machine it ran on.

    python -m experiments.bench_graphs [--sizes 10000 100000] [--repeats 5] [--seed 0]
                                       [--threads 1]

``--threads`` sets torch's and DGL's CPU threads (0: the libraries' defaults). The default,
1, is what a ``DataLoader`` worker gets and keeps the numbers steady on a shared CPU, where
several threads per process can make these many small operations 10-100x slower.

The datasets have three modalities, each missing for about 10% of the items: ``text`` (a
sequence of 12..20 tokens, d = 32), ``image`` (a 4x4 patch grid, d = 16) and ``audio`` (a
sequence of 16..24 frames, d = 24).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable


import dgl
import numpy as np
import pandas as pd
import torch

from experiments.markdown import add_markdown_option, write_if_asked
from mmgnn.data.batch import MultimodalCollator
from mmgnn.data.dataset import ModalityData, MultimodalDataset
from mmgnn.data.graphs import (
    ChainGraph,
    FullGraph,
    GridGraph,
    KnnGraph,
    build_graphs,
    clear_graph_cache,
)

MISSING_FRACTION = 0.1
BATCH_SIZE = 256
N_BATCHES = 100
PIPELINE_SPECS = {
    "text": ChainGraph(window=1),
    "image": GridGraph(neighbours=4),
    "audio": KnnGraph(k=8),
}
BUILDER_RUNS = (  # (modality, spec)
    ("text", ChainGraph(window=1)),
    ("image", GridGraph(neighbours=4)),
    ("audio", KnnGraph(k=8, space="pos")),
    ("text", FullGraph()),
)


def _sequence(name, counts, dim, rng) -> ModalityData:
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    starts = np.repeat(ptr[:-1], counts)
    pos = (np.arange(ptr[-1]) - starts).astype(np.float32)[:, None]
    x = rng.standard_normal((ptr[-1], dim), dtype=np.float32)
    return ModalityData(name=name, x=x, ptr=ptr, pos=pos)


def random_dataset(n_items: int, seed: int = 0) -> MultimodalDataset:
    """Three random modalities (``text``, ``image``, ``audio``), ~10% missing each."""
    rng = np.random.default_rng(seed)

    def with_missing(counts):
        return np.where(rng.random(n_items) < MISSING_FRACTION, 0, counts)

    text = _sequence("text", with_missing(rng.integers(12, 21, n_items)), 32, rng)
    audio = _sequence("audio", with_missing(rng.integers(16, 25, n_items)), 24, rng)
    image_counts = with_missing(np.full(n_items, 16))
    cells = np.argwhere(np.ones((4, 4))).astype(np.float32)
    image = ModalityData(
        name="image",
        x=rng.standard_normal((int(image_counts.sum()), 16), dtype=np.float32),
        ptr=np.concatenate([[0], np.cumsum(image_counts)]).astype(np.int64),
        pos=np.tile(cells, (int((image_counts > 0).sum()), 1)),
    )
    return MultimodalDataset(
        items=pd.DataFrame({"item_id": [f"item{i}" for i in range(n_items)]}),
        modalities={"text": text, "image": image, "audio": audio},
        labels=rng.integers(0, 8, n_items),
        label_names=[str(c) for c in range(8)],
        groups=np.zeros(n_items, dtype=np.int64),
        group_names=["all"],
        split=np.array(["train"] * n_items),
        name=f"random{n_items}",
    )


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time in seconds of ``repeats`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def collate_batches(dataset: MultimodalDataset, seed: int) -> int:
    """Collate ``N_BATCHES`` random batches of ``BATCH_SIZE`` items; returns nodes seen."""
    graphs = build_graphs(dataset, PIPELINE_SPECS)
    collate = MultimodalCollator(
        graphs, torch.as_tensor(dataset.labels), torch.as_tensor(dataset.groups)
    )
    order = torch.randperm(dataset.n_items, generator=torch.Generator().manual_seed(seed))
    nodes = 0
    for b in range(N_BATCHES):
        rows = order[(b * BATCH_SIZE) % dataset.n_items:][:BATCH_SIZE]
        nodes += sum(g.num_nodes() for g in collate(rows).graphs.values())
    return nodes


def bench(n_items: int, repeats: int, seed: int) -> dict[str, tuple[float, str]]:
    """operation -> (median seconds, size note) on one random dataset."""
    dataset = random_dataset(n_items, seed)
    out = {}
    for name, spec in BUILDER_RUNS:
        seconds, (src, _, _) = median_time(
            lambda m=dataset.modalities[name], s=spec: s.edges(m), repeats
        )
        out[f"{spec.describe()} on {name}"] = (seconds, f"{src.shape[0] / 1e6:.2f}M edges")

    def uncached_build():
        clear_graph_cache()
        return build_graphs(dataset, PIPELINE_SPECS)

    seconds, graphs = median_time(uncached_build, repeats)
    edges = sum(g.num_edges for g in graphs.values())
    out["build_graphs (text chain, image grid, audio knn)"] = (
        seconds, f"{edges / 1e6:.2f}M edges"
    )
    seconds, nodes = median_time(lambda: collate_batches(dataset, seed), repeats)
    out[f"collate {N_BATCHES} batches of {BATCH_SIZE} (3 modalities)"] = (
        seconds, f"{nodes / 1e6:.2f}M nodes"
    )
    clear_graph_cache()
    return out


def markdown_table(results: dict[int, dict[str, tuple[float, str]]]) -> str:
    sizes = list(results)
    header = "| operation | " + " | ".join(f"{n:,} items" for n in sizes) + " |"
    lines = [header, "|---|" + "---:|" * len(sizes)]
    for op in results[sizes[0]]:
        cells = [f"{results[n][op][0] * 1e3:,.1f} ms ({results[n][op][1]})" for n in sizes]
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(torch threads: {torch.get_num_threads()}; load average {load}), "
        f"Python {platform.python_version()}, torch {torch.__version__}, dgl {dgl.__version__}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    add_markdown_option(parser)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        dgl.utils.set_num_threads(args.threads)
    results = {n: bench(n, args.repeats, args.seed) for n in args.sizes}
    print(f"Median of {args.repeats} repeats (time.perf_counter).\n")
    print(markdown_table(results))
    print(f"\nMachine: {machine()}")
    write_if_asked(args, argv, "experiments.bench_graphs", "Benchmark: graph building and collation",
                   f"Median of {args.repeats} repeats (time.perf_counter); {machine()}.\n\n"
                   + markdown_table(results))


if __name__ == "__main__":
    main()
