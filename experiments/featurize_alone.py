"""Each modality alone, raw features vs pretrained encoders, on the bundled raw example (issue 19).

For each encoder set (``raw``: image patches + log-mel audio, the featurize defaults;
``pretrained``: EfficientNet-Lite0 feature-map cells + CREPE frames; text through MiniLM in
both), the raw example of ``make_raw_example.py`` is featurized with ``python -m
mmgnn.featurize`` and a model is trained on it with the run defaults (``python run.py
data=folder data.path=DIR seed=S``) for each seed. The trained model is then scored on the
**validation** split with every modality but one removed at evaluation (as the run's
``missing/*`` metrics do on test): the fused accuracy of each modality alone, and with all.
An item lacking the kept modality counts as a wrong answer. The test split is not read.
A run folder already in ``--out`` (one with ``test_metrics.json``) is reused, not retrained.

    python -m experiments.featurize_alone --out /tmp/featurize_alone --classes 10 --per-class 20 \
        --seeds 0 1 2 --section docs/featurize.md
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from experiments.make_raw_example import make_raw_example
from experiments.markdown import command_line, provenance

ROOT = Path(__file__).resolve().parents[1]
ENCODER_SETS = {
    "raw": [],  # the featurize defaults: patches, log-mel
    "pretrained": ["--image-encoder", "efficientnet-lite0", "--audio-encoder", "crepe"],
}
MODALITIES = ("text", "image", "audio")
SECTION = "featurize_alone"


def featurize_command(manifest: Path, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "mmgnn.featurize", "--manifest", str(manifest), "--out", str(out),
            "--text", "text", "--image", "image", "--audio", "audio", "--quiet", "--no-cache", *extra]


def train_command(data: Path, seed: int, run_dir: Path) -> list[str]:
    return [sys.executable, str(ROOT / "run.py"), "data=folder", f"data.path={data}", f"seed={seed}",
            "tracking.enabled=false", f"hydra.run.dir={run_dir}"]


def run(command: list[str], log: Path) -> None:
    env = {**os.environ, "DGLBACKEND": "pytorch"}
    with open(log, "w") as stream:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{log.read_text()[-3000:]}")


def alone_on_val(run_dir: Path) -> dict[str, float]:
    """Fused accuracy on the validation split with all modalities and with each one alone."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from mmgnn.data.pe import dataset_encodings
    from mmgnn.data.pipeline import prepare_data
    from mmgnn.inference import TrainedRun
    from mmgnn.train.evaluation import collect_outputs, headline, robustness, score
    from mmgnn.train.job import graph_specs

    trained = TrainedRun.load(run_dir)
    cfg = trained.cfg
    dataset = instantiate(cfg.data.loader)  # the run's data and split (data.seed)
    if trained.standardizer is not None:
        dataset = trained.standardizer.transform(dataset)
    data = prepare_data(dataset, graph_specs(cfg.graph, dataset), self_loops=cfg.graph.self_loops,
                        standardize=False,
                        encodings=dataset_encodings(OmegaConf.to_container(cfg.pe, resolve=True), dataset))
    device, model = torch.device("cpu"), trained.model
    names = list(dataset.modality_names)
    full = headline(score(collect_outputs(model, data.loader("val", 512), device, fuse=True),
                          dataset.group_names, cfg.data.pairing))
    missing = robustness(model, data, "val", 512, device, cfg.data.pairing, missing=True, noise_levels=[])
    result = {"all": full["fused/acc"]}
    for kept in names:
        others = "_and_".join(sorted(m for m in names if m != kept))
        key = next(k for k in missing if k.endswith("/fused/acc") and
                   "_and_".join(sorted(k.split("/")[1].split("_and_"))) == others)
        result[kept] = missing[key]
    result["val_items"] = float(len(dataset.indices("val")))
    return result


def interval(values: list[float]) -> float:
    """Half-width of the 95% Student-t interval of the mean (0 for one value)."""
    if len(values) < 2:
        return 0.0
    return float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))


def table(results: pd.DataFrame, classes: int) -> str:
    lines = ["| encoders | kept at evaluation | val fused acc, mean +- 95% t-interval | per seed |",
             "|---|---|---:|---|"]
    for (encoders, kept), group in results.groupby(["encoders", "kept"], sort=False):
        values = group.sort_values("seed")["acc"].tolist()
        lines.append(f"| {encoders} | {kept} | {np.mean(values):.3f} +- {interval(values):.3f} | "
                     f"{', '.join(f'{v:.3f}' for v in values)} |")
    lines.append(f"\nChance: {1 / classes:.3f} ({classes} balanced classes).")
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace the text between ``<!-- featurize_alone:start -->`` and ``<!-- featurize_alone:end -->``."""
    text = path.read_text()
    start, end = f"<!-- {SECTION}:start -->", f"<!-- {SECTION}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no {start} ... {end} section to write")
    path.write_text(pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="working folder (raw files, datasets, runs)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--section", type=Path, help="a docs page whose featurize_alone section gets the table")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = make_raw_example(args.out / "raw", n_classes=args.classes, per_class=args.per_class, seed=0)
    rows, seconds = [], {}
    for encoders, extra in ENCODER_SETS.items():
        data = args.out / f"data-{encoders}"
        started = time.perf_counter()
        run(featurize_command(manifest, data, extra), args.out / f"featurize-{encoders}.log")
        seconds[encoders] = time.perf_counter() - started
        for seed in args.seeds:
            run_dir = args.out / "runs" / f"{encoders}-seed{seed}"
            if not (run_dir / "test_metrics.json").is_file():
                run(train_command(data, seed, run_dir), args.out / f"train-{encoders}-{seed}.log")
            scores = alone_on_val(run_dir)
            print(encoders, seed, json.dumps(scores), flush=True)
            for kept in ("all", *MODALITIES):
                rows.append({"encoders": encoders, "kept": "all modalities" if kept == "all" else f"{kept} alone",
                             "seed": seed, "acc": scores[kept], "val_items": scores["val_items"]})
    results = pd.DataFrame(rows)
    results.to_csv(args.out / "results.csv", index=False)
    body = table(results, args.classes)
    print(body)
    if args.section:
        notes = [f"{args.classes * args.per_class} items ({args.classes} classes x {args.per_class}), "
                 f"{int(results['val_items'].iloc[0])} in the validation split; seeds {args.seeds}; "
                 "featurizing took " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())]
        write_section(args.section, provenance(command_line("experiments.featurize_alone", argv), notes=notes)
                      + "\n\n" + body)
        print(f"wrote the table into {args.section}")


if __name__ == "__main__":
    main()
