"""The development suite: the KTuberling datasets (built from Debian's packages through
``mmgnn.featurize``) and ``python -m experiments.suite`` (validation scores, ranks, controls)."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from mmgnn.analysis import suite as S
from mmgnn.data.dataset import MultimodalDataset
from mmgnn.data.folder import ITEMS_FILE
from mmgnn.featurize import suite_data as K

HAVE_KTUBERLING = (K.KTUBERLING / "sounds").is_dir() and (K.KTUBERLING / "pics").is_dir()
HAVE_RSVG = shutil.which(K.RSVG) is not None
needs_debian = pytest.mark.skipif(
    not (HAVE_KTUBERLING and HAVE_RSVG),
    reason=f"the Debian packages ktuberling-data and librsvg2-bin are not installed ({K.INSTALL})")
LANGUAGES, OBJECTS = ["de", "en", "fr"], ["eye", "hat", "nose"]


# ----------------------------------------------------------------------------- the text and images
@pytest.mark.parametrize("sound,file,prefixes,expected", [
    ("eyebrow", "fr/patate_sourcil.wav", {"patate"}, ("sourcil", "patate", True)),
    ("egypt_camel", "fr/egypte_chameau.wav", {"egypte"}, ("chameau", "egypte", True)),
    ("pizzeria_brocolli", "el/pizzeria_broccolli.ogg", {"pizzeria"}, ("broccolli", "pizzeria", False)),
    ("shoe", "de/shoes.ogg", set(), ("shoes", "", False)),
    ("tux-apple", "ca/apple.ogg", set(), ("apple", "", False)),
    ("sunglasses", "sr/naocare_za_sunce.ogg", set(), ("naocare za sunce", "", True)),
])
def test_file_word_takes_the_word_a_file_name_spells(sound, file, prefixes, expected):
    assert K.file_word(sound, file, prefixes) == expected


def test_each_item_gets_its_own_image_and_the_same_one_again():
    from PIL import Image

    picture = Image.new("RGBA", (40, 20), (255, 0, 0, 255))
    a = np.asarray(K.draw_item(picture, "fr/eye", 32, jitter=True))
    assert a.shape == (32, 32, 3)
    assert np.array_equal(a, np.asarray(K.draw_item(picture, "fr/eye", 32, jitter=True)))
    assert not np.array_equal(a, np.asarray(K.draw_item(picture, "de/eye", 32, jitter=True)))
    plain = np.asarray(K.draw_item(picture, "fr/eye", 32, jitter=False))
    assert np.array_equal(plain, np.asarray(K.draw_item(picture, "de/eye", 32, jitter=False)))


# ----------------------------------------------------------------------------- the build
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small build of the real dataset: 3 languages x 3 objects."""
    if not (HAVE_KTUBERLING and HAVE_RSVG):
        pytest.skip(f"the Debian packages ktuberling-data and librsvg2-bin are not installed ({K.INSTALL})")
    root = tmp_path_factory.mktemp("datasets")
    dataset = K.load_ktuberling(seed=0, languages=LANGUAGES, objects=OBJECTS, name="tiny", root=str(root))
    return root, dataset


