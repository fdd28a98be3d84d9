"""data=klettres: spoken letters and syllables, built from a KLettres-shaped folder through
``mmgnn.featurize`` (the tests write their own recordings; only ``rsvg-convert`` is needed)."""
from __future__ import annotations

import inspect
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile

from mmgnn.data.folder import ITEMS_FILE
from mmgnn.featurize import klettres as L
from mmgnn.featurize import suite_data as K

needs_rsvg = pytest.mark.skipif(shutil.which(K.RSVG) is None,
                                reason=f"rsvg-convert is not installed ({K.INSTALL})")
#: language -> (name as written, file) of the fake source; "cc" repeats one of "aa"'s files.
CATALOGUE = {
    "aa": [("A", "aa/alpha/a.ogg"), ("B", "aa/alpha/b.ogg"), ("BA", "aa/syllab/ba.ogg")],
    "bb": [("A", "bb/alpha/a.ogg"), ("B", "bb/alpha/b.ogg"), ("Q", "bb/alpha/q.ogg"),
           ("MISSING", "bb/alpha/gone.ogg")],
    "cc": [("A", "cc/alpha/a.ogg"), ("BA", "cc/syllab/ba.ogg")],
}


def write_source(root):
    """A KLettres-shaped folder: ``<lang>/sounds.xml`` and a tone per recording (its pitch
    from the file's index; ``cc/alpha/a.ogg`` is a byte copy of ``aa/alpha/a.ogg``)."""
    for index, (language, sounds) in enumerate(CATALOGUE.items()):
        lines = [f'<sound name="{name}" file="{file}" />' for name, file in sounds]
        (root / language).mkdir(parents=True)
        (root / language / "sounds.xml").write_text(
            f'<klettres><language code="{language}"><alphabet>{"".join(lines)}</alphabet></language></klettres>',
            encoding="utf-8")
        for k, (name, file) in enumerate(sounds):
            if name == "MISSING":
                continue
            path = root / file
            path.parent.mkdir(parents=True, exist_ok=True)
            t = np.arange(int(0.3 * 16000)) / 16000
            soundfile.write(path, 0.3 * np.sin(2 * np.pi * (200 + 60 * (3 * index + k)) * t), 16000, format="OGG")
    shutil.copyfile(root / "aa/alpha/a.ogg", root / "cc/alpha/a.ogg")
    return root


def test_recordings_read_the_catalogues_and_keep_each_file_once(tmp_path):
    table = L.recordings(write_source(tmp_path / "src"))
    # bb's MISSING file is not installed; cc/alpha/a.ogg is aa/alpha/a.ogg again.
    assert list(zip(table["language"], table["name"])) == [
        ("aa", "A"), ("aa", "B"), ("aa", "BA"), ("bb", "A"), ("bb", "B"), ("bb", "Q"), ("cc", "BA")]
    assert list(table["kind"]) == ["alpha", "alpha", "syllab", "alpha", "alpha", "alpha", "syllab"]
    assert list(table["label"]) == ["a", "b", "ba", "a", "b", "q", "ba"]
    items = L.select_items(tmp_path / "src", min_per_label=2)
    assert sorted(set(items["label"])) == ["a", "b", "ba"]  # q has one recording
    assert items.loc[items["label"] == "ba", "item_id"].tolist() == ["aa/syllab/ba", "cc/syllab/ba"]
    with pytest.raises(ValueError, match=r"no recording of language \['zz'\]"):
        L.select_items(tmp_path / "src", languages=["aa", "zz"])


def test_a_glyph_is_never_mirrored():
    """Letters are drawn without mirroring: a picture whose left is red stays red on the left
    for every item, where the pictures' own jitter mirrors some of them."""
    from PIL import Image

    picture = Image.new("RGBA", (40, 40), (0, 0, 255, 255))
    picture.paste((255, 0, 0, 255), (0, 0, 20, 40))

    def red_on_the_left(image):
        a = np.asarray(image).astype(float)
        columns = np.arange(a.shape[1])
        return (a[..., 0] * columns).sum() / a[..., 0].sum() < (a[..., 2] * columns).sum() / a[..., 2].sum()

    ids = [f"fr/alpha/{k}" for k in range(20)]
    assert all(red_on_the_left(K.draw_item(picture, i, 32, jitter=True, mirror=False)) for i in ids)
    assert not all(red_on_the_left(K.draw_item(picture, i, 32, jitter=True)) for i in ids)


@needs_rsvg
def test_glyphs_show_the_text_in_its_face():
    a, a_bold, ab = L.render_glyph("A", 0), L.render_glyph("A", 1), L.render_glyph("AB", 0)
    assert ab.width > 1.5 * a.width and abs(ab.height - a.height) <= 2
    ink = [(np.asarray(g)[..., 3] > 128).mean() for g in (a, a_bold)]
    assert ink[1] > ink[0]  # bold draws more of its box


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if shutil.which(K.RSVG) is None:
        pytest.skip(f"rsvg-convert is not installed ({K.INSTALL})")
    base = tmp_path_factory.mktemp("klettres")
    source = write_source(base / "src")
    dataset = L.load_klettres(seed=0, min_per_label=2, name="tiny", root=str(base / "datasets"),
                              source=str(source), split_fractions=(0.34, 0.33, 0.33))
    return base, dataset


