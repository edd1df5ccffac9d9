"""What real uploads do to a clip, and whether its latent stays put; long files; out-of-domain audio.

- Transforms: start offsets (silence before the music), an MP3 round trip at 128 kbit/s, 44.1 kHz
  stereo, +-6 dB. A transformed clip is searched among the untransformed set: it should find itself.
- Long files: 30 s made of one family's 4 s clips (different melodies), with and without 20 % of
  speech or silence; the pooled latent should sit nearest that family's centroid.
- Out of domain: the in-domain score should pass held-out-bank clips and fail speech (espeak-ng,
  in voices and sentences training never speaks), noise and pure tones.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch

from service.ml.audio import normalise_loudness, resample
from service.ml.data.negatives import coloured_noise
from service.ml.data.speech import EVALUATION_SENTENCES, EVALUATION_VOICES
from service.ml.evaluation import metrics
from service.ml.evaluation.sets import ClipSet, band_summary
from service.ml.pipeline import Pipeline

OFFSETS_MS = (16, 32, 50, 100, 250, 500)
MP3_BITRATE_LEVEL = 0.2  # libsndfile's MP3 level for 128 kbit/s CBR at 16 kHz (the report measures it)
LONG_SECONDS = 30.0
RECORDED_SPEECH_DIR = Path("/usr/share/sounds/alsa")


def transforms(pipeline: Pipeline, clips: ClipSet) -> dict:
    rate = pipeline.config.sample_rate
    cases = {f"offset_{ms}ms": (lambda a, ms=ms: _delay(a, ms, rate), rate) for ms in OFFSETS_MS}
    cases["mp3_128k"] = (lambda a: _mp3(a, rate), rate)
    cases["stereo_44k1"] = (lambda a: _stereo_44k1(a, rate), 44_100)
    cases["gain_plus_6db"] = (lambda a: a * 10 ** (6 / 20), rate)
    cases["gain_minus_6db"] = (lambda a: a * 10 ** (-6 / 20), rate)
    report = {}
    for name, (transform, out_rate) in cases.items():
        changed = [transform(a) for a in clips.audio]
        latents = np.concatenate(
            [pipeline.encode_batch(changed[i : i + 64], out_rate) for i in range(0, len(changed), 64)]
        )
        at_model_rate = np.stack([_mono_at(a, out_rate, rate, len(clips.audio[0])) for a in changed])
        baseline = clips.zscore(band_summary(pipeline, at_model_rate))
        report[name] = {
            "self_nearest_rate": _self_nearest(latents, clips.latents),
            "median_self_similarity": float(np.median(metrics.cosine(latents, clips.latents))),
            "baseline_self_nearest_rate": _self_nearest(baseline, clips.baseline),
        }
    report["mp3_bitrate_kbps"] = _mp3_bitrate(clips.audio[0], rate)
    return report


def long_files(pipeline: Pipeline, clips: ClipSet, speech: list[np.ndarray], files_per_family: int) -> dict:
    rate = pipeline.config.sample_rate
    families = sorted(set(clips.column("family")))
    centroids = np.stack([metrics.unit(clips.latents[clips.families == f]).mean(0) for f in families])
    baseline_centroids = np.stack([clips.baseline[clips.families == f].mean(0) for f in families])
    rng = np.random.default_rng(0)
    report = {}
    for variant in ("clean", "with_speech_or_silence"):
        hits, baseline_hits = [], []
        for family in families:
            members = np.flatnonzero(clips.families == family)
            for _ in range(files_per_family):
                audio = _long_file(clips.audio[rng.permutation(members)], rate, rng)
                if variant != "clean":
                    audio = _add_interruptions(audio, speech, rate, rng)
                latent = pipeline.encode(audio, rate)
                hits.append(families[int(np.argmax(centroids @ metrics.unit(latent[None])[0]))] == family)
                summary = clips.zscore(_file_band_summary(pipeline, audio, clips.audio.shape[1]))[0]
                baseline_hits.append(
                    families[int(np.argmin(np.linalg.norm(baseline_centroids - summary, axis=1)))] == family
                )
        report[variant] = {
            "files": len(hits),
            "nearest_family_rate": float(np.mean(hits)),
            "baseline_nearest_family_rate": float(np.mean(baseline_hits)),
        }
    return report


def out_of_domain(pipeline: Pipeline, in_domain: list[ClipSet], speech: list[np.ndarray], count: int) -> dict:
    rate = pipeline.config.sample_rate
    rng = np.random.default_rng(1)
    n = pipeline.config.n_samples
    negatives = {
        "speech": speech,
        "recorded_speech": recorded_speech_clips(rate),
        "noise": [coloured_noise(rng, n, exponent) * 0.1 for exponent in np.linspace(0, 2, count)],
        "pure_tones": [0.3 * np.sin(2 * np.pi * f * np.arange(n) / rate) for f in np.geomspace(60, 5000, count)],
    }
    threshold = pipeline.in_domain_threshold
    report = {"threshold": threshold}
    for clips in in_domain:
        scores = np.array([pipeline.analyse(a, rate).in_domain for a in clips.audio])
        report[f"{clips.name}_pass_rate"] = float(np.mean(scores >= threshold))
    for name, audio in negatives.items():
        if not audio:
            report[f"{name}_fail_rate"] = None
            continue
        scores = np.array([pipeline.analyse(np.asarray(a, dtype=np.float32), rate).in_domain for a in audio])
        report[f"{name}_fail_rate"] = float(np.mean(scores < threshold))
        report[f"{name}_clips"] = len(audio)
    return report


def recorded_speech_clips(sample_rate: int) -> list[np.ndarray]:
    """A human voice, not a synthesiser: alsa-utils' channel announcements ("Front left", ...); reported
    beside the espeak-ng rate as a check on real speech (empty where alsa-utils is not installed)."""
    paths = sorted(p for p in RECORDED_SPEECH_DIR.glob("*.wav") if p.stem != "Noise")
    return [resample(*soundfile.read(p, dtype="float32"), sample_rate) for p in paths]


def speech_clips(sample_rate: int, count: int) -> list[np.ndarray]:
    """Sentences spoken by espeak-ng in several voices and speeds (empty where espeak-ng is not installed)."""
    if shutil.which("espeak-ng") is None:
        return []
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            path = Path(tmp) / f"{i}.wav"
            voice, speed = EVALUATION_VOICES[i % len(EVALUATION_VOICES)], 130 + 15 * (i % 5)
            subprocess.run(
                [
                    "espeak-ng",
                    "-v",
                    voice,
                    "-s",
                    str(speed),
                    "-w",
                    str(path),
                    EVALUATION_SENTENCES[i % len(EVALUATION_SENTENCES)],
                ],
                check=True,
                capture_output=True,
            )
            audio, rate = soundfile.read(path, dtype="float32")
            out.append(resample(audio, rate, sample_rate))
    return out


def _self_nearest(queries: np.ndarray, index: np.ndarray) -> float:
    similarity = metrics.unit(queries) @ metrics.unit(index).T
    return float(np.mean(np.argmax(similarity, axis=1) == np.arange(len(queries))))


def _delay(audio: np.ndarray, ms: int, rate: int) -> np.ndarray:
    return np.concatenate([np.zeros(int(rate * ms / 1000), dtype=np.float32), audio])


def _mp3_bytes(audio: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="MP3", bitrate_mode="CONSTANT", compression_level=MP3_BITRATE_LEVEL)
    return buffer.getvalue()


def _mp3(audio: np.ndarray, rate: int) -> np.ndarray:
    return soundfile.read(io.BytesIO(_mp3_bytes(audio, rate)), dtype="float32")[0]


def _mp3_bitrate(audio: np.ndarray, rate: int) -> float:
    return len(_mp3_bytes(audio, rate)) * 8 / (len(audio) / rate) / 1000


def _stereo_44k1(audio: np.ndarray, rate: int) -> np.ndarray:
    return np.repeat(resample(audio, rate, 44_100)[:, None], 2, axis=1)


def _mono_at(audio: np.ndarray, from_rate: int, to_rate: int, length: int) -> np.ndarray:
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    out = np.zeros(length, dtype=np.float32)
    samples = resample(mono, from_rate, to_rate)[:length]
    out[: samples.size] = samples
    return out


def _long_file(clips: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    pieces, total = [], 0
    for clip in np.resize(clips, (int(np.ceil(LONG_SECONDS * rate / clips.shape[1])) + 1, clips.shape[1])):
        pieces.append(clip * rng.uniform(0.5, 1.0))
        total += clip.size
        if total >= LONG_SECONDS * rate:
            break
    return np.concatenate(pieces)[: int(LONG_SECONDS * rate)].astype(np.float32)


def _add_interruptions(audio: np.ndarray, speech: list[np.ndarray], rate: int, rng: np.random.Generator) -> np.ndarray:
    """Replace 20 % of the file, in two stretches, by speech (where available) or silence."""
    out = audio.copy()
    stretch = int(0.1 * audio.size)
    for start in (int(0.1 * audio.size), int(0.6 * audio.size)):
        if speech and rng.random() < 0.5:
            filler = np.resize(speech[int(rng.integers(len(speech)))], stretch)
            out[start : start + stretch] = filler / (np.abs(filler).max() + 1e-9) * np.abs(audio).max()
        else:
            out[start : start + stretch] = 0.0
    return out


def _file_band_summary(pipeline: Pipeline, audio: np.ndarray, length: int) -> np.ndarray:
    """The baseline of a whole file: each band's mean and deviation over every frame of every 4 s piece."""
    pieces = np.resize(audio, (int(np.ceil(audio.size / length)), length))
    pieces[-1, audio.size - (len(pieces) - 1) * length :] = 0.0
    frames = pipeline.frontend.log_mel(torch.from_numpy(normalise_loudness(pieces)))
    frames = frames.permute(1, 0, 2).reshape(frames.shape[1], -1)
    return torch.cat([frames.mean(-1), frames.std(-1)])[None].numpy()
