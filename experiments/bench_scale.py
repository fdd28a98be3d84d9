"""How one epoch's cost grows with the number of items of the default synthetic data.

    python -m experiments.bench_scale [--sizes 10000 100000] [--threads 2] [--override ...]

Each size runs in a fresh process (so its peak memory is its own) with the project's default
config (``conf/config.yaml`` composed by Hydra, ``data.loader.n_items=<size>`` plus any
``--override``) and its real pieces: :func:`mmgnn.train.job.load_dataset` (make the data),
:func:`~mmgnn.train.job.prepare` (standardise, build the graphs), the train split's
``DataLoader`` with the project's collator, one epoch of training (objective, backward, AdamW
step) and :func:`~mmgnn.train.evaluation.collect_outputs` over the validation split. Reported
per size: seconds of each phase (collation is timed inside the training loop, apart from the
step), training and evaluation throughput, peak resident memory, and the growth against the
smallest size (time ratio / item ratio: 1.0 = linear).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from experiments.markdown import add_markdown_option, write_if_asked

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("data_s", "graphs_s", "collate_s", "train_s", "eval_s")


def measure(n_items: int, threads: int, overrides: list[str], max_batches: int | None) -> dict:
    """One epoch at ``n_items`` items in this (fresh) process."""
    import torch
    from hydra import compose, initialize_config_dir

    from mmgnn.config import CONF_DIR, register_configs
    from mmgnn.train.evaluation import collect_outputs
    from mmgnn.train.job import build_model, build_objective, load_dataset, prepare
    from mmgnn.train.optim import build_adamw
    from mmgnn.train.trainer import fuses_in_training

    torch.set_num_threads(threads)
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=[f"data.loader.n_items={n_items}", *overrides])
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    dataset = load_dataset(cfg)
    t1 = time.perf_counter()
    data = prepare(cfg, dataset)
    t2 = time.perf_counter()
    model, objective = build_model(cfg, data), build_objective(cfg)
    fuse = fuses_in_training(model, objective)  # as the trainer's step
    optimizer = build_adamw(model, objective, cfg.optim.lr, cfg.optim.weight_decay)
    model.train()
    collate_s = train_s = 0.0
    n_train = 0
    loader = iter(data.loader("train", cfg.train.batch_size, shuffle=True,
                              generator=torch.Generator().manual_seed(cfg.seed)))
    for i in range(len(loader) if max_batches is None else min(max_batches, len(loader))):
        s0 = time.perf_counter()
        batch = next(loader)
        s1 = time.perf_counter()
        total, _ = objective(model(batch, fuse=fuse), batch)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        s2 = time.perf_counter()
        collate_s += s1 - s0
        train_s += s2 - s1
        n_train += batch.size
    e0 = time.perf_counter()
    rows = data.dataset.indices("val")
    if max_batches is not None:
        rows = rows[: max_batches * cfg.train.eval_batch_size]
    outputs = collect_outputs(model, data.loader("val", cfg.train.eval_batch_size, rows=rows), torch.device("cpu"))
    eval_s = time.perf_counter() - e0
    return {
        "items": n_items, "train_items": n_train, "eval_items": int(outputs.present.shape[0]),
        "data_s": t1 - t0, "graphs_s": t2 - t1, "collate_s": collate_s, "train_s": train_s, "eval_s": eval_s,
        "train_items_per_s": n_train / max(train_s + collate_s, 1e-9),
        "eval_items_per_s": outputs.present.shape[0] / max(eval_s, 1e-9),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def table(rows: list[dict]) -> list[str]:
    """Markdown table; ``growth`` = (epoch time ratio) / (item ratio) against the first row."""
    lines = ["| items | make data s | graphs s | collate s | train s | eval (val) s | train items/s | "
             "eval items/s | peak RSS MB | growth vs first |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = rows[0]
    for r in rows:
        total = sum(r[k] for k in PHASES)
        growth = (total / sum(base[k] for k in PHASES)) / (r["items"] / base["items"])
        lines.append(
            f"| {r['items']:,} | {r['data_s']:.1f} | {r['graphs_s']:.1f} | {r['collate_s']:.1f} | "
            f"{r['train_s']:.1f} | {r['eval_s']:.1f} | {r['train_items_per_s']:.0f} | "
            f"{r['eval_items_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {growth:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--override", action="append", default=[], help="Hydra override (repeatable)")
    parser.add_argument("--max-batches", type=int, default=None,
                        help="stop the epoch (and the evaluation) after this many batches (smoke runs)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    add_markdown_option(parser)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(measure(args.worker, args.threads, args.override, args.max_batches)))
        return []
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for n in args.sizes:
        argv_n = [sys.executable, "-m", "experiments.bench_scale", "--worker", str(n), "--threads", str(args.threads)]
        argv_n += [a for o in args.override for a in ("--override", o)]
        if args.max_batches is not None:
            argv_n += ["--max-batches", str(args.max_batches)]
        proc = subprocess.run(argv_n, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"bench_scale: the run at {n} items failed (exit {proc.returncode}):\n{proc.stderr}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"One epoch of the default config on synthetic data, {args.threads} threads, overrides "
          f"{args.override or 'none'}; load average at start {load}\n")
    print("\n".join(table(rows)))
    write_if_asked(args, argv, "experiments.bench_scale", "Benchmark: cost against the number of items",
                   f"One epoch of the default config on synthetic data, {args.threads} threads, "
                   f"overrides {args.override or 'none'}; load average at start {load}.\n\n"
                   + "\n".join(table(rows)))
    return rows


if __name__ == "__main__":
    main()
