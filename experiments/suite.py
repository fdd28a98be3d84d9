"""Score candidate settings across the development suite, on validation only.

    python -m experiments.suite --candidates defaults "loss=infonce" "pe=index model.readout=query" \\
        --seeds 0 1 2 [--datasets synthetic digits ...] [--launcher local_parallel] \\
        [--rank-by all|alone|fused|map] [--data-seed same|N] [--out DIR] [--small] [--test] \\
        [--dry-run] [--markdown docs/results/NAME.md] [-- more overrides for every job]
    python -m experiments.suite --candidates candidates.yaml --seeds 0 1 2
    python -m experiments.suite --describe        the datasets' sizes (docs/datasets.md)
    python -m experiments.suite --controls --datasets ktuberling_small --seeds 0 1 2 [-- overrides]

Every candidate x dataset x seed is a job of a Hydra multirun of ``run.py`` (one multirun per
candidate, over the datasets and seeds; ``--launcher`` picks ``hydra/launcher``, e.g.
``local_parallel``, ``local_submitit``, ``slurm``, ``ray``). ``--candidates`` takes override
strings (one candidate each; ``defaults`` = no overrides) or YAML/JSON files mapping a name to
its overrides. Replicate ``r`` of ``--seeds`` is ``seed=r`` with ``data.seed=r`` (the split,
synthesis and partners move with it; ``--data-seed N`` holds the data fixed): candidates are
compared on the same data and initialisation seeds.

Scores (validation split, the best epoch's checkpoint): fused accuracy, fused accuracy with
each modality alone (the other modalities removed: ``missing/<others>/fused/acc``) and retrieval
mAP. Printed per dataset as mean +- std over seeds beside the dataset's linear control
(logistic regression on each modality's ordered, flattened nodes, and on all of them for the
fused column: :func:`mmgnn.analysis.suite.linear_control`), then each candidate's rank per
dataset and its mean rank across datasets (``--rank-by``: the score that ranks; ``all`` = the
mean of a run's score columns). The candidate with the best mean rank is the chosen one; only
``--test`` prints test-split numbers, only for it (and the controls on test).

Efficient by construction: the datasets are built (and cached) once before any job; every job
skips the noise probes and plots the suite never reads (``train.robustness.noise_levels=[]``,
``tracking.log_plots=false``); a job whose config already has a FINISHED run (same code) is not
run again but reused (``mmgnn.tracking``), so adding a candidate trains only that candidate;
controls are cached by the dataset's content (``<outputs>/suite/controls.csv``). A run that
lacks a validation score (``best_val/missing/...``, until training records it; every one with
``tracking.enabled=false``) is scored once from its best checkpoint and cached
(``<outputs>/suite/posthoc/``).

``--small`` is for tests: every dataset subsampled to 96 items (``train.max_items``), one epoch,
one seed, the KTuberling datasets built from 4 languages (``ktuberling``: its 18 Egypt objects). Tables and the tidy scores go to
``--out`` (default ``<outputs>/suite/<date>_<time>/``): ``suite.md``, ``scores.csv``,
``controls.csv``, ``logs/`` and ``sweeps/``; with ``--test`` also ``test.md``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.markdown import add_markdown_option, write_if_asked
from mmgnn import paths
from mmgnn.analysis import suite as S

ROOT = paths.project_root()
#: Overrides of every suite job: skip what the suite never reads.
COMMON = ("train.robustness.noise_levels=[]", "tracking.log_plots=false")
#: ``--small``: a seconds-long job on any dataset.
SMALL = ("train.max_items=96", "train.stages=[{name:joint,epochs:1,freeze:[],lr_scale:{}}]", "train.min_steps=0",
         "train.batch_size=32", "train.eval_batch_size=128")
#: ``--small``: per dataset, a small build instead of the full one.
SMALL_DATA = {
    "ktuberling": ("data.loader.languages=[de,en,fr,uk]", "data.loader.name=ktuberling_tiny",
                   "data.loader.objects=[" + ",".join(f"egypt_{o}" for o in (
                       "arch", "birds", "boy", "bridge", "camel", "cart", "column", "donkey", "girl", "grass",
                       "man", "oasis", "palmtree", "pyramid", "road", "sphynx", "well", "woman")) + "]"),
    "ktuberling_small": ("data.loader.languages=[en,es,fr,it]", "data.loader.name=ktuberling_small_tiny"),
    "klettres": ("data.loader.languages=[de,en,es,fr,it]", "data.loader.min_per_label=5",
                 "data.loader.name=klettres_tiny"),
}
POSTHOC_DIR = "posthoc"  # under <outputs>/suite: validation scores computed from checkpoints


def suite_home() -> Path:
    return paths.home() / "suite"


# ----------------------------------------------------------------------------- datasets
def compose(overrides: Sequence[str]):
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mmgnn.config import CONF_DIR, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return hydra_compose("config", overrides=list(overrides))


def load_suite_dataset(dataset: str, data_seed: int, overrides: Sequence[str]):
    """The dataset a job of ``data=<dataset>`` trains on (built if not cached; subsampled like
    training when ``train.max_items`` is set)."""
    from hydra.utils import instantiate

    from mmgnn.data.pipeline import sample_per_split, subset_dataset

    cfg = compose([f"data={dataset}", f"data.seed={data_seed}", "tracking.enabled=false", *overrides])
    data = instantiate(cfg.data.loader)
    if cfg.train.max_items is not None and cfg.train.max_items < data.n_items:
        data = subset_dataset(data, sample_per_split(data, cfg.train.max_items, data_seed))
    return data


def cached_control(data, dataset: str, split: str) -> dict[str, float]:
    """:func:`mmgnn.analysis.suite.linear_control`, cached by the data's content and split."""
    file = suite_home() / "controls.csv"
    key = f"{data.fingerprint()}:{split}"
    table = pd.read_csv(file, dtype={"key": str}) if file.is_file() else None
    hit = table[table["key"] == key] if table is not None else pd.DataFrame()
    if not hit.empty:
        return dict(zip(hit["column"], hit["value"].astype(float)))
    started = time.perf_counter()
    values = S.linear_control(data, split)
    print(f"  linear control of {dataset} ({split}, {data.n_items} items): {time.perf_counter() - started:.1f} s",
          flush=True)
    rows = pd.DataFrame([{"key": key, "column": c, "value": v} for c, v in values.items()])
    file.parent.mkdir(parents=True, exist_ok=True)
    (rows if table is None else pd.concat([table, rows], ignore_index=True)).to_csv(file, index=False)
    return values


