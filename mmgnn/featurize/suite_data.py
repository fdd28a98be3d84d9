"""Real multilingual datasets of the development suite, built offline from Debian's packages.

``data=ktuberling`` and ``data=ktuberling_small`` (``conf/data/``) call :func:`load_ktuberling`:
it builds the dataset folder the first time (cached under ``<outputs>/datasets/<name>/``), then
loads it with :func:`mmgnn.data.folder.load_folder` and draws the split from ``data.seed``.

The source is KTuberling's data (Debian package ``ktuberling-data``, GPL-2+; ``pics/moon.svg``
CC-BY): recordings of object names spoken in about 25 languages (``sounds/<lang>.soundtheme``
maps each sound name, the object, to the file of that language) and SVG playgrounds whose
objects name their sound (``pics/<theme>.theme``). One item is one recording:

- ``audio``: the recording (OGG/Vorbis, Opus or WAV, as shipped);
- ``image``: a picture of the object, cut out of its playground SVG with ``rsvg-convert``
  (package ``librsvg2-bin``) and drawn on grey at a random size, angle, shift and mirroring
  drawn from the item's id (``jitter``), so that no two items share the same pixels; an object
  drawn several times (eleven eyes, five noses) gives each item one of its drawings;
- ``text``: the word as written where the recording's file name spells it in its language
  (``fr/patate_sourcil.wav`` -> ``sourcil``; ``text_source=word``), else the object's name
  (``egypt camel``; ``text_source=name``): most languages name their files in English. A
  file name is taken as the word when it is neither the object's English name nor a misspelling
  of one, or when most files of its language and theme (its file-name prefix) are;
- ``label``: the object (the sound name); ``group``: the language, so negatives from other
  languages are real cross-culture negatives.

Identical files (the Serbian variants share their recordings) are kept once, and a file that
a language uses for two objects (Spanish ``lazo`` for bow and tie) is left out. Raw files are
featurized by ``mmgnn.featurize`` (its command line, in this process), so the suite exercises
the raw-data path; the encoders are parameters (``text_encoder``, ``image_encoder``,
``audio_encoder``, ``featurize_options``): by default MiniLM tokens, the 7 x 7 cells of
EfficientNet-Lite0's ``block15`` and log-mel frames.

    python -m mmgnn.featurize.suite_data ktuberling ktuberling_small klettres   # build them now
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import gzip
import hashlib
import inspect
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from mmgnn import paths
from mmgnn.data.dataset import MultimodalDataset
from mmgnn.data.folder import ITEMS_FILE, load_folder
from mmgnn.data.splits import check_fractions, stratified_split
from mmgnn.featurize.record import INFO_FILE

log = logging.getLogger(__name__)

#: Where Debian installs KTuberling's data (tests point it elsewhere).
KTUBERLING = Path("/usr/share/ktuberling")
#: The Debian packages the builder reads, and the command that installs them.
PACKAGES = {"ktuberling": "ktuberling-data", "klettres": "klettres-data", "rsvg": "librsvg2-bin",
            "fonts": "fonts-dejavu-core"}
WHAT = {"ktuberling": "KTuberling recordings and pictures", "klettres": "KLettres recordings",
        "rsvg": "rsvg-convert", "fonts": "the DejaVu fonts letters are drawn in"}
INSTALL = "sudo apt-get install -y ktuberling-data klettres-data librsvg2-bin fonts-dejavu-core"
RSVG = "rsvg-convert"
#: Bumped whenever the builder's output changes for the same parameters (keys the cache).
BUILD_VERSION = 1
BUILD_FILE = "suite_build.json"  # in the dataset folder: the parameters it was built with
MODALITIES = ("text", "image", "audio")
BACKGROUND = (128, 128, 128)  # pictures are drawn on mid grey (white and black objects both show)
#: The Potato Guy's face words, recorded in most languages (``data=ktuberling_small``).
FACE_OBJECTS = ("bow", "ear", "earring", "eye", "eyebrow", "hair", "hat", "moustache", "mouth", "nose",
                "spectacles", "sunglasses", "tie")
#: Languages whose file names spell the face words in the language itself (and English).
WORD_LANGUAGES = ("ca", "en", "es", "fi", "fr", "ga", "it", "nds", "nl", "pt", "ro", "sr", "sv", "wa")
_SOUND = re.compile(r"<sound\s+name=\"([^\"]+)\"\s+file=\"([^\"]+)\"")
_OBJECT = re.compile(r"<object\s+name=\"([^\"]+)\"\s+sound=\"([^\"]+)\"")
_BOARD = re.compile(r"gameboard=\"([^\"]+)\"")
_SVG = "{http://www.w3.org/2000/svg}"


class SuiteDataError(RuntimeError):
    """A suite dataset cannot be built: a Debian package or a file is missing."""


def missing_package(what: str, path: Path | str) -> SuiteDataError:
    package = PACKAGES[what]
    return SuiteDataError(
        f"{path} not found: building this dataset needs the Debian package {package} "
        f"({WHAT[what]}). "
        f"Install it with: {INSTALL}   (or: make suite-data)")


# ----------------------------------------------------------------------------- the catalogue
def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[-_]+", " ", text)).strip().lower()


def _theme_prefixes(stems: list[str]) -> set[str]:
    """A language's theme prefixes: a file-name part before ``_`` shared by five or more files."""
    heads = pd.Series([s.split("_", 1)[0] for s in stems if "_" in s])
    counts = heads.value_counts()
    return set(counts[counts >= 5].index)


