"""What each positional/structural encoding costs, a linear control, and the ablate_pe table.

Three commands:

    python -m experiments.bench_pe cost [--data digits] [--repeats 3] [--steps 20]
        per ``pe`` option: precompute seconds (median of ``--repeats`` cold computations of
        every modality's encoding, cache cleared) and training items/s (forward + backward of
        the model a run builds, ``train=joint``, median over ``--steps`` batches of 128 after
        3 warm-up steps; collation not timed), against ``pe=none`` in the same run.
    python -m experiments.bench_pe control [--data digits] [--seeds 0 1 2]
        the control: logistic regression on each modality's nodes kept in order and
        flattened (z-scored with train statistics, sklearn, C=1), test accuracy per seed.
    python -m experiments.bench_pe table SWEEP_DIR
        the ``+experiment=ablate_pe`` table from a multirun folder: per (pe, gnn), the test
        accuracy with one modality alone (``missing/<other>/fused/acc``), mean +- std over
        seeds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from experiments.bench_models import machine_info, time_steps
from mmgnn.config import CONF_DIR, group_options, register_configs
from mmgnn.data.dataset import MultimodalDataset
from mmgnn.data.pe import clear_pe_cache, compute_encoding

BATCH = 128


def compose_cfg(overrides: list[str]):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("config", overrides=overrides)


def ordered_logreg(dataset: MultimodalDataset, modality: str) -> float:
    """Test accuracy of a logistic regression on ``modality``'s nodes in order, flattened
    (items with fewer nodes zero-padded; z-scored with the train split's statistics)."""
    from sklearn.linear_model import LogisticRegression

    m = dataset.modalities[modality]
    counts = m.counts
    width = int(counts.max())
    flat = np.zeros((dataset.n_items, width, m.dim), dtype=np.float64)
    item = np.repeat(np.arange(dataset.n_items), counts)
    local = np.arange(m.x.shape[0]) - np.repeat(m.ptr[:-1], counts)
    flat[item, local] = m.x
    flat = flat.reshape(dataset.n_items, -1)
    train, test = dataset.indices("train"), dataset.indices("test")
    mean, std = flat[train].mean(0), flat[train].std(0) + 1e-8
    model = LogisticRegression(C=1.0, max_iter=5000)
    model.fit((flat[train] - mean) / std, dataset.labels[train])
    return float((model.predict((flat[test] - mean) / std) == dataset.labels[test]).mean())


def encoding_cost(data_option: str, option: str, repeats: int, steps: int) -> dict[str, float]:
    """Precompute seconds and train items/s of one ``pe`` option."""
    from mmgnn.train.job import build_model, load_dataset, prepare

    cfg = compose_cfg([f"data={data_option}", "train=joint", f"pe={option}", "tracking.enabled=false"])
    data = prepare(cfg, load_dataset(cfg))
    graph_key = ("bench", option)
    seconds = []
    for _ in range(repeats):
        clear_pe_cache()
        start = time.perf_counter()
        for m, encoding in data.encodings.items():
            compute_encoding(data.graphs[m], encoding, graph_key)
        seconds.append(time.perf_counter() - start)
    torch.manual_seed(0)
    model = build_model(cfg, data)
    rows = data.dataset.indices("train")
    batches = [data.collator(rows[i : i + BATCH]) for i in range(0, len(rows) - BATCH + 1, BATCH)]
    step_s = statistics.median(time_steps(model, batches, warmup=3, repeats=steps))
    return {"pe": option, "precompute_s": statistics.median(seconds), "train_items_per_s": BATCH / step_s}


def cost_table(data_option: str, repeats: int, steps: int) -> pd.DataFrame:
    rows = [encoding_cost(data_option, o, repeats, steps) for o in group_options("pe")]
    table = pd.DataFrame(rows).set_index("pe")
    table["train_speed_vs_none"] = table["train_items_per_s"] / table.loc["none", "train_items_per_s"]
    return table


def control_table(data_option: str, seeds: list[int]) -> pd.DataFrame:
    from hydra.utils import instantiate

    rows = []
    for seed in seeds:
        cfg = compose_cfg([f"data={data_option}", f"seed={seed}", "tracking.enabled=false"])
        dataset = instantiate(cfg.data.loader)
        rows += [{"modality": m, "seed": seed, "acc": ordered_logreg(dataset, m)} for m in dataset.modality_names]
    table = pd.DataFrame(rows).groupby("modality")["acc"].agg(["mean", "std", "count"])
    return table


def sweep_table(sweep_dir: str | Path) -> pd.DataFrame:
    """(pe, gnn) x modality alone: mean +- std over seeds of ``missing/<others>/fused/acc``."""
    rows = []
    for metrics_file in sorted(Path(sweep_dir).glob("*/test_metrics.json")):
        cfg = OmegaConf.load(metrics_file.parent / ".hydra" / "config.yaml")
        metrics = json.loads(metrics_file.read_text())["metrics"]
        pe_kind = cfg.pe.default.kind
        for key, value in metrics.items():
            parts = key.split("/")
            if len(parts) == 5 and parts[1] == "missing" and parts[3:] == ["fused", "acc"] and "_and_" not in parts[2]:
                rows.append({"pe": pe_kind, "readout": cfg.model.readout, "gnn": cfg.gnn.conv._target_.rsplit(".", 1)[-1],
                             "seed": cfg.seed, "missing": parts[2], "acc": value})
        rows.append({"pe": pe_kind, "readout": cfg.model.readout, "gnn": cfg.gnn.conv._target_.rsplit(".", 1)[-1],
                     "seed": cfg.seed, "missing": "(none: fused)", "acc": metrics["test/fused/acc"]})
    frame = pd.DataFrame(rows)
    stats = frame.groupby(["pe", "readout", "gnn", "missing"])["acc"].agg(["mean", "std", "count"])
    cells = stats.apply(lambda r: f"{r['mean']:.3f} +- {r['std']:.3f} (n={int(r['count'])})", axis=1)
    return cells.unstack("missing")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_pe", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cost = sub.add_parser("cost")
    cost.add_argument("--data", default="digits")
    cost.add_argument("--repeats", type=int, default=3)
    cost.add_argument("--steps", type=int, default=20)
    control = sub.add_parser("control")
    control.add_argument("--data", default="digits")
    control.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    table = sub.add_parser("table")
    table.add_argument("sweep_dir")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "cost":
        print(machine_info())
        print(cost_table(args.data, args.repeats, args.steps).to_string(float_format=lambda v: f"{v:.3f}"))
    elif args.command == "control":
        print(control_table(args.data, args.seeds).to_string(float_format=lambda v: f"{v:.3f}"))
    else:
        print(sweep_table(args.sweep_dir).to_string())


if __name__ == "__main__":
    main()