def controls_table(datasets: Sequence[str], data_seeds: Sequence[int], overrides: Sequence[str], split: str = "val") -> str:
    """The linear controls alone, per dataset: mean +- std over ``data_seeds`` on ``split``
    (``overrides`` compose each dataset, e.g. another encoder of a KTuberling build)."""
    lines = []
    for dataset in datasets:
        rows, columns = [], []
        for seed in data_seeds:
            data = load_suite_dataset(dataset, seed, overrides)
            columns = list(S.score_keys(list(data.modality_names)))
            rows.append({"dataset": dataset, **cached_control(data, dataset, split)})
        table = S.dataset_table(pd.DataFrame(rows), dataset, columns, pd.DataFrame(rows), [])
        lines += [f"## {dataset} ({split}; data seeds {' '.join(map(str, data_seeds))})", "", S.table_markdown(table), ""]
    return "\n".join(lines)


def describe(datasets: Sequence[str], data_seed: int = 0) -> str:
    """A markdown table of the datasets as a job loads them (built if not cached): items per
    split, labels, groups, pairing, and per modality nodes per item and feature size."""
    rows = []
    for dataset in datasets:
        data = load_suite_dataset(dataset, data_seed, ())
        pairing = compose([f"data={dataset}"]).data.pairing
        sizes = {s: int((data.split == s).sum()) for s in ("train", "val", "test")}
        shapes = ", ".join(f"{m} {np.median(d.counts[d.present]):.0f}x{d.dim}" for m, d in data.modalities.items())
        rows.append({"data=": dataset, "items": data.n_items, "train/val/test": "/".join(map(str, sizes.values())),
                     "labels": data.num_classes, "groups": len(data.group_names), "pairing": pairing,
                     "modalities (median nodes x features)": shapes})
    return S.markdown_table(pd.DataFrame(rows), align_right=["items", "labels", "groups"])


# ----------------------------------------------------------------------------- runs
def sweep_command(candidate: S.Candidate, datasets: Sequence[str], seeds: Sequence[int], data_seed: str,
                  sweep_dir: Path, launcher: str | None, small: Sequence[str], extra: Sequence[str]) -> list[str]:
    command = [sys.executable, str(ROOT / "run.py"), "-m", f"data={','.join(datasets)}",
               f"seed={','.join(str(s) for s in seeds)}",
               "data.seed=${seed}" if data_seed == "same" else f"data.seed={int(data_seed)}",
               f"hydra.sweep.dir={sweep_dir}"]
    if launcher:
        command.append(f"hydra/launcher={launcher}")
    return command + list(COMMON) + list(small) + list(candidate.overrides) + list(extra)