def _english_forms(sound: str) -> set[str]:
    """The sound name and its words without a theme part (``egypt_camel`` -> ``camel``)."""
    name = _normal(sound)
    forms = {name}
    for theme in ("robot workshop ", "egypt ", "moon ", "pizzeria ", "xmas ", "butterflies ", "tv ", "tux "):
        if name.startswith(theme):
            forms.add(name[len(theme):])
    if name.endswith(" tux"):
        forms.add(name[: -len(" tux")])
    return forms


def file_word(sound: str, file: str, prefixes: set[str]) -> tuple[str, str, bool]:
    """``(word, part, foreign)`` of a recording's file name: the word it spells (theme prefix
    dropped: ``patate_sourcil`` -> ``sourcil``), that prefix (``""``: none), and whether the word
    is not the object's English name nor a misspelling of it."""
    stem = Path(file).stem
    head, sep, rest = stem.partition("_")
    part = ""
    if sep and head in prefixes and rest:
        stem, part = rest, head
    word = _normal(stem)
    english = _english_forms(sound)
    close = max(difflib.SequenceMatcher(None, word, form).ratio() for form in english)
    return word, part, bool(word) and word not in english and close < 0.8


def recordings(source: Path | None = None) -> pd.DataFrame:
    """Every usable recording: ``language``, ``sound``, ``file`` (absolute), ``text``,
    ``text_source``; one row per distinct file content (the first language in name order keeps
    it), files a language uses for two objects left out, files that are not installed skipped."""
    source = Path(source or KTUBERLING)
    sounds = source / "sounds"
    if not sounds.is_dir():
        raise missing_package("ktuberling", sounds)
    rows = []
    for theme in sorted(sounds.glob("*.soundtheme")):
        pairs = _SOUND.findall(theme.read_text(encoding="utf-8"))
        prefixes = _theme_prefixes([Path(f).stem for _, f in pairs])
        uses = pd.Series([f for _, f in pairs]).value_counts()
        found = []
        for sound, file in pairs:
            path = sounds / file
            if uses[file] == 1 and path.is_file():
                found.append((sound, path, *file_word(sound, file, prefixes)))
        # Files whose names share a prefix (a theme) are named in one language: a word close to
        # its English name ("hata", "moustache") is the language's own when most of them are.
        native = pd.DataFrame(found, columns=["sound", "path", "word", "part", "foreign"]).groupby("part")["foreign"].mean()
        for sound, path, word, part, foreign in found:
            own = foreign or native[part] > 0.5
            rows.append({"language": theme.stem, "sound": sound, "file": str(path),
                         "text": word if own else _normal(sound), "text_source": "word" if own else "name"})
    table = pd.DataFrame(rows, columns=["language", "sound", "file", "text", "text_source"])
    table = table.drop_duplicates(["language", "sound"], keep="first")
    digest = [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in table["file"]]
    return table[~pd.Series(digest, index=table.index).duplicated(keep="first")].reset_index(drop=True)


