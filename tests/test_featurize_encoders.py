"""Pretrained and user-supplied encoders of mmgnn.featurize (issue 19): per encoder the output
shape and ``pos`` on a real image or clip, determinism, the cache, and a known answer proving
the weights are the pretrained ones (ImageNet classes of scikit-learn's bundled photos for
EfficientNet-Lite0, the pitch of a 440 Hz tone for CREPE, the bundled MiniLM through the
Hugging Face route); the Hugging Face and TorchScript routes load real files written here."""
import io

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from mmgnn.featurize import (
    INFO_FILE, CrepeFeaturizer, EfficientNetLiteFeaturizer, FeaturizeError, HFAudioFeaturizer,
    HFImageFeaturizer, HFTextFeaturizer, ImageFeaturizer, TextFeaturizer, TorchScriptAudioFeaturizer,
    TorchScriptImageFeaturizer, featurize, load_featurizers,
)
from mmgnn.featurize.audio_pretrained import crepe_bin_frequency
from mmgnn.featurize.image_cnn import LITE0_MEAN, LITE0_STD
from mmgnn.models.text_encoder import minilm_path

RATE = 16000
PALACE, DAISY = 698, 985  # ImageNet-1k class indices ("palace", "daisy")


def jpeg_bytes(name):
    buffer = io.BytesIO()
    Image.fromarray(load_sample_image(name)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def png_bytes(pixels, **save):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def wav_bytes(wave, rate=RATE):
    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(wave, dtype=np.float32), rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def tone(freq, seconds, rate=RATE):
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


@pytest.fixture(scope="module")
def lite0(one_thread):
    return EfficientNetLiteFeaturizer(device="cpu")


@pytest.fixture(scope="module")
def crepe(one_thread):
    return CrepeFeaturizer(device="cpu")


# ----------------------------------------------------------------------------- EfficientNet-Lite0


def test_lite0_knows_imagenet_classes_of_the_bundled_photos(lite0):
    """Random weights would not name these: the weights are the pretrained ones."""
    batch = torch.stack([lite0.decode(jpeg_bytes("china.jpg")), lite0.decode(jpeg_bytes("flower.jpg"))])
    assert lite0.logits(batch).argmax(dim=1).tolist() == [PALACE, DAISY]


def test_lite0_tokens_are_the_cells_of_the_feature_map(lite0):
    content = jpeg_bytes("china.jpg")
    [item] = lite0.compute([lite0.decode(content)])
    assert item["x"].shape == (49, 1280) and item["x"].dtype == np.float32
    rows, cols = np.divmod(np.arange(49), 7)
    np.testing.assert_array_equal(item["pos"], np.stack([rows, cols], axis=1))
    features = lite0.features(lite0.decode(content)[None])[0]  # [1280, 7, 7]
    np.testing.assert_allclose(item["x"][2 * 7 + 5], features[:, 2, 5].numpy(), rtol=1e-6)
    finer = EfficientNetLiteFeaturizer(layer="block10", device="cpu")
    finer.model = lite0.model  # the same weights, another layer
    [fine] = finer.compute([finer.decode(content)])
    assert fine["x"].shape == (196, 112) and fine["pos"][-1].tolist() == [13, 13]


def test_lite0_is_deterministic_and_batch_independent(lite0):
    images = [lite0.decode(jpeg_bytes(name)) for name in ("china.jpg", "flower.jpg")]
    together = lite0.compute(images)
    alone = lite0.compute(images[1:])
    again = lite0.compute(images)
    np.testing.assert_array_equal(together[0]["x"], again[0]["x"])
    np.testing.assert_array_equal(together[1]["x"], alone[0]["x"])  # on a CPU each image runs alone


def test_exif_orientation_is_applied(lite0):
    """A picture stored sideways with an EXIF 'rotate 90' tag is featurized upright."""
    pixels = np.random.default_rng(0).integers(0, 255, (24, 40, 3))
    upright = np.rot90(pixels, k=-1)  # what a viewer shows for orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged = png_bytes(pixels, exif=exif.tobytes())
    for featurizer in (ImageFeaturizer(size=8, patch=4, mode="rgb"), lite0):
        [a] = featurizer.compute([featurizer.decode(tagged)])
        [b] = featurizer.compute([featurizer.decode(png_bytes(upright))])
        np.testing.assert_allclose(a["x"], b["x"], atol=1e-6)


def test_lite0_crops_the_centre_and_refuses_bad_options(lite0):
    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, 20:60] = 255  # the central square is white, the sides black
    image = lite0.decode(png_bytes(wide))
    assert image.shape == (3, 224, 224)
    np.testing.assert_allclose(image, (1 - LITE0_MEAN) / LITE0_STD, atol=1e-5)
    with pytest.raises(ValueError, match="layer 'block16'"):
        EfficientNetLiteFeaturizer(layer="block16")
    with pytest.raises(ValueError, match="crop"):
        EfficientNetLiteFeaturizer(crop=0.0)