def run_sweep(command: list[str], log_file: Path) -> tuple[int, float]:
    """Run one multirun, its output into ``log_file``; (exit status, seconds)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DGLBACKEND": "pytorch", paths.HOME_ENV: str(paths.home())}
    started = time.perf_counter()
    with open(log_file, "w") as log:
        log.write(" ".join(command) + "\n\n")
        log.flush()
        status = subprocess.call(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return status, time.perf_counter() - started


def read_sweep(sweep_dir: Path, candidate: str, keys: Sequence[str]) -> pd.DataFrame:
    """The runs of one sweep (from MLflow when it tracked, else from its job folders)."""
    from mlflow.tracking import MlflowClient

    from mmgnn.tracking.job_run import SweepInfo

    info = SweepInfo.read(sweep_dir)
    if info is not None and info.parent_run_id:
        return S.sweep_frame(MlflowClient(info.tracking_uri), info.parent_run_id, candidate, keys)
    if sweep_dir.is_dir():
        return S.folder_frame(sweep_dir, candidate, keys)
    return pd.DataFrame()


def posthoc_val(run_dir: str, run_id: str) -> dict[str, float]:
    """``best_val/...`` of a finished run from its best checkpoint on validation: every metric,
    and the missing-modality conditions (for runs whose training did not record them, or
    was not tracked), cached under ``<outputs>/suite/posthoc/``."""
    import logging

    import torch

    from mmgnn.inference import TrainedRun
    from mmgnn.train.evaluation import collect_outputs, robustness, score
    from mmgnn.train.job import load_dataset, prepare

    name = run_id or hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:20]
    cache = suite_home() / POSTHOC_DIR / f"{name}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    logging.getLogger("mmgnn.train.job").setLevel(logging.ERROR)  # the run's own warnings, again
    run = TrainedRun.load(run_dir)
    data = prepare(run.cfg, load_dataset(run.cfg))
    device, batch, pairing = torch.device("cpu"), int(run.cfg.train.eval_batch_size), run.cfg.data.pairing
    fuse = run.model.classifier is not None
    values = score(collect_outputs(run.model, data.loader("val", batch), device, fuse=fuse),
                   data.dataset.group_names, pairing)
    values.update(robustness(run.model, data, "val", batch, device, pairing, missing=True, noise_levels=[],
                             seed=int(run.cfg.seed), fuse=fuse))
    values = {f"{S.VAL}/{k}": float(v) for k, v in values.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(values, indent=2))
    return values


def fill_posthoc(frame: pd.DataFrame, keys_of: dict[str, dict[str, str]]) -> tuple[pd.DataFrame, int]:
    """Finished runs lacking a validation score get it from :func:`posthoc_val`."""
    done = 0
    for i, row in frame.iterrows():
        keys = keys_of.get(row["dataset"], {})
        lacking = [k for k in keys.values() if pd.isna(row.get(f"metrics.{k}", math.nan))]
        if row["status"] != "FINISHED" or not lacking or not isinstance(row["run_dir"], str):
            continue
        if not Path(row["run_dir"]).is_dir():
            continue
        values = posthoc_val(row["run_dir"], row["run_id"])
        for key in lacking:
            frame.at[i, f"metrics.{key}"] = values.get(key, math.nan)
        done += 1
    return frame, done


def scores_frame(runs: pd.DataFrame, keys_of: dict[str, dict[str, str]], rank_by: str) -> pd.DataFrame:
    """One row per finished run: candidate, dataset, seeds, the score columns, rank_value."""
    rows = []
    for _, row in runs[runs["status"] == "FINISHED"].iterrows():
        keys = keys_of.get(row["dataset"])
        if keys is None:
            continue
        values = S.run_scores({k: row.get(f"metrics.{k}", math.nan) for k in keys.values()}, keys)
        rows.append({"candidate": row["candidate"], "dataset": row["dataset"], "data.seed": row["data.seed"],
                     "seed": row["seed"], **values, "rank_value": S.rank_value(values, rank_by)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the command
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.suite", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Overrides after -- go to every job (e.g. -- tracking.experiment=suite).")
    p.add_argument("--candidates", nargs="+", default=None,
                   help="override strings (one candidate each; 'defaults' = none) or YAML/JSON files name -> overrides")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="replicates (default 0 1 2)")
    p.add_argument("--datasets", nargs="+", default=list(S.SUITE), help="data= options (default: the suite)")
    p.add_argument("--data-seed", default="same",
                   help="'same': data.seed follows seed (default); a number: the data fixed at that data.seed")
    p.add_argument("--launcher", default=None, help="hydra/launcher option for the multiruns (e.g. local_parallel)")
    p.add_argument("--rank-by", default="all", choices=S.RANK_BY, help="the score that ranks (default all)")
    p.add_argument("--out", type=Path, default=None, help="where tables go (default <outputs>/suite/<time>)")
    p.add_argument("--small", action="store_true", help="tiny jobs for tests: 96 items, 1 epoch, 1 seed")
    p.add_argument("--test", action="store_true", help="also print the chosen candidate's test-split numbers")
    p.add_argument("--dry-run", action="store_true", help="print the multirun commands and stop")
    p.add_argument("--describe", action="store_true",
                   help="print the datasets' sizes (data.seed 0; built if not cached) and stop")
    p.add_argument("--controls", action="store_true",
                   help="print the datasets' linear controls on validation over the seeds (as data seeds) and stop; "
                   "overrides after -- compose the datasets")
    add_markdown_option(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given, argv_given = " ".join(argv), list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser().parse_args(argv)
    if args.describe:
        print(describe(args.datasets))
        return 0
    if args.controls:
        print(controls_table(args.datasets, list(dict.fromkeys(args.seeds)), extra))
        return 0
    if not args.candidates:
        print("error: --candidates is required (override strings, 'defaults', or YAML/JSON files)", file=sys.stderr)
        return 2
    try:
        candidates = S.parse_candidates(args.candidates)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.data_seed != "same" and not args.data_seed.lstrip("-").isdigit():
        print(f"error: --data-seed must be 'same' or a number, got {args.data_seed!r}", file=sys.stderr)
        return 2
    seeds = args.seeds[:1] if args.small else list(dict.fromkeys(args.seeds))
    data_seeds = seeds if args.data_seed == "same" else [int(args.data_seed)]
    out = args.out or suite_home() / time.strftime("%Y-%m-%d_%H-%M-%S")
    small = {d: (list(SMALL) + list(SMALL_DATA.get(d, ()))) if args.small else [] for d in args.datasets}
    groups: dict[tuple[str, ...], list[str]] = {}
    for d in args.datasets:
        groups.setdefault(tuple(small[d]), []).append(d)
    plan = []
    for i, candidate in enumerate(candidates):
        for j, (overrides, datasets) in enumerate(groups.items()):
            sweep_dir = out / "sweeps" / f"{i:02d}-{S.slug(candidate.name)}" / f"{j:02d}-{'-'.join(datasets)}"[:120]
            plan.append((candidate, datasets, sweep_dir, sweep_command(
                candidate, datasets, seeds, args.data_seed, sweep_dir, args.launcher, overrides, extra)))
    if args.dry_run:
        for _, _, _, command in plan:
            print(shlex.join(command[1:]))
        return 0

    out.mkdir(parents=True, exist_ok=True)
    print(f"suite: {len(candidates)} candidate(s) x {len(args.datasets)} dataset(s) x {len(seeds)} seed(s); "
          f"tables into {out}", flush=True)
    # The datasets first: built once (later jobs load the cache), their modalities, the controls.
    from mmgnn.featurize.suite_data import SuiteDataError

    modalities_of, keys_of, controls = {}, {}, []
    for dataset in args.datasets:
        for data_seed in data_seeds:
            try:
                data = load_suite_dataset(dataset, data_seed, small[dataset])
            except SuiteDataError as error:
                print(f"error: data={dataset}: {error}", file=sys.stderr)
                return 1
            modalities_of[dataset] = list(data.modality_names)
            keys_of[dataset] = S.score_keys(modalities_of[dataset])
            controls.append({"dataset": dataset, "data.seed": data_seed, **cached_control(data, dataset, "val")})

    runs = []
    for candidate, datasets, sweep_dir, command in plan:
        print(f"[{candidate.name}] {', '.join(datasets)}: python {shlex.join(command[1:])}", flush=True)
        log_file = out / "logs" / f"{sweep_dir.parent.name}__{sweep_dir.name}.log"
        status, seconds = run_sweep(command, log_file)
        wanted = sorted({k for d in datasets for k in keys_of[d].values()})
        frame = read_sweep(sweep_dir, candidate.name, wanted)
        finished = int((frame.get("status") == "FINISHED").sum()) if not frame.empty else 0
        print(f"  {finished}/{len(datasets) * len(seeds)} runs finished in {seconds:.0f} s"
              + ("" if status == 0 else f"; the multirun exited {status}, see {log_file}"), flush=True)
        runs.append(frame)
    runs_frame = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame()
    if runs_frame.empty:
        print("error: no run to score (see the logs)", file=sys.stderr)
        return 1
    runs_frame, posthoc = fill_posthoc(runs_frame, keys_of)
    if posthoc:
        print(f"note: {posthoc} run(s) lacked validation scores (best_val/...: with modalities removed, or "
              "untracked runs): computed from their best checkpoints", flush=True)
    scores = scores_frame(runs_frame, keys_of, args.rank_by)
    control = pd.DataFrame(controls)
    failed = runs_frame[runs_frame["status"] != "FINISHED"]

    names = [c.name for c in candidates]
    title = f"Development suite: validation scores ({len(seeds)} seed(s), ranked by {args.rank_by})"
    lines = []
    for dataset in args.datasets:
        columns = list(keys_of[dataset])
        table = S.dataset_table(scores, dataset, columns, control, names) if not scores.empty else pd.DataFrame()
        lines += [f"## {dataset} (validation; mean +- std over seeds)", "", S.table_markdown(table), ""]
    ranks = S.rank_table(scores, args.rank_by, args.datasets, names) if not scores.empty else pd.DataFrame()
    lines += [f"## Rank per dataset (by {args.rank_by}; 1 = best) and mean rank", "", S.ranks_markdown(ranks), ""]
    chosen = ranks.index[0] if not ranks.empty else None
    if chosen is not None:
        lines += [f"Chosen: **{chosen}** (best mean rank).", ""]
    if not failed.empty:
        lines += ["## Runs that did not finish", ""]
        lines += [f"- {r.candidate} / {r.dataset} / seed {r.seed}: {r.status} {r.error or ''}" for r in failed.itertuples()]
        lines.append("")
    text = "\n".join(lines)
    header = f"# {title}\n\nCommand: `python -m experiments.suite {given}`\n\n"
    print("\n" + header + text, flush=True)
    (out / "suite.md").write_text(header + text + "\n")
    write_if_asked(args, argv_given, "experiments.suite", title, text)
    scores.to_csv(out / "scores.csv", index=False)
    control.to_csv(out / "controls.csv", index=False)
    if args.test and chosen is not None:
        print(test_section(chosen, plan, modalities_of, args.datasets, data_seeds, small, out), flush=True)
    return 0 if failed.empty else 1


def test_section(chosen: str, plan, modalities_of, datasets, data_seeds, small, out: Path) -> str:
    """The chosen candidate's test-split scores per dataset, with the controls on test."""
    test_keys = {d: S.score_keys(m, split=S.TEST) for d, m in modalities_of.items()}
    frames = []
    for candidate, ds, sweep_dir, _ in plan:
        if candidate.name == chosen:
            frames.append(read_sweep(sweep_dir, chosen, sorted({k for d in ds for k in test_keys[d].values()})))
    runs = pd.concat(frames, ignore_index=True)
    rows = []
    for _, row in runs[runs["status"] == "FINISHED"].iterrows():
        keys = test_keys[row["dataset"]]
        rows.append({"candidate": chosen, "dataset": row["dataset"],
                     **S.run_scores({k: row.get(f"metrics.{k}", math.nan) for k in keys.values()}, keys)})
    scores = pd.DataFrame(rows)
    controls = pd.DataFrame([{"dataset": d, **cached_control(load_suite_dataset(d, s, small[d]), d, "test")}
                             for d in datasets for s in data_seeds])
    lines = [f"# Test split: the chosen candidate ({chosen}) only, read once", ""]
    for dataset in datasets:
        table = S.dataset_table(scores, dataset, list(test_keys[dataset]), controls, [chosen])
        lines += [f"## {dataset} (test; mean +- std over seeds)", "", S.table_markdown(table), ""]
    text = "\n".join(lines)
    (out / "test.md").write_text(text + "\n")
    return text


if __name__ == "__main__":
    sys.exit(main())
