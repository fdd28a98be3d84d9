"""Cost of ``mmgnn.featurize``: items/s per featurizer, computed and reused from the cache.

Featurizes the raw example of ``make_raw_example.py`` (captions of 4-9 MiniLM tokens, 8 x 8
PNG digits resized to 16 x 16 in 4 x 4 patches, 0.4-0.7 s clips at 16/22.05 kHz, some stereo)
once to warm up, ``--repeats`` times without a cache, then twice with a fresh cache: the second
of those reads every item from the cache. Reports mean +- std of items/s per column over the repeats and the
reuse speed-up (cached items/s over computed items/s, same run). Loading MiniLM is timed apart.

    python -m experiments.bench_featurize --per-class 25 --repeats 5 --threads 1
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from experiments.make_raw_example import make_raw_example
from experiments.markdown import add_markdown_option, write_if_asked
from mmgnn.featurize import AudioFeaturizer, ImageFeaturizer, TextFeaturizer, featurize


def items_per_second(info: dict) -> dict[str, float]:
    """Per column: items that have the column / seconds spent on the column."""
    return {c: m["items"] / max(m["seconds"], 1e-9) for c, m in info["modalities"].items()}


def measure(per_class: int, classes: int, repeats: int, batch_size: int, device: str) -> dict:
    """items/s per column: ``computed`` (list over repeats) and ``reused``, plus MiniLM's load time."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = make_raw_example(tmp / "raw", n_classes=classes, per_class=per_class, seed=0)
        started = time.perf_counter()
        text = TextFeaturizer(device=device)
        load_seconds = time.perf_counter() - started
        featurizers = {"text": text, "image": ImageFeaturizer(size=16, patch=4), "audio": AudioFeaturizer()}
        run = dict(featurizers=featurizers, batch_size=batch_size, progress=False)
        featurize(manifest, tmp / "out", cache=None, **run)  # warm-up, not measured
        computed = [items_per_second(featurize(manifest, tmp / "out", cache=None, **run)) for _ in range(repeats)]
        featurize(manifest, tmp / "out", cache=tmp / "cache", **run)
        reused = items_per_second(featurize(manifest, tmp / "out", cache=tmp / "cache", **run))
    return {"computed": computed, "reused": reused, "load_seconds": load_seconds, "items": classes * per_class}


def table(result: dict) -> str:
    lines = ["| featurizer | computed items/s (mean +- std) | reused from cache items/s | reuse speed-up |",
             "|---|---|---|---|"]
    for column in result["reused"]:
        values = np.array([r[column] for r in result["computed"]])
        lines.append(f"| {column} | {values.mean():.1f} +- {values.std():.1f} | {result['reused'][column]:.0f} | "
                     f"{result['reused'][column] / values.mean():.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=25, help="items per class (4 classes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="text encoder device (auto, cpu, cuda)")
    add_markdown_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args.per_class, 4, args.repeats, args.batch_size, args.device)
    print(f"{result['items']} items, {args.repeats} repeats, batch {args.batch_size}, "
          f"{args.threads} thread(s), device {args.device}; MiniLM load {result['load_seconds']:.1f} s")
    print(table(result))
    write_if_asked(args, argv, "experiments.bench_featurize", "Benchmark: featurizing raw files",
                   f"{result['items']} items, {args.repeats} repeats, batch {args.batch_size}, "
                   f"{args.threads} thread(s), device {args.device}; MiniLM load "
                   f"{result['load_seconds']:.1f} s.\n\n{table(result)}")


if __name__ == "__main__":
    main()