@needs_debian
def test_the_small_build_has_languages_as_groups_and_objects_as_labels(tiny):
    root, dataset = tiny
    assert isinstance(dataset, MultimodalDataset) and dataset.name == "tiny"
    items = pd.read_csv(root / "tiny" / ITEMS_FILE)
    assert len(items) == dataset.n_items == 9
    assert sorted(items["group"].unique()) == LANGUAGES and dataset.group_names == LANGUAGES
    assert sorted(items["label"].unique()) == OBJECTS and dataset.label_names == OBJECTS
    assert list(items["item_id"]) == [f"{g}/{l}" for l, g in zip(items["label"], items["group"])]
    assert set(items["text_source"]) <= {"word", "name"}
    assert items.loc[items["group"] == "fr", "text"].tolist() == ["oeil", "chapeau", "nez"]
    assert items.loc[items["group"] == "en", "text"].tolist() == ["eye", "hat", "nose"]
    for name, dim, pos_dim in (("text", 384, 1), ("image", 320, 2), ("audio", 64, 1)):
        with np.load(root / "tiny" / f"{name}.npz") as npz:
            ptr, x, pos = npz["ptr"], npz["x"], npz["pos"]
        assert ptr.shape == (10,) and ptr[0] == 0 and ptr[-1] == len(x) and (np.diff(ptr) > 0).all()
        assert x.shape[1] == dim and x.dtype == np.float32 and pos.shape == (len(x), pos_dim)
    assert (np.diff(dataset.modalities["image"].ptr) == 49).all()  # EfficientNet-Lite0 block15: 7 x 7 cells
    # Split by label alone: each object's three recordings go to train, val and test.
    for label in range(3):
        assert sorted(dataset.split[dataset.labels == label]) == ["test", "train", "val"]
    assert list(dataset.items["split"]) == list(dataset.split)


@needs_debian
def test_a_second_load_reads_the_cache_and_the_split_follows_the_seed(tiny, monkeypatch):
    root, first = tiny

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a cached dataset")

    monkeypatch.setattr(K, "build_ktuberling", no_build)
    again = K.load_ktuberling(seed=0, languages=LANGUAGES, objects=OBJECTS, name="tiny", root=str(root))
    assert np.array_equal(again.modalities["audio"].x, first.modalities["audio"].x)
    assert list(again.split) == list(first.split)
    other = K.load_ktuberling(seed=1, languages=LANGUAGES, objects=OBJECTS, name="tiny", root=str(root))
    assert list(other.items["item_id"]) == list(first.items["item_id"])
    assert list(other.split) != list(first.split)
    with pytest.raises(AssertionError, match="rebuilt"):  # other settings: another build
        K.load_ktuberling(seed=0, languages=LANGUAGES, objects=OBJECTS, name="tiny", root=str(root), jitter=False)


@needs_debian
def test_the_data_option_builds_under_the_outputs_root(tiny, tmp_path, monkeypatch):
    root, _ = tiny
    from test_config import compose_cfg

    cfg = compose_cfg(["data=ktuberling", f"data.loader.root={root}", "data.loader.name=tiny",
                       f"data.loader.languages=[{','.join(LANGUAGES)}]", f"data.loader.objects=[{','.join(OBJECTS)}]",
                       "data.seed=1"])
    assert cfg.data.pairing == "label" and cfg.data.loader.seed == 1
    dataset = instantiate(cfg.data.loader)
    assert dataset.n_items == 9 and dataset.group_names == LANGUAGES
    small = compose_cfg(["data=ktuberling_small"]).data.loader
    assert small.name == "ktuberling_small" and list(small.objects) == list(K.FACE_OBJECTS)
    monkeypatch.setenv("MMGNN_HOME", str(tmp_path / "home"))
    assert K.datasets_root() == tmp_path / "home" / "datasets"


