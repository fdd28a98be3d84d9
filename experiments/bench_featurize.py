"""Cost of ``mmgnn.featurize``: items/s per encoder, computed and reused from the cache.

Featurizes the raw example of ``make_raw_example.py`` (captions of 4-9 MiniLM tokens, 8 x 8
PNG digits, 0.4-0.7 s clips at 16/22.05 kHz, some stereo) with every bundled encoder: text
through MiniLM; images as 4 x 4 patches of a 16 x 16 resize and through EfficientNet-Lite0 (its
head's 7 x 7 map); audio as log-mel frames and through CREPE tiny (its conv5 embedding, 10 ms
hop). Once to warm up, ``--repeats`` times without a cache, then twice with a fresh cache: the
second of those reads every item from the cache. Reports mean +- std of items/s per encoder over
the repeats and the reuse speed-up (cached items/s over computed items/s, same run). Loading
the pretrained models is timed apart. The ``hf:`` and ``torchscript:`` routes run the user's
model: their speed is that model's.

    python -m experiments.bench_featurize --per-class 25 --repeats 5 --threads 1
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from experiments.make_raw_example import make_raw_example
from experiments.markdown import add_markdown_option, write_if_asked
from mmgnn.featurize import (
    AudioFeaturizer, CrepeFeaturizer, EfficientNetLiteFeaturizer, ImageFeaturizer, TextFeaturizer, featurize,
)


def items_per_second(info: dict) -> dict[str, float]:
    """Per column: items that have the column / seconds spent on the column."""
    return {c: m["items"] / max(m["seconds"], 1e-9) for c, m in info["modalities"].items()}


# column -> (kind, encoder): one column per bundled encoder, all reading the example's files
ENCODERS = {
    "text": ("text", "minilm"),
    "image": ("image", "patches"), "image_lite0": ("image", "efficientnet-lite0"),
    "audio": ("audio", "logmel"), "audio_crepe": ("audio", "crepe"),
}


def featurizers_for(device: str) -> tuple[dict, dict[str, float]]:
    """One featurizer per column of :data:`ENCODERS` and each pretrained one's load seconds."""
    made, load = {}, {}
    for column, (kind, encoder) in ENCODERS.items():
        started = time.perf_counter()
        if encoder == "minilm":
            made[column] = TextFeaturizer(device=device)
        elif encoder == "patches":
            made[column] = ImageFeaturizer(size=16, patch=4)
        elif encoder == "efficientnet-lite0":
            made[column] = EfficientNetLiteFeaturizer(device=device)
        elif encoder == "logmel":
            made[column] = AudioFeaturizer()
        else:
            made[column] = CrepeFeaturizer(device=device)
        if encoder in ("minilm", "efficientnet-lite0", "crepe"):
            load[column] = time.perf_counter() - started
    return made, load


def measure(per_class: int, classes: int, repeats: int, batch_size: int, device: str, threads: int = 1) -> dict:
    """items/s per column: ``computed`` (list over repeats) and ``reused``, plus load times."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = make_raw_example(tmp / "raw", n_classes=classes, per_class=per_class, seed=0)
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        for column, (kind, _) in ENCODERS.items():
            table[column] = table[kind]
        table.to_csv(manifest, index=False)
        featurizers, load_seconds = featurizers_for(device)
        run = dict(featurizers=featurizers, batch_size=batch_size, progress=False, threads=threads)
        featurize(manifest, tmp / "out", cache=None, **run)  # warm-up, not measured
        computed = [items_per_second(featurize(manifest, tmp / "out", cache=None, **run)) for _ in range(repeats)]
        featurize(manifest, tmp / "out", cache=tmp / "cache", **run)
        reused = items_per_second(featurize(manifest, tmp / "out", cache=tmp / "cache", **run))
    return {"computed": computed, "reused": reused, "load_seconds": load_seconds, "items": classes * per_class}


def table(result: dict) -> str:
    lines = ["| kind | encoder | computed items/s (mean +- std) | reused from cache items/s | reuse speed-up |",
             "|---|---|---|---|---|"]
    for column in result["reused"]:
        kind, encoder = ENCODERS[column]
        values = np.array([r[column] for r in result["computed"]])
        lines.append(f"| {kind} | {encoder} | {values.mean():.1f} +- {values.std():.1f} | "
                     f"{result['reused'][column]:.0f} | {result['reused'][column] / values.mean():.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=25, help="items per class (4 classes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (featurize's threads)")
    parser.add_argument("--device", default="cpu", help="device of the pretrained encoders (auto, cpu, cuda)")
    add_markdown_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args.per_class, 4, args.repeats, args.batch_size, args.device, args.threads)
    loads = ", ".join(f"{ENCODERS[c][1]} {s:.1f} s" for c, s in result["load_seconds"].items())
    caption = (f"{result['items']} items, {args.repeats} repeats, batch {args.batch_size}, "
               f"{args.threads} thread(s), device {args.device}; model load: {loads}")
    print(caption)
    print(table(result))
    write_if_asked(args, argv, "experiments.bench_featurize", "Benchmark: featurizing raw files",
                   f"{caption}.\n\n{table(result)}")


if __name__ == "__main__":
    main()