def pictures(source: Path | None = None) -> pd.DataFrame:
    """Every drawn object: ``sound``, ``board`` (the SVG file) and ``object`` (its SVG id)."""
    source = Path(source or KTUBERLING)
    pics = source / "pics"
    if not pics.is_dir():
        raise missing_package("ktuberling", pics)
    rows = []
    for theme in sorted(pics.glob("*.theme")):
        text = theme.read_text(encoding="utf-8")
        board = _BOARD.search(text)
        if board is None:
            continue
        rows += [{"sound": s, "board": board.group(1), "object": o} for o, s in _OBJECT.findall(text)]
    return pd.DataFrame(rows, columns=["sound", "board", "object"]).drop_duplicates().reset_index(drop=True)


def stable_int(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:15], 16)


def select_items(source: Path | None = None, languages: Sequence[str] | None = None,
                 objects: Sequence[str] | None = None, min_per_label: int = 3) -> pd.DataFrame:
    """The items of a build: recordings of the chosen ``languages`` and ``objects`` (``None``:
    all) whose object is drawn, of objects with at least ``min_per_label`` recordings; each
    with the drawing it shows (``board``, ``object``: one of its object's, chosen by the id)."""
    table = recordings(source)
    drawn = pictures(source)
    for column, wanted in (("language", languages), ("sound", objects)):
        if wanted is not None:
            unknown = sorted(set(wanted) - set(table[column]))
            if unknown:
                raise ValueError(f"ktuberling: no recording of {column} {unknown}; known: {sorted(set(table[column]))}")
            table = table[table[column].isin(list(wanted))]
    table = table[table["sound"].isin(set(drawn["sound"]))]
    counts = table["sound"].value_counts()
    table = table[table["sound"].map(counts) >= min_per_label].copy()
    table["item_id"] = table["language"] + "/" + table["sound"]
    options = {s: g.sort_values(["board", "object"]).to_numpy() for s, g in drawn.groupby("sound")}
    chosen = [options[s][stable_int(i) % len(options[s])] for s, i in zip(table["sound"], table["item_id"])]
    table["board"] = [c[1] for c in chosen]
    table["object"] = [c[2] for c in chosen]
    return table.sort_values(["sound", "language"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- pictures
def _svg_bytes(file: Path) -> bytes:
    data = file.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@contextlib.contextmanager
def _only(root: ET.Element, parents: dict, object_id: str) -> Iterator[None]:
    """Context: every element but ``object_id``, its ancestors and its descendants hidden."""
    target = next((e for e in root.iter() if e.get("id") == object_id), None)
    if target is None:
        raise SuiteDataError(f"no SVG element with id {object_id!r}")
    chain = [target]
    while chain[-1] in parents:
        chain.append(parents[chain[-1]])
    keep = {id(e) for e in chain}
    changed = []
    for ancestor in chain[1:]:
        for child in ancestor:
            if id(child) not in keep and child.tag not in (f"{_SVG}defs", f"{_SVG}style", f"{_SVG}metadata"):
                changed.append((child, child.get("style")))
                child.set("style", (child.get("style") or "") + ";display:none")
    for element in chain:  # a hidden layer would hide the object too
        style = element.get("style") or ""
        if re.search(r"display\s*:\s*none", style) or element.get("display") == "none":
            changed.append((element, element.get("style")))
            element.set("style", style + ";display:inline")
    try:
        yield
    finally:
        for element, style in changed:
            if style is None:
                element.attrib.pop("style", None)
            else:
                element.set("style", style)



def run_rsvg(svg: bytes, args: list[str]):
    from PIL import Image

    done = subprocess.run([RSVG, *args], input=svg, capture_output=True)
    if done.returncode:
        raise SuiteDataError(f"{RSVG} {' '.join(args)} failed: {done.stderr.decode(errors='replace')[:300]}")
    return Image.open(io.BytesIO(done.stdout)).convert("RGBA")


def alpha_box(image, threshold: int = 16):
    return image.getchannel("A").point(lambda a: 255 if a > threshold else 0).getbbox()


def render_object(root: ET.Element, parents: dict, object_id: str, side: int = 160):
    """One object of a playground as an RGBA image cropped to its pixels, about ``side`` px
    on its longer side: the page drawn with everything else hidden, once to find the object,
    once zoomed on it (``rsvg-convert --zoom --left --top --page-width --page-height``)."""
    with _only(root, parents, object_id):
        svg = ET.tostring(root)
    page = run_rsvg(svg, [])
    zoom = 1000.0 / max(page.size)  # locate the object on a page about 1000 px wide
    if abs(zoom - 1.0) > 0.05:
        page = run_rsvg(svg, ["--zoom", f"{zoom:.6f}"])
    else:
        zoom = 1.0
    box = alpha_box(page)
    if box is None:
        raise SuiteDataError(f"object {object_id!r} draws nothing")
    x0, y0, x1, y1 = (v / zoom for v in box)
    pad = 1.0 / zoom  # a pixel of the locating page, each side
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    scale = side / max(x1 - x0, y1 - y0)
    image = run_rsvg(svg, ["--zoom", f"{scale:.6f}", f"--page-width={(x1 - x0) * scale:.2f}px",
                        f"--page-height={(y1 - y0) * scale:.2f}px", f"--left={-x0 * scale:.2f}px",
                        f"--top={-y0 * scale:.2f}px"])
    box = alpha_box(image)
    return image.crop(box) if box is not None else image


def render_pictures(wanted: pd.DataFrame, source: Path, folder: Path) -> dict[tuple[str, str], Path]:
    """``(board, object) -> PNG`` of every wanted drawing, rendered once into ``folder``
    (kept: later builds reuse it)."""
    if shutil.which(RSVG) is None:
        raise missing_package("rsvg", RSVG)
    out = {}
    for board, group in wanted.groupby("board"):
        files = {o: folder / Path(board).stem / f"{o}.png" for o in group["object"].unique()}
        todo = [o for o, f in files.items() if not f.is_file()]
        if todo:
            svg_file = source / "pics" / board
            if not svg_file.is_file():
                raise missing_package("ktuberling", svg_file)
            root = ET.fromstring(_svg_bytes(svg_file))
            parents = {c: p for p in root.iter() for c in p}
            for object_id in todo:
                image = render_object(root, parents, object_id)
                files[object_id].parent.mkdir(parents=True, exist_ok=True)
                partial = files[object_id].with_suffix(f".{os.getpid()}.partial.png")
                image.save(partial)
                partial.replace(files[object_id])
        out.update({(board, o): f for o, f in files.items()})
    return out


def draw_item(picture, item_id: str, size: int, jitter: bool, mirror: bool = True):
    """The item's image: the drawing on grey, ``size`` px square; with ``jitter`` scaled to
    55-90% of the side, turned by up to 20 degrees, shifted by up to 10% and (with ``mirror``;
    not for letters) mirrored half the time, all drawn from the item's id (the same id gives
    the same image)."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(stable_int("jitter", item_id))
    fill = rng.uniform(0.55, 0.9) if jitter else 0.8
    angle = rng.uniform(-20, 20) if jitter else 0.0
    shift = rng.uniform(-0.1, 0.1, size=2) * size if jitter else np.zeros(2)
    mirror = bool(rng.random() < 0.5) and mirror if jitter else False
    image = picture.convert("RGBA")
    if mirror:
        image = ImageOps.mirror(image)
    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    box = alpha_box(image)
    image = image.crop(box) if box is not None else image
    scale = fill * size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (*BACKGROUND, 255))
    left = int(round((size - image.width) / 2 + shift[0]))
    top = int(round((size - image.height) / 2 + shift[1]))
    canvas.alpha_composite(image, (min(max(left, 0), size - image.width), min(max(top, 0), size - image.height)))
    return canvas.convert("RGB")


# ----------------------------------------------------------------------------- the build
def build_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def item_images(items: pd.DataFrame, folder: Path, draw) -> list[str]:
    """Each item's image file ``<folder>/<item_id with / as __>.png``, drawn by ``draw(row)``
    (a row of ``items``, which has ``item_id``) unless it is there (written whole or not at all)."""
    files = []
    for row in items.itertuples(index=False):
        file = folder / f"{row.item_id.replace('/', '__')}.png"
        if not file.is_file():
            file.parent.mkdir(parents=True, exist_ok=True)
            partial = file.with_suffix(f".{os.getpid()}.partial.png")
            draw(row).save(partial)
            partial.replace(file)
        files.append(str(file))
    return files


def featurize_manifest(manifest: pd.DataFrame, out: Path, raw: Path, encoders: dict[str, str],
                       options: Sequence[str]) -> None:
    """``python -m mmgnn.featurize`` on ``manifest`` (written to ``<raw>/<out's name>-manifest.csv``;
    per-item cache ``<raw>/featurize-cache``) into ``out``, in this process."""
    from mmgnn.featurize.__main__ import main as featurize_main

    raw.mkdir(parents=True, exist_ok=True)
    manifest_file = raw / f"{out.name}-manifest.csv"
    manifest.to_csv(manifest_file, index=False)
    argv = ["--manifest", str(manifest_file), "--out", str(out), "--cache", str(raw / "featurize-cache"), "--quiet"]
    for kind in MODALITIES:
        argv += [f"--{kind}", kind, f"--{kind}-encoder", encoders[kind]]
    argv += list(options)
    log.info("python -m mmgnn.featurize %s", " ".join(argv))
    status = featurize_main(argv)
    if status != 0:
        raise SuiteDataError(f"python -m mmgnn.featurize {' '.join(argv)} failed (exit {status}; "
                             "its message is printed above)")


def build_ktuberling(out: str | Path, languages: Sequence[str] | None = None, objects: Sequence[str] | None = None,
                     min_per_label: int = 3, image_size: int = 64, jitter: bool = True,
                     text_encoder: str = "minilm", image_encoder: str = "efficientnet-lite0",
                     audio_encoder: str = "logmel", featurize_options: Sequence[str] = ("--image-layer", "block15"),
                     source: str | Path | None = None,
                     raw: str | Path | None = None) -> dict:
    """Build the dataset folder ``out`` (replaced when complete) and return its build record.

    ``raw`` keeps what the build draws and computes for reuse by later builds (default
    ``<out's folder>/ktuberling-raw``): ``pictures/`` (each drawing cut out of its SVG),
    ``images/<size>-<jitter>/`` (each item's image) and ``featurize-cache/`` (per-item
    features, keyed by content and featurizer settings).
    """
    source = Path(source or KTUBERLING)
    out = Path(out)
    raw = Path(raw) if raw is not None else out.parent / "ktuberling-raw"
    settings = _settings(languages, objects, min_per_label, image_size, jitter, text_encoder, image_encoder,
                         audio_encoder, featurize_options)
    items = select_items(source, languages, objects, min_per_label)
    if items.empty:
        raise SuiteDataError(f"ktuberling: no item left (languages {languages}, objects {objects}, "
                             f"min_per_label {min_per_label})")
    drawings = render_pictures(items[["board", "object"]].drop_duplicates(), source, raw / "pictures")
    from PIL import Image

    def draw(row) -> object:
        with Image.open(drawings[(row.board, row.object)]) as picture:
            return draw_item(picture, row.item_id, image_size, jitter)

    image_files = item_images(items, raw / "images" / f"{image_size}-{'jitter' if jitter else 'plain'}", draw)
    manifest = pd.DataFrame({
        "item_id": items["item_id"], "label": items["sound"], "group": items["language"],
        "text": items["text"], "image": image_files, "audio": items["file"],
        "text_source": items["text_source"], "picture": items["board"] + "#" + items["object"],
    })
    featurize_manifest(manifest, out, raw, {"text": text_encoder, "image": image_encoder, "audio": audio_encoder},
                       featurize_options)
    return write_build_record(out, settings, manifest, text_words=int((manifest["text_source"] == "word").sum()),
                              source=str(source))


def _settings(languages, objects, min_per_label, image_size, jitter, text_encoder, image_encoder, audio_encoder,
              featurize_options) -> dict:
    return {
        "builder": f"ktuberling/{BUILD_VERSION}",
        "languages": None if languages is None else sorted(languages),
        "objects": None if objects is None else sorted(objects),
        "min_per_label": int(min_per_label), "image_size": int(image_size), "jitter": bool(jitter),
        "encoders": [text_encoder, image_encoder, audio_encoder], "featurize_options": list(featurize_options),
    }


def cached_build(folder: Path, settings: dict) -> bool:
    """Whether ``folder`` holds a complete build with these settings."""
    record = folder / BUILD_FILE
    if not (record.is_file() and (folder / ITEMS_FILE).is_file()):
        return False
    try:
        return json.loads(record.read_text()).get("key") == build_key(settings)
    except json.JSONDecodeError:
        return False


@contextlib.contextmanager
def build_lock(file: Path) -> Iterator[None]:
    """An exclusive lock on ``file``: parallel jobs wait for one build instead of racing."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def datasets_root(root: str | Path | None = None) -> Path:
    """Where suite datasets are built: ``root``, else ``<outputs>/datasets``."""
    return Path(root) if root is not None else paths.home() / "datasets"


def ensure_build(name: str, root: str | Path | None, settings: dict, build) -> Path:
    """The dataset folder ``<root>/<name>``: ``build(folder)`` is called now unless a build
    with the same ``settings`` is there (a build with other settings is replaced); parallel
    jobs wait for one build."""
    folder = datasets_root(root) / name
    with build_lock(folder.with_name(f".{name}.lock")):
        if not cached_build(folder, settings):
            if folder.exists() and not (folder / INFO_FILE).exists() and any(folder.iterdir()):
                raise SuiteDataError(f"{folder} exists and is not a suite dataset build; move it away")
            log.info("building %s (settings %s)", folder, settings)
            print(f"building dataset {name} into {folder} (once; later runs load it)", flush=True)
            build(folder)
    return folder


def write_build_record(out: Path, settings: dict, manifest: pd.DataFrame, **extra) -> dict:
    """``<out>/suite_build.json``: the settings (and their key, which :func:`cached_build`
    compares) and the build's sizes."""
    record = {"settings": settings, "key": build_key(settings), "items": len(manifest),
              "labels": int(manifest["label"].nunique()), "groups": int(manifest["group"].nunique()), **extra}
    (out / BUILD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def split_by_label(dataset: MultimodalDataset, fractions: Sequence[float], seed: int) -> MultimodalDataset:
    """``dataset`` with a split stratified by label alone, drawn from ``seed``."""
    split = stratified_split(dataset.labels, None, fractions, seed)
    items = dataset.items.copy()
    items["split"] = split
    return replace(dataset, items=items, split=split, _fingerprint=None)


def ensure_ktuberling(name: str = "ktuberling", root: str | Path | None = None, **build_args) -> Path:
    """The dataset folder ``<root>/<name>``, built now unless a build with the same settings is
    there (a build with other settings is replaced)."""
    defaults = {k: v.default for k, v in inspect.signature(build_ktuberling).parameters.items()}
    given = {**defaults, **build_args}
    settings = _settings(given["languages"], given["objects"], given["min_per_label"], given["image_size"],
                         given["jitter"], given["text_encoder"], given["image_encoder"], given["audio_encoder"],
                         given["featurize_options"])
    return ensure_build(name, root, settings, lambda folder: build_ktuberling(folder, **build_args))


def load_ktuberling(
    seed: int = 0,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    languages: Sequence[str] | None = None,
    objects: Sequence[str] | None = None,
    min_per_label: int = 3,
    image_size: int = 64,
    jitter: bool = True,
    text_encoder: str = "minilm",
    image_encoder: str = "efficientnet-lite0",
    audio_encoder: str = "logmel",
    featurize_options: Sequence[str] = ("--image-layer", "block15"),
    name: str = "ktuberling",
    root: str | None = None,
    source: str | None = None,
) -> MultimodalDataset:
    """The KTuberling dataset (module docstring), built on first use, split by ``seed``.

    The split is stratified by label alone (each language records an object once, so label x
    language strata would hold one item each): ``split_fractions`` of each object's
    recordings, every object with three or more recordings in each split.

    Args:
        seed: ``data.seed``, the split's seed.
        split_fractions: (train, val, test).
        languages, objects: the languages (``sounds/<code>``) and objects (sound names) to keep
            (``None``: all).
        min_per_label: objects with fewer recordings (in the kept languages) are left out.
        image_size: side of each item's image in pixels (before the image featurizer).
        jitter: draw each item's picture at a random size, angle, shift and mirroring.
        text_encoder, image_encoder, audio_encoder: ``--<kind>-encoder`` of ``mmgnn.featurize``.
        featurize_options: further ``mmgnn.featurize`` options; by default the image nodes are
            the 7 x 7 cells of EfficientNet-Lite0's ``block15`` (320 channels).
        name: the folder's name under ``root`` (and the dataset's name).
        root: where datasets are built (default ``<outputs>/datasets``).
        source: KTuberling's data folder (default ``/usr/share/ktuberling``).

    Raises:
        SuiteDataError: naming the Debian package (and its install command) or the file that
            is missing, when the dataset is not built yet and cannot be.
    """
    fractions = check_fractions(split_fractions)
    folder = ensure_ktuberling(
        name, root, languages=None if languages is None else list(languages),
        objects=None if objects is None else list(objects), min_per_label=min_per_label, image_size=image_size,
        jitter=jitter, text_encoder=text_encoder, image_encoder=image_encoder, audio_encoder=audio_encoder,
        featurize_options=list(featurize_options), source=source)
    return split_by_label(load_folder(folder, modalities=list(MODALITIES), name=name), fractions, seed)


#: The ``data=`` options this module builds (``conf/data/<name>.yaml``).
OPTIONS = ("ktuberling", "ktuberling_small", "klettres")


def main(argv: list[str] | None = None) -> int:
    """Build the ``data=`` options now, exactly as a run would (their composed loader config)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from mmgnn.config import CONF_DIR, register_configs

    parser = argparse.ArgumentParser(prog="python -m mmgnn.featurize.suite_data",
                                     description="Build the suite's real datasets now (cached).")
    parser.add_argument("names", nargs="*", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--root", default=None, help="where to build (default <outputs>/datasets)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    register_configs()
    for name in args.names:
        GlobalHydra.instance().clear()
        overrides = [f"data={name}"] + ([f"data.loader.root={args.root}"] if args.root else [])
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            loader = compose("config", overrides=overrides).data.loader
        try:
            dataset = instantiate(loader)
        except SuiteDataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{name}: {dataset.n_items} items, {dataset.num_classes} labels, "
              f"{len(dataset.group_names)} languages in {datasets_root(args.root) / loader.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
