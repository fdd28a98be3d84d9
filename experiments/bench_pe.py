"""What each positional/structural encoding costs, a linear control, and the ablate_pe table.

Three commands:

    python -m experiments.bench_pe cost [--data digits] [--repeats 3] [--steps 20]
        per ``pe`` option: precompute seconds (median of ``--repeats`` cold computations of
        every modality's encoding, cache cleared) and training items/s (forward + backward of
        the model a run builds, ``train=joint``, median over ``--steps`` batches of 128 after
        3 warm-up steps; collation not timed), against ``pe=none`` in the same run.
    python -m experiments.bench_pe control [--data digits] [--seeds 0 1 2]
        the control: logistic regression on each modality's nodes kept in order and
        flattened (z-scored with train statistics, sklearn, C=1), test accuracy per data seed
        (``data.seed``: the split; the regression itself draws nothing).
    python -m experiments.bench_pe table SWEEP_DIR
        the ``+experiment=ablate_pe`` table from a multirun folder: per (pe, readout, gnn), the
        test fused accuracy with every modality and with each modality alone
        (``missing/<all others>/fused/acc``), mean +- std over seeds; then each
        message-passing gnn against ``gnn=mlp``, paired on (``data.seed``, ``seed``) (gap, its
        std, wins, its 95% Student-t interval over the pairs, and whether the gap exceeds the
        seed spread).
    python -m experiments.bench_pe alone RUN_DIR [RUN_DIR ...] [--split val]
        fused accuracy of finished runs (best checkpoint) on a split with every modality and
        with each modality alone: choosing settings on ``val``, never on ``test``.

``cost``, ``control`` and ``table`` take ``--markdown PATH``: the table also as a page with the
command, date, code version and machine above it (:mod:`experiments.markdown`).
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
from experiments.markdown import add_markdown_option, frame_table, write_if_asked
from mmgnn.analysis.stats import t_interval
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
    """:func:`ordered_logreg` per modality over the data seeds ``seeds`` (``data.seed``):
    mean, std and count of the test accuracy, one row per modality."""
    from hydra.utils import instantiate

    rows = []
    for seed in seeds:
        cfg = compose_cfg([f"data={data_option}", f"data.seed={seed}", "tracking.enabled=false"])
        dataset = instantiate(cfg.data.loader)
        rows += [{"modality": m, "data.seed": seed, "acc": ordered_logreg(dataset, m)}
                 for m in dataset.modality_names]
    table = pd.DataFrame(rows).groupby("modality")["acc"].agg(["mean", "std", "count"])
    return table


def alone_accuracies(metrics: dict[str, float]) -> dict[str, float]:
    """From one job's test metrics: fused accuracy with every modality (``all``) and with
    each modality ``m`` alone (``<m> alone`` = ``test/missing/<all others>/fused/acc``).
    The modalities and their order are read from the ``test/gates/<m>/mean`` keys."""
    names = [k.split("/")[2] for k in metrics if k.startswith("test/gates/") and k.endswith("/mean")]
    result = {"all": metrics["test/fused/acc"]}
    for m in names:
        others = "_and_".join(o for o in names if o != m)
        result[f"{m} alone"] = metrics[f"test/missing/{others}/fused/acc"]
    return result


def sweep_rows(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per (job, condition) of a multirun folder: ``pe``, ``readout``, ``gnn`` (the
    job's group choices), ``data.seed`` (the data's seed; a config from before ``data.seed``
    existed seeded its data with ``seed``), ``seed`` (the model's), ``condition`` (``all``,
    ``<m> alone``) and ``acc`` (test fused accuracy)."""
    rows = []
    for metrics_file in sorted(Path(sweep_dir).glob("*/test_metrics.json")):
        cfg = OmegaConf.load(metrics_file.parent / ".hydra" / "config.yaml")
        choices = OmegaConf.load(metrics_file.parent / ".hydra" / "hydra.yaml").hydra.runtime.choices
        setting = {"pe": choices.pe, "readout": cfg.model.readout, "gnn": choices.gnn,
                   "data.seed": OmegaConf.select(cfg, "data.seed", default=cfg.seed), "seed": cfg.seed}
        metrics = json.loads(metrics_file.read_text())["metrics"]
        rows += [{**setting, "condition": c, "acc": v} for c, v in alone_accuracies(metrics).items()]
    if not rows:
        raise FileNotFoundError(f"no */test_metrics.json under {sweep_dir}: not a finished multirun folder")
    return pd.DataFrame(rows)


