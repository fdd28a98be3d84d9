"""The suite's order-dependent real dataset: spoken letters from Debian's KLettres.

``data=klettres`` (``conf/data/klettres.yaml``) calls :func:`load_klettres`: it builds the
dataset folder the first time (cached under ``<outputs>/datasets/klettres/``, through
:func:`mmgnn.featurize.suite_data.ensure_build`), then loads it and draws the split from
``data.seed``.

The source is KLettres' data (Debian package ``klettres-data``, GPL-2+): children's-game
recordings of the alphabet and of syllables in about 20 languages; ``<language>/sounds.xml``
names the letter or syllable of each file. One item is one recording:

- ``audio``: the recording (OGG/Vorbis), by default as log-mel frames (``pos`` = time in
  seconds);
- ``image``: the letter or syllable as written, drawn with ``rsvg-convert`` (package
  ``librsvg2-bin``) in one of six DejaVu faces (fontconfig's own fonts, package
  ``fonts-dejavu-core``) and jittered like KTuberling's pictures (size, angle, shift; never
  mirrored), by default as raw grey 8 x 8 patches on a 4 x 4 grid (``pos`` = row, col), so
  that where a stroke is decides what it is;
- ``text``: the letter or syllable as written (MiniLM tokens);
- ``label``: the letter or syllable, lower-cased (``A`` in French and in Czech is one
  label, said differently); ``group``: the language, so negatives from other languages are
  real cross-culture negatives.

Only labels recorded at least ``min_per_label`` times are kept: by default 12, the 26 Latin
letters (each in 12 to 15 languages); 3 adds the 77 syllables three or more languages share.
Identical files are kept once.

    python -m mmgnn.featurize.suite_data klettres   # build it now
"""
from __future__ import annotations

import hashlib
import inspect
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

import pandas as pd

from mmgnn.data.dataset import MultimodalDataset
from mmgnn.data.folder import load_folder
from mmgnn.data.splits import check_fractions
from mmgnn.featurize import suite_data
from mmgnn.featurize.suite_data import (
    MODALITIES, SuiteDataError, alpha_box, draw_item, ensure_build, featurize_manifest, item_images,
    missing_package, run_rsvg, split_by_label, stable_int, write_build_record,
)

#: Where Debian installs KLettres' data (tests point it elsewhere).
KLETTRES = Path("/usr/share/klettres")
#: Bumped whenever the builder's output changes for the same parameters (keys the cache).
BUILD_VERSION = 1
#: The faces a glyph is drawn in (family, weight), one per item chosen by its id.
FACES = (("DejaVu Sans", "normal"), ("DejaVu Sans", "bold"), ("DejaVu Serif", "normal"),
         ("DejaVu Serif", "bold"), ("DejaVu Sans Mono", "normal"), ("DejaVu Sans Mono", "bold"))
#: Where Debian's fonts-dejavu-core installs them (fontconfig would draw a missing face in another).
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
              "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf")
_SOUND = re.compile(r"<sound\s+name=\"([^\"]+)\"\s+file=\"([^\"]+)\"")


def recordings(source: Path | None = None) -> pd.DataFrame:
    """Every installed recording: ``language``, ``kind`` (``alpha`` or ``syllab``), ``name``
    (as written), ``label`` (lower-cased, NFC), ``file`` (absolute); one row per distinct file
    content (the first language in name order keeps it)."""
    source = Path(source or KLETTRES)
    catalogues = sorted(source.glob("*/sounds.xml"))
    if not catalogues:
        raise missing_package("klettres", source / "<language>" / "sounds.xml")
    rows = []
    for catalogue in catalogues:
        for name, file in _SOUND.findall(catalogue.read_text(encoding="utf-8")):
            path = source / file
            if path.is_file():
                name = unicodedata.normalize("NFC", name.strip())
                rows.append({"language": catalogue.parent.name, "kind": Path(file).parent.name, "name": name,
                             "label": name.lower(), "file": str(path)})
    table = pd.DataFrame(rows, columns=["language", "kind", "name", "label", "file"])
    digest = [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in table["file"]]
    return table[~pd.Series(digest, index=table.index).duplicated(keep="first")].reset_index(drop=True)


def select_items(source: Path | None = None, languages: Sequence[str] | None = None,
                 min_per_label: int = 3) -> pd.DataFrame:
    """The items of a build: recordings of the chosen ``languages`` (``None``: all) whose
    label has at least ``min_per_label`` recordings, each with its ``item_id``
    (``<language>/<kind>/<file stem>``) and the face its glyph is drawn in."""
    table = recordings(source)
    if languages is not None:
        unknown = sorted(set(languages) - set(table["language"]))
        if unknown:
            raise ValueError(f"klettres: no recording of language {unknown}; known: {sorted(set(table['language']))}")
        table = table[table["language"].isin(list(languages))]
    counts = table["label"].value_counts()
    table = table[table["label"].map(counts) >= min_per_label].copy()
    table["item_id"] = table["language"] + "/" + table["kind"] + "/" + table["file"].map(lambda f: Path(f).stem)
    table["face"] = [stable_int("face", i) % len(FACES) for i in table["item_id"]]
    return table.sort_values(["label", "language", "item_id"]).reset_index(drop=True)


def glyph_svg(text: str, family: str, weight: str, size: int = 160) -> bytes:
    """An SVG page with ``text`` in black, ``size`` px high, in the given font face."""
    width = size * (len(text) + 1)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{2 * size}">'
            f'<text x="{width / 2}" y="{1.4 * size}" font-family="{escape(family)}" font-weight="{weight}" '
            f'font-size="{size}" text-anchor="middle" fill="black">{escape(text)}</text></svg>').encode()