# ----------------------------------------------------------------------------- TorchScript / HF images


class Lite0Features(torch.nn.Module):
    """EfficientNet-Lite0 up to its head, as a user would export it."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x)


def test_torchscript_route_reproduces_the_bundled_cnn(lite0, tmp_path):
    path = tmp_path / "lite0.pt"
    torch.jit.save(torch.jit.trace(Lite0Features(lite0.model), torch.zeros(1, 3, 224, 224)), str(path))
    scripted = TorchScriptImageFeaturizer(str(path), mean=(LITE0_MEAN,) * 3, std=(LITE0_STD,) * 3, device="cpu")
    content = jpeg_bytes("flower.jpg")
    [via_file] = scripted.compute([scripted.decode(content)])
    [bundled] = lite0.compute([lite0.decode(content)])
    np.testing.assert_allclose(via_file["x"], bundled["x"], atol=1e-5)
    np.testing.assert_array_equal(via_file["pos"], bundled["pos"])
    assert len(scripted.versions()["weights_sha256"]) == 64
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        TorchScriptImageFeaturizer(str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="does not exist"):
        TorchScriptImageFeaturizer(str(tmp_path / "none.pt"))


@pytest.fixture(scope="module")
def hf_vision(tmp_path_factory):
    """Two small Hugging Face vision folders (random weights) saved as a user would."""
    from transformers import (
        ConvNextImageProcessor, ResNetConfig, ResNetModel, ViTConfig, ViTImageProcessor, ViTModel,
    )

    root = tmp_path_factory.mktemp("hf_vision")
    torch.manual_seed(0)
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")) \
        .save_pretrained(root / "resnet")
    ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875).save_pretrained(root / "resnet")
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8)).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    return root


def test_hf_image_route_gives_feature_map_cells_and_vit_patches(hf_vision):
    content = jpeg_bytes("china.jpg")
    resnet = HFImageFeaturizer(str(hf_vision / "resnet"), device="cpu")
    [cells] = resnet.compute([resnet.decode(content)])
    assert cells["x"].shape == (64, 16) and cells["pos"][-1].tolist() == [7, 7]  # 64 px / 8 -> 8 x 8
    [again] = resnet.compute([resnet.decode(content)])
    np.testing.assert_array_equal(cells["x"], again["x"])
    vit = HFImageFeaturizer(str(hf_vision / "vit"), device="cpu")
    [patches] = vit.compute([vit.decode(content)])
    assert patches["x"].shape == (16, 16) and patches["pos"][-1].tolist() == [3, 3]  # class token dropped
    earlier = HFImageFeaturizer(str(hf_vision / "vit"), layer=0, device="cpu")
    [embedded] = earlier.compute([earlier.decode(content)])
    assert embedded["x"].shape == (16, 16) and not np.allclose(embedded["x"], patches["x"])
    with pytest.raises(ValueError, match="not a Hugging Face model folder"):
        HFImageFeaturizer(str(hf_vision))


# ----------------------------------------------------------------------------- text through the HF route


def test_hf_text_route_on_the_bundled_minilm_equals_the_minilm_featurizer(one_thread):
    minilm = TextFeaturizer(device="cpu")
    generic = HFTextFeaturizer(str(minilm_path()), device="cpu")
    texts = [b"the cat sat on the mat", b"a longer sentence, padded beside the short one"]
    ours = minilm.compute([minilm.decode(t) for t in texts])
    theirs = generic.compute([generic.decode(t) for t in texts])
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a["x"], b["x"], atol=1e-5)
        np.testing.assert_array_equal(a["pos"], b["pos"])
        assert "ids" not in b


def test_a_texts_states_do_not_depend_on_its_batch(one_thread):
    minilm = TextFeaturizer(device="cpu")
    texts = [minilm.decode(t.encode()) for t in ("a handwritten three", "the digit two, written by hand",
                                                 "a scanned one", "someone wrote seven")]
    alone = [minilm.compute([t])[0]["x"] for t in texts]
    for a, b in zip(alone, minilm.compute(texts)):
        np.testing.assert_array_equal(a, b["x"])


# ----------------------------------------------------------------------------- CREPE


def test_crepe_hears_440_hz(crepe):
    """The pitch network's strongest bin on a 440 Hz tone is within one bin (20 cents) of it."""
    pitch = CrepeFeaturizer(layer="pitch", device="cpu")
    pitch.network = crepe.network
    [item] = pitch.compute([pitch.decode(wav_bytes(tone(440.0, 0.5)))])
    assert item["x"].shape == (51, 360)
    found = crepe_bin_frequency(item["x"][5:-5].argmax(axis=1))
    cents = 1200 * np.log2(np.median(found) / 440.0)
    assert abs(cents) < 20, found


