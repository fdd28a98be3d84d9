"""Audio clips -> one node per frame of a log-mel spectrogram (dB of mel power)."""
from __future__ import annotations

import io

import numpy as np
import soundfile
import torch
import torchaudio

from mmgnn.featurize.base import Featurizer, package_versions
from mmgnn.featurize.manifest import ItemError


def read_clip(content: bytes, sample_rate: int, min_samples: int, silence_db: float) -> torch.Tensor:
    """File bytes -> float32 mono waveform ``[n]`` at ``sample_rate``: any format libsndfile
    reads, channels averaged, resampled (``torchaudio.functional.resample``). Raises
    ``ItemError`` for an unreadable file, a clip shorter than ``min_samples`` (after
    resampling), non-finite samples, or a peak below ``silence_db`` dBFS."""
    try:
        wave, rate = soundfile.read(io.BytesIO(content), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise ItemError(f"not an audio file libsndfile can read (WAV, FLAC, OGG, MP3, ...): {err}") from None
    mono = torch.from_numpy(wave).mean(dim=1)  # [frames, channels] -> [frames]
    if rate != sample_rate:
        mono = torchaudio.functional.resample(mono, rate, sample_rate)
    if mono.numel() < min_samples:
        raise ItemError(
            f"clip too short: {mono.numel()} samples at {sample_rate} Hz "
            f"({mono.numel() / sample_rate:.4f} s), fewer than one window of {min_samples}"
        )
    peak = float(mono.abs().max())
    if not np.isfinite(peak):
        raise ItemError("clip has non-finite samples")
    if peak == 0 or 20 * np.log10(peak) < silence_db:
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.1f}"
        raise ItemError(f"silent clip: peak {level} dBFS is below the silence level {silence_db} dBFS")
    return mono


class AudioFeaturizer(Featurizer):
    """A clip, mixed down to mono and resampled, as log-mel frames.

    Decoding reads any format libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...), averages
    the channels and resamples to ``sample_rate`` (``torchaudio.functional.resample``). Each
    node is one frame of ``torchaudio.transforms.MelSpectrogram`` (a ``window``-sample Hann
    window = FFT size, frames every ``hop`` samples, centred, ``mels`` HTK mel bands of power)
    in decibels, ``x = 10 log10(max(power, 1e-10))`` ``[mels]``, with ``pos`` = the frame's
    centre time in seconds (``frame * hop / sample_rate``). A clip of ``n`` samples (after
    resampling) has ``1 + n // hop`` frames.

    Args:
        sample_rate: the rate (Hz) every clip is resampled to.
        window: window and FFT length in samples (at ``sample_rate``).
        hop: samples between frames.
        mels: number of mel bands (node feature size).
        silence_db: a clip whose peak is below this level (dB full scale) is "silent": an error.
    """

    kind = "audio"
    encoder = "logmel"
    reads_files = True

    def __init__(
        self, sample_rate: int = 16000, window: int = 400, hop: int = 160, mels: int = 64, silence_db: float = -60.0
    ) -> None:
        if min(sample_rate, window, hop, mels) < 1:
            raise ValueError(f"audio sample rate, window, hop and mels must be positive, got "
                             f"{sample_rate}, {window}, {hop}, {mels}")
        self.sample_rate, self.window, self.hop, self.mels = sample_rate, window, hop, mels
        self.silence_db = float(silence_db)
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=window, win_length=window, hop_length=hop, n_mels=mels, power=2.0
        )
        self._db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)

    def versions(self) -> dict[str, str]:
        return {**package_versions("torchaudio", "soundfile"), "libsndfile": soundfile.__libsndfile_version__}

    def decode(self, content: bytes) -> torch.Tensor:
        """File bytes -> float32 mono waveform ``[n]`` at ``sample_rate``."""
        return read_clip(content, self.sample_rate, self.window, self.silence_db)

    def compute(self, decoded: list[torch.Tensor]) -> list[dict[str, np.ndarray]]:
        out = []
        with torch.no_grad():
            for wave in decoded:  # clips differ in length: one transform each (an FFT, cheap)
                frames = self._db(self._mel(wave)).T.contiguous()  # [n_frames, mels]
                times = torch.arange(frames.shape[0], dtype=torch.float32) * (self.hop / self.sample_rate)
                out.append({"x": frames.numpy().astype(np.float32), "pos": times[:, None].numpy()})
        return out
