"""A small raw multimodal dataset made offline from installed material: the manifest
``items.csv`` plus ``images/*.png`` and ``audio/*.wav``, ready for ``python -m mmgnn.featurize``.

Each item is one of ``n_classes`` digit classes and has three modalities:

- image: a handwritten digit of scikit-learn's bundled digits set (8 x 8, 17 grey levels; the
  UCI optical recognition of handwritten digits data), saved as an 8-bit greyscale PNG;
- audio: a 0.4-0.7 s clip synthesised per class: a tone for even classes, an upward chirp for
  odd ones, at a class frequency (``300 * (class + 1)`` Hz, +-3% per item), with noise; some
  clips are stereo or at 22.05 kHz, so decoding must mix down and resample;
- text: a short caption drawn from per-class templates ("a handwritten three", ...).

A few items lack one modality (an empty cell), as real collections do.

    python experiments/make_raw_example.py --out /tmp/raw_digits
    python -m mmgnn.featurize --manifest /tmp/raw_digits/items.csv --out /tmp/digits \
        --text text --image image --audio audio --image-size 16 --image-patch 4
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
from PIL import Image
from sklearn.datasets import load_digits

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = (
    "a handwritten {name}",
    "the digit {name}, written by hand",
    "someone wrote the number {name}",
    "a scanned {name} from a form",
    "{name}, drawn with a pen",
)


def _clip(label: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A tone (even class) or chirp (odd class) of the class's frequency; [samples, channels]."""
    rate = int(rng.choice([16000, 22050]))
    seconds = rng.uniform(0.4, 0.7)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 300.0 * (label + 1) * rng.uniform(0.97, 1.03)
    sweep = 0.0 if label % 2 == 0 else f0 / seconds  # odd classes: the frequency doubles
    wave = 0.5 * np.sin(2 * np.pi * (f0 * t + 0.5 * sweep * t**2)) + 0.02 * rng.normal(size=t.shape)
    channels = 2 if rng.random() < 0.3 else 1
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32), rate


def make_raw_example(out: str | Path, n_classes: int = 4, per_class: int = 10, seed: int = 0) -> Path:
    """Write the raw example under ``out``; returns the manifest path (``out/items.csv``).

    Args:
        out: folder to write (created; files of an earlier call are overwritten).
        n_classes: digit classes 0 .. n_classes - 1 (at most 10).
        per_class: items per class.
        seed: seed of every random choice.
    """
    if not 2 <= n_classes <= 10 or per_class < 1:
        raise ValueError(f"need 2..10 classes and at least 1 item per class, got {n_classes}, {per_class}")
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rows = []
    for label in range(n_classes):
        pool = rng.permutation(np.flatnonzero(digits.target == label))[:per_class]
        for k, index in enumerate(pool):
            item = f"d{label}-{k:02d}"
            pixels = (digits.images[index] * (255 / 16)).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(out / "images" / f"{item}.png")
            wave, rate = _clip(label, rng)
            soundfile.write(out / "audio" / f"{item}.wav", wave, rate, subtype="PCM_16")
            text = str(rng.choice(TEMPLATES)).format(name=NAMES[label])
            rows.append({"item_id": item, "label": NAMES[label], "text": text,
                         "image": f"images/{item}.png", "audio": f"audio/{item}.wav"})
    table = pd.DataFrame(rows)
    lacking = rng.choice(len(table), size=5, replace=False)  # 5 items lack one modality each
    for column, rows in (("text", lacking[:2]), ("audio", lacking[2:4]), ("image", lacking[4:])):
        table.loc[rows, column] = ""
    table.to_csv(out / "items.csv", index=False)
    return out / "items.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_raw_example(args.out, args.classes, args.per_class, args.seed))


if __name__ == "__main__":
    main()
