"""Training and evaluation cost of each gnn and fusion variant at a few dataset sizes.

    python -m experiments.benchmark [--sizes 1200 4800] [--batches 6] [--threads 2]

Each (variant, size) runs in a fresh process (so its peak memory is its own) with the
project's real configs (composed by Hydra, defaults plus one override). Reported: graph
building time, median seconds per training batch for each phase (collate, forward, backward,
optimiser step), training and evaluation throughput (items/s) and peak resident memory.
Numbers are medians over ``--batches`` batches after one warm-up batch; machines are shared
and noisy, so compare rows of one run, not runs.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time

from experiments.markdown import add_markdown_option, frame_table, write_if_asked

VARIED_GROUPS = ("gnn", "fusion")
"""Every option of these groups (``conf/`` and ``$MMGNN_CONFIG_PATH``) is one variant."""


def variants() -> list[tuple[str, str]]:
    """``(group, option)`` for every option of :data:`VARIED_GROUPS`."""
    from mmgnn.config import group_options

    return [(group, option) for group in VARIED_GROUPS for option in group_options(group)]


def measure(group: str, option: str, n_items: int, batches: int, threads: int) -> dict:
    """One variant at one size, in the calling (fresh) process."""
    import torch
    from hydra import compose, initialize_config_dir

    from mmgnn.config import register_configs
    from mmgnn.data.graphs import clear_graph_cache
    from mmgnn.train.job import build_model, build_objective, load_dataset, prepare
    from mmgnn.train.optim import build_adamw

    torch.set_num_threads(threads)
    register_configs()
    conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
    with initialize_config_dir(version_base="1.3", config_dir=conf):
        cfg = compose("config", overrides=[f"{group}={option}", f"data.loader.n_items={n_items}"])
    torch.manual_seed(0)
    dataset = load_dataset(cfg)
    clear_graph_cache()
    t0 = time.perf_counter()
    data = prepare(cfg, dataset)
    prep_s = time.perf_counter() - t0
    model, objective = build_model(cfg, data), build_objective(cfg)
    optimizer = build_adamw(model, objective, 1e-3, 0.01)
    rows = data.dataset.indices("train")
    bs = cfg.train.batch_size
    phases: dict[str, list[float]] = {k: [] for k in ("collate", "forward", "backward", "step")}
    model.train()
    for i in range(batches + 1):
        index = rows[(i * bs) % len(rows):][:bs]
        t0 = time.perf_counter()
        batch = data.collator(index.tolist())
        t1 = time.perf_counter()
        out = model(batch)
        total, _ = objective(out, batch)
        t2 = time.perf_counter()
        optimizer.zero_grad()
        total.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if i > 0:  # the first batch warms up
            for key, value in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[key].append(value)
    medians = {k: statistics.median(v) for k, v in phases.items()}
    model.eval()
    test = data.dataset.indices("test")
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(test), cfg.train.eval_batch_size):
            model(data.collator(test[start:start + cfg.train.eval_batch_size].tolist()))
    eval_s = time.perf_counter() - t0
    return {
        "variant": f"{group}={option}",
        "items": n_items,
        "params": sum(p.numel() for p in model.parameters()),
        "prepare_s": prep_s,
        **{f"{k}_ms": 1000 * v for k, v in medians.items()},
        "train_items_per_s": bs / sum(medians.values()),
        "eval_items_per_s": len(test) / eval_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1200, 4800])
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    add_markdown_option(parser)
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    jobs = [(g, o, n, args.batches, args.threads) for n in args.sizes for g, o in variants()]
    context = mp.get_context("spawn")
    results = []
    for job in jobs:
        with context.Pool(1) as pool:
            results.append(pool.apply(measure, job))
        print(f"  done {job[0]}={job[1]} at {job[2]} items", flush=True)
    frame = pd.DataFrame(results)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {args.threads} threads; medians over {args.batches} "
          "batches of 128 (train) after one warm-up\n")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    write_if_asked(args, argv, "experiments.benchmark", "Benchmark: training and evaluation speed",
                   f"Each variant in a fresh process, {args.threads} torch threads; medians over "
                   f"{args.batches} batches of 128 (train) after one warm-up.\n\n"
                   + frame_table(frame.set_index(frame.columns[0]), lambda v: f"{v:,.1f}"))


if __name__ == "__main__":
    main()
