"""Spoken negatives for the in-domain head: espeak-ng in voices and sentences the evaluation never uses.

The evaluation speaks its own sentences in English, German, French, Spanish and Italian voices
(``EVALUATION_VOICES``). Training speaks different sentences in every other language espeak-ng has,
with its voice variants (male, female, whispery, creaky), speeds and pitches, so a passing evaluation
means unheard languages, voices and words are rejected, not memorised clips. The pool is rendered
once and cached next to the corpus.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from service.ml.audio import resample

EVALUATION_VOICES = ("en", "en-us", "de", "fr", "es", "it")
EVALUATION_SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please remember to bring your umbrella because it might rain later today.",
    "Seven hundred people attended the meeting on Tuesday afternoon.",
    "Music is the universal language of mankind, or so they say.",
    "Turn left at the second traffic light and park behind the library.",
)
EXCLUDED_LANGUAGES = ("en", "de", "fr", "es", "it")  # every dialect of the evaluation's languages
TRAINING_SENTENCES = (
    "Our neighbours painted their garden fence a bright shade of yellow last weekend.",
    "Would you mind closing the window, the draught is getting rather cold in here?",
    "Twelve boats sailed past the harbour wall before the storm arrived at dusk.",
    "Every morning she walks the dog along the canal and buys fresh bread.",
    "The committee will publish its findings after the summer holidays, probably in September.",
    "I cannot find my keys anywhere, have you looked under the sofa cushions?",
    "A thousand tiny lights flickered across the valley as the village woke up.",
    "He explained the rules twice, but nobody at the table was really listening.",
    "Trains to the airport leave every fifteen minutes from platform number four.",
    "When the kettle boils, pour the water slowly over the tea leaves and wait.",
    "Doctors recommend drinking plenty of water and sleeping at least seven hours.",
    "The museum opens at ten and closes early on Sundays and public holidays.",
)
VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+croak", "+whisper", "+klatt")
CACHE_VERSION = 1
MAX_SECONDS = 12.0  # some voices spell Latin text letter by letter: keep the pool's memory bounded


@functools.cache
def training_voices() -> list[str]:
    """espeak-ng's languages minus every dialect of the evaluation's languages (empty without espeak-ng)."""
    if shutil.which("espeak-ng") is None:
        return []
    listing = subprocess.run(["espeak-ng", "--voices"], check=True, capture_output=True, text=True).stdout
    names = [line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1]
    candidates = sorted({n for n in names if n.split("-")[0] not in EXCLUDED_LANGUAGES})
    return [name for name in candidates if _speaks(name)]


def _speaks(voice: str) -> bool:
    """Some listed voices cannot read Latin text (espeak-ng exits 1): leave them out."""
    return subprocess.run(["espeak-ng", "-v", voice, "--stdout", "a b c"], capture_output=True).returncode == 0


def pool(count: int, sample_rate: int, cache: Path, seed: int = 0) -> np.ndarray:
    """(count, longest) float32 clips of speech at ``sample_rate`` (zero-padded), rendered once and cached."""
    voices = training_voices()
    if not voices:
        raise RuntimeError("speech negatives need espeak-ng: apt-get install espeak-ng (or set speech_negatives=0)")
    key = json.dumps([CACHE_VERSION, count, sample_rate, seed, voices, TRAINING_SENTENCES, VARIANTS])
    path = cache / f"speech-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path)
    rng = np.random.default_rng(seed)
    clips = [_speak(rng, voices, sample_rate)[: int(MAX_SECONDS * sample_rate)] for _ in range(count)]
    longest = max(len(c) for c in clips)
    padded = np.stack([np.pad(c, (0, longest - len(c))) for c in clips]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npy")
    np.save(temporary, padded)
    os.replace(temporary, path)
    return padded


def _speak(rng: np.random.Generator, voices: list[str], sample_rate: int) -> np.ndarray:
    voice = voices[int(rng.integers(len(voices)))] + VARIANTS[int(rng.integers(len(VARIANTS)))]
    first = int(rng.integers(len(TRAINING_SENTENCES)))
    text = " ".join(TRAINING_SENTENCES[(first + i) % len(TRAINING_SENTENCES)] for i in range(2))
    speed, pitch = int(rng.integers(110, 200)), int(rng.integers(20, 80))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text]
        subprocess.run(command, check=True, capture_output=True)
        audio, rate = soundfile.read(path, dtype="float32")
    return resample(audio, rate, sample_rate)


def crop(rng: np.random.Generator, speech: np.ndarray, n_samples: int) -> np.ndarray:
    """A random ``n_samples`` window of one pooled clip at a random level (zero-padded if it is shorter)."""
    clip = speech[int(rng.integers(len(speech)))]
    voiced = np.flatnonzero(np.abs(clip) > 1e-4)
    clip = clip[: voiced[-1] + 1] if voiced.size else clip
    if len(clip) < n_samples:
        lead = int(rng.integers(0, n_samples - len(clip) + 1))
        clip = np.pad(clip, (lead, n_samples - len(clip) - lead))
    start = int(rng.integers(0, len(clip) - n_samples + 1))
    window = clip[start : start + n_samples]
    return (window / (np.abs(window).max() + 1e-9) * rng.uniform(0.2, 0.9)).astype(np.float32)