def sweep_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (pe, readout, gnn) and condition: mean, std and count over seeds of :func:`sweep_rows`."""
    return rows.groupby(["pe", "readout", "gnn", "condition"])["acc"].agg(["mean", "std", "count"])


def mlp_gaps(rows: pd.DataFrame, control: str = "mlp") -> pd.DataFrame:
    """Each message-passing gnn against ``gnn=mlp`` per (pe, readout, condition).

    A pair is the gnn's and mlp's runs with the same ``data.seed`` (the same split, synthesis
    and partner draw) and the same ``seed`` (model initialisation and batches); runs differing
    in either are never paired. Columns: ``gap`` (mean over pairs of gnn - mlp) and ``gap_std``
    (its std over pairs), ``spread`` (the larger of the two settings' stds over seeds),
    ``pairs``, ``wins`` (pairs where the gnn is ahead), ``ci_low``/``ci_high`` (95% Student-t
    interval of the mean paired gap over the pairs, :func:`t_interval`: above 0 = ahead beyond
    the seed-to-seed noise the pairing leaves; NaN from one pair) and ``beats``
    (``gap > spread``: ahead by more than the seed spread).
    """
    keys = ["pe", "readout", "condition", "data.seed", "seed"]
    base = rows[rows.gnn == control].set_index(keys)["acc"]
    paired = rows[rows.gnn != control].join(base.rename("control"), on=keys, how="inner")
    paired["diff"] = paired["acc"] - paired["control"]
    spread = rows.groupby(["pe", "readout", "gnn", "condition"])["acc"].std()
    control_spread = spread.xs(control, level="gnn")
    out = paired.groupby(["pe", "readout", "condition", "gnn"]).agg(
        gap=("diff", "mean"), gap_std=("diff", "std"), pairs=("diff", "size"), wins=("diff", lambda d: int((d > 0).sum())))
    intervals = paired.groupby(["pe", "readout", "condition", "gnn"])["diff"].apply(t_interval)
    out["ci_low"], out["ci_high"] = intervals.str[0], intervals.str[1]
    out["spread"] = [max(spread[(p, r, g, c)], control_spread[(p, r, c)]) for p, r, c, g in out.index]
    out["beats"] = out["gap"] > out["spread"]
    return out


def format_gaps(gaps: pd.DataFrame) -> str:
    """:func:`mlp_gaps` as printed text: a caption naming the pairing and the interval, then
    the table (signed numbers, 3 decimals)."""
    caption = ("message passing against gnn=mlp, paired on (data.seed, seed); "
               "ci_low..ci_high: 95% Student-t interval of the mean gap over the pairs:")
    return f"{caption}\n{gaps.to_string(float_format=lambda v: f'{v:+.3f}')}"


def format_sweep_table(stats: pd.DataFrame) -> pd.DataFrame:
    """``sweep_table``'s statistics as ``mean +- std (n=count)`` cells, one column per condition."""
    cells = stats.apply(lambda r: f"{r['mean']:.3f} +- {r['std']:.3f} (n={int(r['count'])})", axis=1)
    return cells.unstack("condition")


def single_modality_accuracy(run_dir: str | Path, split: str) -> dict[str, float]:
    """Fused accuracy of a finished run's best checkpoint on ``split``: ``all`` (every
    modality) and ``<m> alone`` per modality (the others removed, as ``missing/...`` in the
    test metrics). The data is prepared from the run's own config (same seed, same split)."""
    from mmgnn.inference import TrainedRun
    from mmgnn.metrics import metric_key_part
    from mmgnn.train.evaluation import collect_outputs, robustness, score
    from mmgnn.train.job import load_dataset, prepare

    run = TrainedRun.load(run_dir)
    data = prepare(run.cfg, load_dataset(run.cfg))
    device = torch.device("cpu")
    pairing = run.cfg.data.pairing
    names = list(data.dataset.modality_names)
    result = {"all": score(collect_outputs(run.model, data.loader(split, 512), device),
                           data.dataset.group_names, pairing)["fused/acc"]}
    missing = robustness(run.model, data, split, 512, device, pairing, missing=True, noise_levels=[])
    for m in names:
        others = "_and_".join(metric_key_part(o) for o in names if o != m)
        result[f"{m} alone"] = missing[f"missing/{others}/fused/acc"]
    return result


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
    for command in (cost, control, table):
        add_markdown_option(command)
    alone = sub.add_parser("alone")
    alone.add_argument("run_dirs", nargs="+")
    alone.add_argument("--split", default="val", choices=["train", "val", "test"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "cost":
        print(machine_info())
        costs = cost_table(args.data, args.repeats, args.steps)
        print(costs.to_string(float_format=lambda v: f"{v:.3f}"))
        write_if_asked(args, argv, "experiments.bench_pe", f"Benchmark: positional encodings on {args.data}",
                       f"Per `pe` option: precompute seconds (median of {args.repeats} cold "
                       f"computations of every modality's encoding), training items/s (forward "
                       f"and backward, batches of {BATCH}, median of {args.steps} steps), and the "
                       f"speed against `pe=none`; 1 torch thread.\n\n{frame_table(costs)}")
    elif args.command == "control":
        controls = control_table(args.data, args.seeds)
        print(controls.to_string(float_format=lambda v: f"{v:.3f}"))
        write_if_asked(args, argv, "experiments.bench_pe", f"Linear control on {args.data}",
                       "Logistic regression on each modality's nodes kept in order, test accuracy "
                       f"over data seeds {args.seeds}: mean, std, count.\n\n{frame_table(controls)}")
    elif args.command == "alone":
        rows = {d: single_modality_accuracy(d, args.split) for d in args.run_dirs}
        print(pd.DataFrame(rows).T.to_string(float_format=lambda v: f"{v:.3f}"))
    else:
        rows = sweep_rows(args.sweep_dir)
        print(format_sweep_table(sweep_table(rows)).to_string())
        body = ("Test fused accuracy with every modality and with each modality alone, mean +- std "
                f"over seeds (n = runs).\n\n{frame_table(format_sweep_table(sweep_table(rows)))}")
        if (rows.gnn == "mlp").any() and (rows.gnn != "mlp").any():
            gaps = mlp_gaps(rows)
            print("\n" + format_gaps(gaps))
            body += ("\n\nEach message-passing gnn against `gnn=mlp`, paired on (`data.seed`, `seed`); "
                     "`ci_low`..`ci_high`: 95% Student-t interval of the mean gap over the pairs (an "
                     "interval that contains 0: no detectable difference).\n\n"
                     + frame_table(gaps, lambda v: f"{v:+.3f}"))
        write_if_asked(args, argv, "experiments.bench_pe", "Positional encodings: the sweep table", body)


if __name__ == "__main__":
    main()