def test_crepe_frames_times_and_determinism(crepe):
    content = wav_bytes(tone(300.0, 1.0, rate=22050), rate=22050)  # resampled to 16 kHz
    [item] = crepe.compute([crepe.decode(content)])
    assert item["x"].shape == (1 + RATE // 160, 256)
    np.testing.assert_allclose(item["pos"][:, 0], np.arange(101) * 0.01, atol=1e-6)
    short = crepe.decode(wav_bytes(tone(500.0, 0.3)))
    together = crepe.compute([crepe.decode(content), short])
    np.testing.assert_array_equal(together[0]["x"], item["x"])
    assert together[1]["x"].shape == (1 + 4800 // 160, 256)
    with pytest.raises(ValueError, match="crepe layer"):
        CrepeFeaturizer(layer="conv9")


# ----------------------------------------------------------------------------- TorchScript / HF audio


class RawFrames(torch.nn.Module):
    """Non-overlapping 10 ms frames of the waveform itself: [1, n] -> [1, n // 160, 160]."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave[:, : wave.shape[1] // 160 * 160].reshape(1, -1, 160)


def test_torchscript_audio_route(tmp_path):
    path = tmp_path / "frames.pt"
    torch.jit.save(torch.jit.script(RawFrames()), str(path))
    featurizer = TorchScriptAudioFeaturizer(str(path), device="cpu")
    wave = tone(440.0, 0.5)
    [item] = featurizer.compute([featurizer.decode(wav_bytes(wave))])
    assert item["x"].shape == (50, 160)
    np.testing.assert_allclose(item["x"].ravel(), wave[:8000], atol=1e-6)
    np.testing.assert_allclose(item["pos"][:, 0], np.arange(50) * 0.01, atol=1e-6)


def test_hf_audio_route(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    Wav2Vec2FeatureExtractor(sampling_rate=8000).save_pretrained(tmp_path / "w2v")
    featurizer = HFAudioFeaturizer(str(tmp_path / "w2v"), device="cpu")
    assert featurizer.sample_rate == 8000
    [item] = featurizer.compute([featurizer.decode(wav_bytes(tone(440.0, 0.5)))])  # 4000 samples at 8 kHz
    assert item["x"].shape == (198, 16)  # (4000 - 10) // 5 + 1 = 799 -> (799 - 8) // 4 + 1 = 198
    np.testing.assert_allclose(item["pos"][:, 0], np.arange(198) * 0.5 / 198, atol=1e-6)


# ----------------------------------------------------------------------------- batching, cache, errors


def write_media(folder, n=5):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        (folder / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 255, (20 + i, 30, 3))))
        (folder / f"{i}.wav").write_bytes(wav_bytes(tone(220.0 * (i + 1), 0.2)))
        rows.append({"item_id": f"m{i}", "picture": f"{i}.png", "sound": f"{i}.wav"})
    pd.DataFrame(rows).to_csv(folder / "items.csv", index=False)
    return folder / "items.csv"


class Counting(EfficientNetLiteFeaturizer):
    batches: list[int] = []

    def compute(self, decoded):
        Counting.batches.append(len(decoded))
        return super().compute(decoded)


def test_pretrained_encoders_batch_cache_and_record(tmp_path, lite0, crepe):
    manifest = write_media(tmp_path / "raw")
    image = Counting(device="cpu")
    image.model = lite0.model
    featurizers = {"picture": image, "sound": crepe}
    first = featurize(manifest, tmp_path / "out", featurizers, batch_size=2, progress=False)
    assert Counting.batches == [2, 2, 1] and (first["computed"], first["reused"]) == (10, 0)
    arrays = dict(np.load(tmp_path / "out" / "picture.npz"))
    assert arrays["x"].shape == (5 * 49, 1280) and arrays["pos"].shape == (5 * 49, 2)
    second = featurize(manifest, tmp_path / "out", featurizers, batch_size=2, progress=False)
    assert Counting.batches == [2, 2, 1] and (second["computed"], second["reused"]) == (0, 10)
    for key, value in np.load(tmp_path / "out" / "picture.npz").items():
        np.testing.assert_array_equal(value, arrays[key])
    # another layer is another cache entry
    third = featurize(manifest, tmp_path / "out", {"picture": lite0, "sound": CrepeFeaturizer(hop=320, device="cpu")},
                      progress=False)
    assert (third["computed"], third["reused"]) == (5, 5)
    loaded = load_featurizers(tmp_path / "out")
    assert loaded["sound"].settings() == {"kind": "audio", "encoder": "crepe", "model": "tiny", "layer": "conv5",
                                          "hop": 320, "silence_db": -60.0}
    assert (tmp_path / "out" / INFO_FILE).is_file()


class FailsOnFlatImages(torch.nn.Module):
    """A 4 x 4 feature map of the input; raises on a batch holding a flat (one-colour) image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.flatten(2).std(dim=2).amax(dim=1) == 0).any()):
            raise RuntimeError("cannot take this one")
        return x[:, :, ::56, ::56]


def test_an_encoder_failure_names_the_row_item_and_file(tmp_path):
    manifest = write_media(tmp_path / "raw")
    Image.new("RGB", (30, 30), (255, 255, 255)).save(tmp_path / "raw" / "3.png")
    path = tmp_path / "fails.pt"
    torch.jit.save(torch.jit.script(FailsOnFlatImages()), str(path))
    featurizers = {"picture": TorchScriptImageFeaturizer(str(path), device="cpu"),
                   "sound": CrepeFeaturizer(device="cpu")}
    with pytest.raises(FeaturizeError) as info:
        featurize(manifest, tmp_path / "out", featurizers, batch_size=4, progress=False)
    message = str(info.value)
    for word in ("row 3", "'m3'", "'picture'", "3.png", "encoder 'torchscript' failed", "cannot take this one"):
        assert word in message, message
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))
    done = featurize(manifest, tmp_path / "out", featurizers, batch_size=4, progress=False, skip_bad=True)
    assert done["items"] == 4 and done["skipped"] == 1
