"""Benchmark of the models: parameter count and forward+backward time per batch.

Rows: every fusion option (``conf/fusion/`` and ``$MMGNN_CONFIG_PATH``) with the default branch
and skip (``xattn`` also with ``attend=all``), then every gnn option with the default fusion and
skip; the defaults are those of ``conf/config.yaml``. Each model is built from the group YAML
files exactly as a run builds it (``instantiate(cfg.model, ..., branch=instantiate(cfg.gnn),
...)``), in train mode, on batches of the synthetic dataset
(:func:`mmgnn.data.synthetic.make_synthetic`, graphs from the default ``graph`` config: text
chain(1), image grid(4), audio chain(2)) collated by
:class:`~mmgnn.data.batch.MultimodalCollator`. Collation is not timed. The timed step is
``model(batch)``, a loss touching every output (cross-entropy on the logits plus the mean
cross-modal cosine similarity of the embeddings) and ``backward()``; the table gives the median
and the interquartile range over ``--repeats`` steps after ``--warmup`` steps
(``time.perf_counter``), and the machine it ran on.

    python -m experiments.bench_models [--batch-size 128] [--repeats 20] [--warmup 3] [--threads N]
        [--markdown docs/results/bench_models.md]
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time


import dgl
import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from experiments.markdown import add_markdown_option, write_if_asked
from mmgnn.config import CONF_DIR, group_options, load_option, register_configs
from mmgnn.data.batch import MultimodalBatch, MultimodalCollator
from mmgnn.data.graphs import build_graphs, graph_specs_from_config
from mmgnn.data.synthetic import make_synthetic
from mmgnn.models import MultimodalGNN, count_parameters

EXTRA_FUSION_ROWS = (("xattn", {"attend": "all"}),)
"""Fusion rows beyond one per option: other layouts of an option."""


def default_config() -> DictConfig:
    """``conf/config.yaml`` composed by Hydra with its defaults (``hydra.runtime.choices``
    names the chosen option of each group)."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("config", return_hydra_config=True)


def build(
    gnn: str, skip: str, fusion: str, fusion_overrides: dict, dims: dict[str, int], classes: int
) -> MultimodalGNN:
    fusion_cfg = load_option("fusion", fusion)
    for key, value in fusion_overrides.items():
        fusion_cfg[key] = value
    return instantiate(
        load_option("model", "default"),
        modality_dims=dims,
        num_classes=classes,
        branch=instantiate(load_option("gnn", gnn)),
        skip=instantiate(load_option("skip", skip)),
        fusion=instantiate(fusion_cfg),
    )


def step(model: MultimodalGNN, batch: MultimodalBatch) -> None:
    out = model(batch)
    loss = F.cross_entropy(out.logits, batch.labels)
    for a, b in itertools.combinations(out.embeddings.values(), 2):
        loss = loss - (a * b).sum(dim=1).mean()
    model.zero_grad(set_to_none=True)
    loss.backward()


def time_steps(model: MultimodalGNN, batches: list[MultimodalBatch], warmup: int, repeats: int) -> list[float]:
    model.train()
    for i in range(warmup):
        step(model, batches[i % len(batches)])
    seconds = []
    for i in range(repeats):
        start = time.perf_counter()
        step(model, batches[i % len(batches)])
        seconds.append(time.perf_counter() - start)
    return seconds


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op threads), dgl {dgl.__version__}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"load average {load}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-batches", type=int, default=4, help="distinct batches cycled through")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    add_markdown_option(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = default_config()
    dataset = make_synthetic(n_items=args.batch_size * args.n_batches, seed=args.seed)
    specs = graph_specs_from_config(dataset.modality_names, cfg.graph.default, cfg.graph.modalities)
    graphs = build_graphs(dataset, specs)
    collate = MultimodalCollator(graphs, torch.as_tensor(dataset.labels), torch.as_tensor(dataset.groups))
    rows = np.random.default_rng(args.seed).permutation(len(dataset.labels))
    batches = [collate(rows[i : i + args.batch_size].tolist()) for i in range(0, len(rows), args.batch_size)]
    dims = {m: int(g.x.shape[1]) for m, g in graphs.items()}
    classes = int(dataset.labels.max()) + 1
    nodes = {m: g.num_nodes() / args.batch_size for m, g in batches[0].graphs.items()}
    edges = {m: g.num_edges() / args.batch_size for m, g in batches[0].graphs.items()}

    defaults = cfg.hydra.runtime.choices
    fusions = sorted([(f, {}) for f in group_options("fusion")] + list(EXTRA_FUSION_ROWS), key=lambda r: r[0])
    runs = [("fusion", defaults["gnn"], defaults["skip"], f, o) for f, o in fusions]
    default_fusion = (defaults["fusion"], {})
    runs += [("gnn", g, defaults["skip"], *default_fusion) for g in group_options("gnn")]

    lines = [
        f"Models, forward+backward per batch of {args.batch_size} items (train mode, "
        f"median and IQR of {args.repeats} steps after {args.warmup} warm-up steps).",
        "",
        f"Machine: {machine_info()}",
        "",
        "Batch (per item): "
        + ", ".join(f"{m} d={dims[m]}, {nodes[m]:.1f} nodes, {edges[m]:.1f} edges" for m in dims),
        "",
        "| varied | gnn | skip | fusion | parameters | fwd+bwd ms (median) | IQR ms |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for varied, gnn, skip, fusion, overrides in runs:
        torch.manual_seed(args.seed)
        model = build(gnn, skip, fusion, overrides, dims, classes)
        seconds = time_steps(model, batches, args.warmup, args.repeats)
        q1, _, q3 = statistics.quantiles(seconds, n=4)
        label = fusion + "".join(f" ({k}={v})" for k, v in overrides.items())
        lines.append(
            f"| {varied} | {gnn} | {skip} | {label} | {count_parameters(model):,} | "
            f"{1e3 * statistics.median(seconds):.1f} | {1e3 * (q3 - q1):.1f} |"
        )
    print("\n".join(lines))
    write_if_asked(args, argv, "experiments.bench_models", "Benchmark: models", "\n".join(lines))


if __name__ == "__main__":
    main()