def test_the_data_options_build_what_the_function_builds_by_default():
    import inspect

    from test_config import compose_cfg

    defaults = inspect.signature(K.load_ktuberling).parameters
    loader = compose_cfg(["data=ktuberling"]).data.loader
    for key in ("languages", "objects", "min_per_label", "image_size", "jitter", "text_encoder", "image_encoder",
                "audio_encoder", "featurize_options", "name", "root", "source", "split_fractions"):
        value = loader[key]
        value = list(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
        default = defaults[key].default
        assert value == (list(default) if isinstance(default, tuple) else default), key


def test_a_missing_package_is_named_with_its_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(K, "KTUBERLING", tmp_path / "absent")
    with pytest.raises(K.SuiteDataError, match="ktuberling-data") as error:
        K.load_ktuberling(root=str(tmp_path / "datasets"), languages=["en"])
    assert "apt-get install -y ktuberling-data klettres-data librsvg2-bin fonts-dejavu-core" in str(error.value)
    assert str(tmp_path / "absent" / "sounds") in str(error.value)
    assert not (tmp_path / "datasets" / "ktuberling").exists()


@pytest.mark.skipif(not HAVE_KTUBERLING, reason=f"the Debian package ktuberling-data is not installed ({K.INSTALL})")
def test_a_missing_rsvg_convert_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(K, "RSVG", "rsvg-convert-not-installed")
    with pytest.raises(K.SuiteDataError, match="librsvg2-bin"):
        K.load_ktuberling(root=str(tmp_path), languages=["en"], objects=["eye", "nose", "hat"], min_per_label=1)


# ----------------------------------------------------------------------------- the scores
def test_candidates_come_from_strings_and_files(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("digits_settings: [pe=index, model.readout=query]\ninfonce: loss=infonce\n")
    found = S.parse_candidates(["defaults", "gnn=mlp skip=none", str(file)])
    assert found == [S.Candidate("defaults"), S.Candidate("gnn=mlp skip=none", ("gnn=mlp", "skip=none")),
                     S.Candidate("digits_settings", ("pe=index", "model.readout=query")),
                     S.Candidate("infonce", ("loss=infonce",))]
    with pytest.raises(ValueError, match="more than once"):
        S.parse_candidates(["defaults", ""])
    assert "=" not in S.slug("gnn=mlp skip=none")


def test_score_keys_name_each_modality_alone():
    keys = S.score_keys(["text", "image", "audio"])
    assert keys == {"fused acc": "best_val/fused/acc",
                    "text alone": "best_val/missing/image_and_audio/fused/acc",
                    "image alone": "best_val/missing/text_and_audio/fused/acc",
                    "audio alone": "best_val/missing/text_and_image/fused/acc",
                    "mAP": "best_val/retrieval/map"}
    assert S.score_keys(["a", "b"], split="test")["a alone"] == "test/missing/b/fused/acc"


def test_ranks_per_dataset_and_mean_rank():
    scores = pd.DataFrame([
        {"candidate": "a", "dataset": "x", "rank_value": 0.9}, {"candidate": "a", "dataset": "x", "rank_value": 0.7},
        {"candidate": "b", "dataset": "x", "rank_value": 0.6}, {"candidate": "a", "dataset": "y", "rank_value": 0.1},
        {"candidate": "b", "dataset": "y", "rank_value": 0.5},
    ])
    table = S.rank_table(scores, "all", ["x", "y", "z"], ["a", "b", "c"])
    assert list(table.columns) == ["x", "y", "mean rank", "mean score"]  # no run on z: no column
    assert table.loc["a", "x"] == 1 and table.loc["b", "y"] == 1 and table.loc["c", "x"] == 3  # c: no run
    assert table.loc["a", "mean rank"] == 1.5 == table.loc["b", "mean rank"]
    assert list(table.index) == ["b", "a", "c"]  # equal mean ranks: the higher mean score first
    assert table.loc["a", "mean score"] == pytest.approx(0.45) and table.loc["b", "mean score"] == pytest.approx(0.55)
    assert S.rank_value({"fused acc": 1.0, "x alone": 0.5, "y alone": float("nan"), "mAP": 0.0}, "alone") == 0.5


def test_the_linear_control_reads_nodes_in_order():
    from mmgnn.data.positional import make_positional

    dataset = make_positional(n_items=240, n_classes=4, seq_len=6, side=3, dim=4, noise=0.1, seed=0)
    control = S.linear_control(dataset, "val")
    assert set(control) == {"fused acc", "mAP"} | {f"{m} alone" for m in dataset.modality_names}
    assert all(control[f"{m} alone"] > 0.9 for m in dataset.modality_names)  # order is the class


# ----------------------------------------------------------------------------- the command
def test_the_suite_runs_end_to_end_and_shows_test_numbers_only_with_test(tmp_path, monkeypatch, capsys):
    from experiments import suite

    monkeypatch.setenv("MMGNN_HOME", str(tmp_path / "home"))
    args = ["--small", "--datasets", "synthetic", "synthetic_positional", "--candidates", "defaults", "gnn=mlp",
            "--seeds", "0", "1"]
    assert suite.main([*args, "--out", str(tmp_path / "val"), "--markdown", str(tmp_path / "page.md")]) == 0
    printed = capsys.readouterr().out
    scores = pd.read_csv(tmp_path / "val" / "scores.csv")
    assert len(scores) == 4  # 2 candidates x 2 datasets x 1 seed (--small: one seed)
    assert set(scores["candidate"]) == {"defaults", "gnn=mlp"}
    assert set(scores["dataset"]) == {"synthetic", "synthetic_positional"}
    synthetic = scores[scores["dataset"] == "synthetic"]
    for column in ("fused acc", "text alone", "image alone", "audio alone", "mAP"):
        assert synthetic[column].between(0, 1).all(), column
    assert scores.loc[scores["dataset"] == "synthetic_positional", ["seq alone", "grid alone"]].notna().all().all()
    page = (tmp_path / "val" / "suite.md").read_text()
    assert "| defaults |" in page and "| gnn=mlp |" in page and page.count("| linear control |") == 2
    assert "| candidate | fused acc | text alone | image alone | audio alone | mAP |" in page
    assert "| candidate | synthetic | synthetic_positional | mean rank | mean score |" in page
    # --markdown: the same tables under the command that wrote them (docs/results pages)
    written = (tmp_path / "page.md").read_text()
    assert "- Written by: `python -m experiments.suite --small --datasets synthetic" in written
    assert page.split("## synthetic (validation")[1].strip() in written
    for text in (printed, page, (tmp_path / "val" / "scores.csv").read_text(),
                 (tmp_path / "val" / "controls.csv").read_text()):
        assert not re.search(r"\btest/|test split|\(test\b|test\.md", text, flags=re.I), "test numbers without --test"
    assert not (tmp_path / "val" / "test.md").exists()

    # Again with --test: the finished runs are reused, and the chosen candidate alone gets test rows.
    assert suite.main([*args, "--out", str(tmp_path / "both"), "--test"]) == 0
    printed = capsys.readouterr().out
    chosen = page.split("Chosen: **")[1].split("**")[0]
    test_page = (tmp_path / "both" / "test.md").read_text()
    assert f"the chosen candidate ({chosen}) only" in test_page and test_page in printed
    others = {"defaults", "gnn=mlp"} - {chosen}
    assert all(f"| {o} |" not in test_page for o in others)
    assert test_page.count(f"| {chosen} |") == 2 and test_page.count("| linear control |") == 2
    logs = "".join(p.read_text() for p in (tmp_path / "both" / "logs").glob("*.log"))
    assert "already has FINISHED run" in logs  # nothing trained twice


def test_untracked_job_folders_are_read_too(tmp_path):
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("seed: 2\ndata:\n  seed: ${seed}\n")
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices:\n      data: digits\n")
    (job / "test_metrics.json").write_text('{"metrics": {"test/fused/acc": 0.5}}')
    (tmp_path / "sweep" / "1" / ".hydra").mkdir(parents=True)  # a job that never finished
    (tmp_path / "sweep" / "1" / ".hydra" / "config.yaml").write_text("seed: 3\ndata:\n  seed: 0\n")
    (tmp_path / "sweep" / "1" / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  runtime:\n    choices:\n      data: digits\n")
    frame = S.folder_frame(tmp_path / "sweep", "defaults", ["best_val/fused/acc", "test/fused/acc"])
    first, second = frame.iloc[0], frame.iloc[1]
    assert (first["dataset"], first["seed"], first["data.seed"], first["status"]) == ("digits", 2, 2, "FINISHED")
    assert np.isnan(first["metrics.best_val/fused/acc"]) and first["metrics.test/fused/acc"] == 0.5
    assert (second["data.seed"], second["status"]) == (0, "FAILED")
