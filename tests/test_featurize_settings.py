"""Featurizers save and load (issue 21, item 3): ``settings()`` is exactly the constructor's
arguments plus ``kind``/``encoder``, ``featurizer_from_settings`` rebuilds the same featurizer
(same settings, same output) for every registered encoder, the command line takes its defaults
from the classes, and ``featurize.json`` loads back (older files too)."""
import inspect
import io
import json

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from PIL import Image

from mmgnn.featurize import (
    INFO_FILE, AudioFeaturizer, ImageFeaturizer, featurize, featurizer_from_settings, load_featurizers, registered,
)
from mmgnn.featurize.__main__ import build_featurizers, main, parser
from mmgnn.models.text_encoder import minilm_path

RATE = 16000


def png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(wave, rate=RATE):
    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(wave, dtype=np.float32), rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


class Pool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 56)  # [B, 3, 4, 4]


class Frames(torch.nn.Module):
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave[:, : wave.shape[1] // 160 * 160].reshape(1, -1, 160)


@pytest.fixture(scope="module")
def local_models(tmp_path_factory):
    """A local file or folder for each route that loads one (hf:..., torchscript:...)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8)).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(root / "w2v")
    Wav2Vec2FeatureExtractor(sampling_rate=RATE).save_pretrained(root / "w2v")
    torch.jit.save(torch.jit.script(Pool()), str(root / "pool.pt"))
    torch.jit.save(torch.jit.script(Frames()), str(root / "frames.pt"))
    return {("text", "hf"): str(minilm_path()), ("image", "hf"): str(root / "vit"),
            ("audio", "hf"): str(root / "w2v"), ("image", "torchscript"): str(root / "pool.pt"),
            ("audio", "torchscript"): str(root / "frames.pt")}


# Non-default settings per encoder, so the round trip carries more than the defaults.
OPTIONS = {
    ("text", "minilm"): {"max_tokens": 12}, ("text", "hf"): {"max_tokens": 10},
    ("image", "patches"): {"size": 8, "patch": 4, "mode": "rgb"},
    ("image", "efficientnet-lite0"): {"layer": "block14", "crop": 1.0},
    ("image", "hf"): {"layer": 1}, ("image", "torchscript"): {"size": 112, "mean": (0.5, 0.5, 0.5)},
    ("audio", "logmel"): {"window": 256, "hop": 128, "mels": 16},
    ("audio", "crepe"): {"layer": "pitch", "hop": 320}, ("audio", "hf"): {"silence_db": -50.0},
    ("audio", "torchscript"): {"sample_rate": 8000},
}
CONTENT = {
    "text": "a small grey cat".encode(),
    "image": png_bytes(np.random.default_rng(0).integers(0, 255, (30, 40, 3))),
    "audio": wav_bytes(0.5 * np.sin(2 * np.pi * 330 * np.arange(8000) / RATE)),
}


def test_every_registered_encoder_has_round_trip_options():
    assert set(registered()) == set(OPTIONS)


@pytest.mark.parametrize("key", sorted(OPTIONS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_settings_rebuild_the_same_featurizer(key, local_models, one_thread):
    cls = registered()[key]
    path = {"path": local_models[key]} if key in local_models else {}
    runtime = {"device": "cpu"} if "device" in inspect.signature(cls.__init__).parameters else {}
    featurizer = cls(**path, **OPTIONS[key], **runtime)
    settings = featurizer.settings()
    assert set(settings) == {"kind", "encoder", *cls.setting_names()}
    assert (settings["kind"], settings["encoder"]) == key
    for name, value in {**path, **OPTIONS[key]}.items():
        assert settings[name] == (list(value) if isinstance(value, tuple) else value)
    recorded = json.loads(json.dumps(settings))  # as featurize.json keeps them
    rebuilt = featurizer_from_settings(recorded, device="cpu")
    assert type(rebuilt) is cls and rebuilt.settings() == settings
    content = CONTENT[key[0]]
    [a] = featurizer.compute([featurizer.decode(content)])
    [b] = rebuilt.compute([rebuilt.decode(content)])
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"no setting\(s\) \['resample'\]"):
        ImageFeaturizer.from_settings({"kind": "image", "encoder": "patches", "resample": "nearest"})
    with pytest.raises(ValueError, match=r"unknown image encoder 'vgg'; known: \["):
        featurizer_from_settings({"kind": "image", "encoder": "vgg"})
    with pytest.raises(ValueError, match="audio/logmel featurizer given to ImageFeaturizer"):
        ImageFeaturizer.from_settings(AudioFeaturizer().settings())


def test_settings_written_before_kind_and_encoder_still_load():
    old = featurizer_from_settings({"size": 8, "patch": 4, "mode": "grey", "resample": "bilinear"}, kind="image")
    assert old.settings() == {"kind": "image", "encoder": "patches", "size": 8, "patch": 4, "mode": "grey"}
    old = featurizer_from_settings({"sample_rate": 16000, "window": 400, "hop": 160, "mels": 64, "silence_db": -60.0,
                                    "mel_scale": "htk", "power": 2.0, "center": True}, kind="audio")
    assert old.settings() == AudioFeaturizer().settings()
    with pytest.raises(ValueError, match="only computes resample='bilinear'"):
        featurizer_from_settings({"size": 8, "patch": 4, "mode": "grey", "resample": "nearest"}, kind="image")


# ----------------------------------------------------------------------------- command line


def args_for(*extra):
    return parser().parse_args(["--manifest", "m.csv", "--out", "o", "--image", "picture", "--audio", "sound",
                                "--device", "cpu", *extra])


def test_cli_defaults_are_the_classes_defaults(monkeypatch):
    made = build_featurizers(args_for())
    assert made["picture"].settings() == ImageFeaturizer().settings()
    assert made["sound"].settings() == AudioFeaturizer().settings()
    monkeypatch.setattr(ImageFeaturizer.__init__, "__defaults__", (16, 4, "rgb"))
    assert build_featurizers(args_for())["picture"].settings() == {
        "kind": "image", "encoder": "patches", "size": 16, "patch": 4, "mode": "rgb"}
    assert "patches 16" in parser().format_help().replace("\n", " ").replace("  ", " ")


def test_cli_options_reach_the_chosen_encoder(local_models):
    made = build_featurizers(args_for("--image-encoder", "efficientnet-lite0", "--image-layer", "block10",
                                      "--image-crop", "1", "--audio-encoder", "crepe", "--audio-layer", "pitch"))
    assert made["picture"].settings() == {"kind": "image", "encoder": "efficientnet-lite0", "layer": "block10",
                                          "crop": 1.0}
    assert made["sound"].settings()["layer"] == "pitch"
    path = local_models[("image", "torchscript")]
    made = build_featurizers(args_for("--image-encoder", f"torchscript:{path}", "--image-mean", "0.5", "0.5", "0.5"))
    assert made["picture"].settings()["path"] == path and made["picture"].mean == (0.5, 0.5, 0.5)
    made = build_featurizers(args_for("--image-encoder", f"hf:{local_models[('image', 'hf')]}", "--image-layer", "1"))
    assert made["picture"].layer == 1


@pytest.mark.parametrize("extra, message", [
    (["--image-encoder", "efficientnet-lite0", "--image-patch", "4"],
     "--image-patch does not apply to --image-encoder efficientnet-lite0 (its options: --image-layer, --image-crop)"),
    (["--image-encoder", "hf"], "give a path: hf:DIR or torchscript:FILE"),
    (["--image-encoder", "vgg"], "unknown image encoder 'vgg'; known: ["),
    (["--audio-encoder", "crepe", "--audio-hop", "ten"], "--audio-hop: cannot read 'ten' as int"),
    (["--image-encoder", "hf:/no/such/folder"], "/no/such/folder does not exist"),
])
def test_cli_option_errors(extra, message, capsys):
    argv = ["--manifest", "m.csv", "--out", "o", "--image", "picture", "--audio", "sound", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- featurize.json


def test_featurize_json_loads_back_every_column(tmp_path, local_models):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.png").write_bytes(CONTENT["image"])
    (raw / "a.wav").write_bytes(CONTENT["audio"])
    pd.DataFrame([{"item_id": "a", "picture": "a.png", "sound": "a.wav", "still": "a.png"}]).to_csv(
        raw / "items.csv", index=False)
    path = local_models[("image", "torchscript")]
    written = {"picture": ImageFeaturizer(size=8, patch=2),
               "still": registered()[("image", "torchscript")](path, size=56, device="cpu"),
               "sound": AudioFeaturizer(mels=16)}
    featurize(raw / "items.csv", tmp_path / "out", written, cache=None, progress=False)
    info = json.loads((tmp_path / "out" / INFO_FILE).read_text())
    assert info["modalities"]["still"]["versions"]["weights_sha256"]
    loaded = load_featurizers(tmp_path / "out", device="cpu")
    assert {c: f.settings() for c, f in loaded.items()} == {c: f.settings() for c, f in written.items()}
    assert list(load_featurizers(tmp_path / "out" / INFO_FILE, ["sound"])) == ["sound"]
    with pytest.raises(ValueError, match=r"records no featurizer for column\(s\) \['text'\]"):
        load_featurizers(tmp_path / "out", ["text"])
    with pytest.raises(FileNotFoundError, match="no featurize.json"):
        load_featurizers(raw)
    # the file behind a path changed since: an error, not silently other features
    info["modalities"]["still"]["versions"]["weights_sha256"] = "0" * 64
    (tmp_path / "out" / INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="column 'still': the encoder's weights have changed"):
        load_featurizers(tmp_path / "out")
