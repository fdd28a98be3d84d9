"""Command line: ``python -m mmgnn.featurize --manifest items.csv --out DIR --text T --image I --audio A``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmgnn.featurize.audio import AudioFeaturizer
from mmgnn.featurize.base import Featurizer
from mmgnn.featurize.build import default_cache, featurize
from mmgnn.featurize.image import IMAGE_MODES, ImageFeaturizer
from mmgnn.featurize.manifest import FeaturizeError
from mmgnn.featurize.text import TextFeaturizer


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mmgnn.featurize",
        description="Turn a manifest of raw texts, images and audio clips into a dataset folder "
        "(items.csv + <column>.npz) that `python run.py data=folder data.path=DIR` reads.",
    )
    p.add_argument("--manifest", required=True, type=Path,
                   help="CSV with item_id, optional label/group/split, one column per raw modality")
    p.add_argument("--out", required=True, type=Path, help="output dataset folder (replaced when complete)")
    for kind, what in (("text", "the text itself"), ("image", "an image file path"), ("audio", "an audio file path")):
        p.add_argument(f"--{kind}", nargs="+", action="extend", default=[], metavar="COL",
                       help=f"manifest column(s) holding {what} per item (relative paths: to the manifest)")
    p.add_argument("--cache", type=Path, default=None, help="per-item cache folder (default: <out>.cache)")
    p.add_argument("--no-cache", action="store_true", help="compute every item, store nothing")
    p.add_argument("--skip-bad", action="store_true", help="leave bad items out, listed in <out>/skipped.csv")
    p.add_argument("--batch-size", type=int, default=32, help="items per batch (default 32)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("text (MiniLM all-MiniLM-L6-v2, one node per token)")
    g.add_argument("--text-max-tokens", type=int, default=256, help="truncate longer texts (default 256, max 512)")
    g.add_argument("--device", default="auto",
                   help="torch device of the text encoder: auto (CUDA if available), cpu, cuda")
    g = p.add_argument_group("image (one node per patch)")
    g.add_argument("--image-size", type=int, default=32, help="resize to SIZE x SIZE pixels (default 32)")
    g.add_argument("--image-patch", type=int, default=8, help="patch side in pixels, divides the size (default 8)")
    g.add_argument("--image-mode", choices=sorted(IMAGE_MODES), default="grey", help="pixel channels (default grey)")
    g = p.add_argument_group("audio (one node per log-mel frame)")
    g.add_argument("--audio-sample-rate", type=int, default=16000, help="resample to this rate in Hz (default 16000)")
    g.add_argument("--audio-window", type=int, default=400, help="window = FFT length in samples (default 400)")
    g.add_argument("--audio-hop", type=int, default=160, help="samples between frames (default 160)")
    g.add_argument("--audio-mels", type=int, default=64, help="mel bands per frame (default 64)")
    g.add_argument("--audio-silence-db", type=float, default=-60.0,
                   help="a clip whose peak is below this dBFS is rejected as silent (default -60)")
    return p


def build_featurizers(args: argparse.Namespace) -> dict[str, Featurizer]:
    """One featurizer per kind named on the command line, shared by that kind's columns."""
    columns = [(c, kind) for kind in ("text", "image", "audio") for c in getattr(args, kind)]
    names = [c for c, _ in columns]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise ValueError(f"column(s) {repeated} given more than once (each column is one modality)")
    kinds = {kind for _, kind in columns}
    made = {}
    if "text" in kinds:
        made["text"] = TextFeaturizer(max_tokens=args.text_max_tokens, device=args.device)
    if "image" in kinds:
        made["image"] = ImageFeaturizer(size=args.image_size, patch=args.image_patch, mode=args.image_mode)
    if "audio" in kinds:
        made["audio"] = AudioFeaturizer(
            sample_rate=args.audio_sample_rate, window=args.audio_window, hop=args.audio_hop,
            mels=args.audio_mels, silence_db=args.audio_silence_db,
        )
    return {column: made[kind] for column, kind in columns}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.batch_size < 1:
        print(f"error: --batch-size must be at least 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        featurizers = build_featurizers(args)
    except ValueError as err:  # an option out of range
        print(f"error: {err}", file=sys.stderr)
        return 2
    cache = None if args.no_cache else (args.cache or default_cache(args.out))
    try:
        info = featurize(args.manifest, args.out, featurizers, cache=cache, skip_bad=args.skip_bad,
                         batch_size=args.batch_size, progress=not args.quiet)
    except FeaturizeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    sizes = ", ".join(
        f"{c}: {m['items']} items, {m['nodes']} nodes x {m['dim']}" for c, m in info["modalities"].items()
    )
    print(f"wrote {args.out} ({info['items']} items; {sizes}); computed {info['computed']}, "
          f"reused {info['reused']} from the cache, skipped {info['skipped']} in {info['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