def render_glyph(text: str, face: int):
    """``text`` drawn in ``FACES[face]`` as an RGBA image cropped to its ink."""
    family, weight = FACES[face]
    image = run_rsvg(glyph_svg(text, family, weight), [])
    box = alpha_box(image)
    if box is None:
        raise SuiteDataError(f"{suite_data.RSVG} drew nothing for {text!r} in {family} {weight}")
    return image.crop(box)


def _settings(languages, min_per_label, image_size, jitter, text_encoder, image_encoder, audio_encoder,
              featurize_options) -> dict:
    return {
        "builder": f"klettres/{BUILD_VERSION}", "languages": None if languages is None else sorted(languages),
        "min_per_label": int(min_per_label), "image_size": int(image_size), "jitter": bool(jitter),
        "faces": [list(f) for f in FACES], "encoders": [text_encoder, image_encoder, audio_encoder],
        "featurize_options": list(featurize_options),
    }


def build_klettres(out: str | Path, languages: Sequence[str] | None = None, min_per_label: int = 12,
                   image_size: int = 32, jitter: bool = True, text_encoder: str = "minilm",
                   image_encoder: str = "patches", audio_encoder: str = "logmel",
                   featurize_options: Sequence[str] = (), source: str | Path | None = None,
                   raw: str | Path | None = None) -> dict:
    """Build the dataset folder ``out`` (replaced when complete) and return its build record.

    ``raw`` (default ``<out's folder>/klettres-raw``) keeps each item's image and the
    featurizer's per-item cache for later builds.
    """
    source = Path(source or KLETTRES)
    out = Path(out)
    raw = Path(raw) if raw is not None else out.parent / "klettres-raw"
    settings = _settings(languages, min_per_label, image_size, jitter, text_encoder, image_encoder, audio_encoder,
                         featurize_options)
    items = select_items(source, languages, min_per_label)
    if items.empty:
        raise SuiteDataError(f"klettres: no item left (languages {languages}, min_per_label {min_per_label})")
    if shutil.which(suite_data.RSVG) is None:
        raise missing_package("rsvg", suite_data.RSVG)
    for font in FONT_FILES:
        if not (FONT_DIR / font).is_file():
            raise missing_package("fonts", FONT_DIR / font)
    image_files = item_images(items, raw / "images" / f"{image_size}-{'jitter' if jitter else 'plain'}",
                              lambda row: draw_item(render_glyph(row.name, row.face), row.item_id, image_size, jitter,
                                                    mirror=False))
    manifest = pd.DataFrame({
        "item_id": items["item_id"], "label": items["label"], "group": items["language"], "text": items["name"],
        "image": image_files, "audio": items["file"], "kind": items["kind"],
        "face": [" ".join(FACES[f]) for f in items["face"]],
    })
    featurize_manifest(manifest, out, raw, {"text": text_encoder, "image": image_encoder, "audio": audio_encoder},
                       featurize_options)
    return write_build_record(out, settings, manifest, syllables=int((manifest["kind"] == "syllab").sum()),
                              source=str(source))


def load_klettres(
    seed: int = 0,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    languages: Sequence[str] | None = None,
    min_per_label: int = 12,
    image_size: int = 32,
    jitter: bool = True,
    text_encoder: str = "minilm",
    image_encoder: str = "patches",
    audio_encoder: str = "logmel",
    featurize_options: Sequence[str] = (),
    name: str = "klettres",
    root: str | None = None,
    source: str | None = None,
) -> MultimodalDataset:
    """The KLettres dataset (module docstring), built on first use, split by ``seed``
    (stratified by label: each language records a letter once).

    Args:
        seed: ``data.seed``, the split's seed.
        split_fractions: (train, val, test).
        languages: language folders to keep (``None``: all).
        min_per_label: letters and syllables with fewer recordings are left out.
        image_size: side of each item's image in pixels (before the image featurizer).
        jitter: draw each glyph at its own size, angle and shift.
        text_encoder, image_encoder, audio_encoder: ``--<kind>-encoder`` of ``mmgnn.featurize``.
        featurize_options: further ``mmgnn.featurize`` options.
        name: the folder's name under ``root`` (and the dataset's name).
        root: where datasets are built (default ``<outputs>/datasets``).
        source: KLettres' data folder (default ``/usr/share/klettres``).

    Raises:
        SuiteDataError: naming the Debian package (and its install command) or the file that
            is missing, when the dataset is not built yet and cannot be.
    """
    fractions = check_fractions(split_fractions)
    build_args = {"languages": None if languages is None else list(languages), "min_per_label": min_per_label,
                  "image_size": image_size, "jitter": jitter, "text_encoder": text_encoder,
                  "image_encoder": image_encoder, "audio_encoder": audio_encoder,
                  "featurize_options": list(featurize_options), "source": source}
    defaults = {k: v.default for k, v in inspect.signature(build_klettres).parameters.items()}
    given = {**defaults, **build_args}
    settings = _settings(given["languages"], given["min_per_label"], given["image_size"], given["jitter"],
                         given["text_encoder"], given["image_encoder"], given["audio_encoder"],
                         given["featurize_options"])
    folder = ensure_build(name, root, settings, lambda out: build_klettres(out, **build_args))
    return split_by_label(load_folder(folder, modalities=list(MODALITIES), name=name), fractions, seed)