def test_the_build_has_letters_as_labels_languages_as_groups_and_ordered_nodes(built):
    base, dataset = built
    items = pd.read_csv(base / "datasets" / "tiny" / ITEMS_FILE)
    assert len(items) == dataset.n_items == 6
    assert dataset.label_names == ["a", "b", "ba"] and dataset.group_names == ["aa", "bb", "cc"]
    assert list(items["text"]) == ["A", "A", "B", "B", "BA", "BA"]
    assert list(items["group"]) == ["aa", "bb", "aa", "bb", "aa", "cc"]
    image, audio = dataset.modalities["image"], dataset.modalities["audio"]
    # 32 px glyphs as 8 x 8 grey patches: 16 nodes of 64 pixels on a 4 x 4 grid.
    assert (np.diff(image.ptr) == 16).all() and image.x.shape[1] == 64
    assert image.pos[:16].tolist() == [[r, c] for r in range(4) for c in range(4)]
    # Frames in time (seconds, increasing within each recording).
    first = audio.pos[audio.ptr[0]:audio.ptr[1], 0]
    assert len(first) > 10 and (np.diff(first) > 0).all() and first[-1] < 1.0
    for label in range(3):  # split by label alone: one of each label's two items in two splits
        assert len(set(dataset.split[dataset.labels == label])) == 2
    record = (base / "datasets" / "tiny" / K.BUILD_FILE).read_text()
    assert '"builder": "klettres/1"' in record and '"syllables": 2' in record


def test_a_second_load_reads_the_cache(built, monkeypatch):
    base, first = built

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a cached dataset")

    monkeypatch.setattr(L, "build_klettres", no_build)
    args = {"min_per_label": 2, "name": "tiny", "root": str(base / "datasets"), "source": str(base / "src"),
            "split_fractions": (0.34, 0.33, 0.33)}
    again = L.load_klettres(seed=0, **args)
    assert np.array_equal(again.modalities["image"].x, first.modalities["image"].x)
    with pytest.raises(AssertionError, match="rebuilt"):  # other settings: another build
        L.load_klettres(seed=0, **{**args, "jitter": False})


def test_a_missing_package_is_named_with_its_install_command(tmp_path):
    with pytest.raises(K.SuiteDataError, match="klettres-data") as error:
        L.load_klettres(root=str(tmp_path / "datasets"), source=str(tmp_path / "absent"))
    assert "apt-get install -y ktuberling-data klettres-data librsvg2-bin fonts-dejavu-core" in str(error.value)
    assert not (tmp_path / "datasets" / "klettres").exists()


def test_a_missing_rsvg_convert_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(K, "RSVG", "rsvg-convert-not-installed")
    with pytest.raises(K.SuiteDataError, match="librsvg2-bin"):
        L.load_klettres(root=str(tmp_path / "datasets"), source=str(write_source(tmp_path / "src")), min_per_label=2)


def test_the_data_option_builds_what_the_function_builds_by_default():
    from test_config import compose_cfg

    defaults = inspect.signature(L.load_klettres).parameters
    cfg = compose_cfg(["data=klettres", "data.seed=3"])
    assert cfg.data.pairing == "label" and cfg.data.loader.seed == 3
    for key in ("languages", "min_per_label", "image_size", "jitter", "text_encoder", "image_encoder",
                "audio_encoder", "featurize_options", "name", "root", "source", "split_fractions"):
        value = cfg.data.loader[key]
        value = list(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
        default = defaults[key].default
        assert value == (list(default) if isinstance(default, tuple) else default), key


def test_a_missing_font_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "FONT_DIR", tmp_path / "no-fonts")
    if shutil.which(K.RSVG) is None:
        pytest.skip(f"rsvg-convert is not installed ({K.INSTALL})")
    with pytest.raises(K.SuiteDataError, match="fonts-dejavu-core"):
        L.load_klettres(root=str(tmp_path / "datasets"), source=str(write_source(tmp_path / "src")), min_per_label=2)


@pytest.mark.skipif(not (L.KLETTRES / "fr" / "sounds.xml").is_file(),
                    reason=f"the Debian package klettres-data is not installed ({K.INSTALL})")
def test_the_suite_small_build_keeps_letters_in_every_split():
    """``python -m experiments.suite --small --datasets klettres`` builds a subset: it must keep
    letters, each with enough recordings for train, val and test."""
    from experiments.suite import SMALL_DATA
    from test_config import compose_cfg

    loader = compose_cfg(["data=klettres", *SMALL_DATA["klettres"]]).data.loader
    assert loader.name != "klettres"  # its own folder, beside the full build
    items = L.select_items(languages=list(loader.languages), min_per_label=loader.min_per_label)
    counts = items["label"].value_counts()
    assert len(counts) >= 20 and counts.min() >= 3
