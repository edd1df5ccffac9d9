"""tonejs-instruments sample sets (npm ``tonejs-instrument-<name>-mp3``): a reader.

Each package is a folder of MP3 one-shots of a recorded instrument, one file per note (``A3.mp3``,
``Cs4.mp3``: sharps spelled ``s``; alternative takes such as ``F2 v2.mp3`` are skipped). The recordings come
from public-domain and CC-BY libraries (Versilian Studios VSO2, Karoryfer, University of Iowa, Freesound),
not from any General MIDI SoundFont. ``read_instrument`` turns every note into a ``waf.Zone`` of 16-bit PCM
at ``ZONE_RATE`` (the encoder's leading silence trimmed, at most ``MAX_SECONDS`` long) whose key range
reaches halfway to the neighbouring notes, so the WebAudioFont sampler plays it and the overlap guard
hashes it like any other PCM zone.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile

from service.ml.audio import resample
from service.ml.data.waf import Zone

# GM program the instrument plays in the family table -> package name. GM has no tuba slot among the brass
# programs the corpus renders, so the tuba fills 61 (brass section); the contrabass fills 32 (acoustic bass).
INSTRUMENTS: dict[int, str] = {
    0: "piano",
    13: "xylophone",
    19: "organ",
    20: "harmonium",
    24: "guitar-nylon",
    25: "guitar-acoustic",
    27: "guitar-electric",
    32: "contrabass",
    33: "bass-electric",
    40: "violin",
    42: "cello",
    46: "harp",
    56: "trumpet",
    57: "trombone",
    60: "french-horn",
    61: "tuba",
    65: "saxophone",
    70: "bassoon",
    71: "clarinet",
    73: "flute",
}
PACKAGE_VERSION = "1.1"  # every package at 1.1.1 or 1.1.2 (2026-05)
ZONE_RATE = 16_000
MAX_SECONDS = 6.0
ONSET_LEVEL = 0.01  # of the peak: where a note starts once the MP3 encoder's delay is cut
NOTE_NAME = re.compile(r"^([A-G])(s?)(-?\d)$")
PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def package_dir(root: Path, program: int) -> Path | None:
    """The folder of GM ``program``'s package under ``root`` (an ``npm install --prefix root`` or ``npm pack``s
    unpacked into ``root/<package>/package``)."""
    name = INSTRUMENTS.get(program)
    if name is None:
        return None
    package = f"tonejs-instrument-{name}-mp3"
    for path in (Path(root) / "node_modules" / package, Path(root) / package / "package"):
        if path.is_dir():
            return path
    return None


def note_number(stem: str) -> int | None:
    """MIDI note of a sample's file name (``A3`` -> 57, ``Cs4`` -> 61); None for alternative takes."""
    match = NOTE_NAME.match(stem)
    if match is None:
        return None
    letter, sharp, octave = match.groups()
    return 12 * (int(octave) + 1) + PITCH_CLASS[letter] + (1 if sharp else 0)


@lru_cache(maxsize=64)
def read_instrument(folder: Path) -> tuple[Zone, ...]:
    notes = sorted((n, path) for path in Path(folder).glob("*.mp3") if (n := note_number(path.stem)) is not None)
    if not notes:
        raise ValueError(f"{folder} holds no note samples (files named like A3.mp3)")
    pitches = [n for n, _ in notes]
    lows = [0] + [(a + b) // 2 + 1 for a, b in zip(pitches, pitches[1:], strict=False)]
    highs = [(a + b) // 2 for a, b in zip(pitches, pitches[1:], strict=False)] + [127]
    return tuple(_zone(path, pitch, low, high) for (pitch, path), low, high in zip(notes, lows, highs, strict=True))


def _zone(path: Path, pitch: int, low: int, high: int) -> Zone:
    pcm = (np.clip(load_note(path), -1.0, 1.0) * 32767.0).round().astype("<i2")
    return Zone(
        key_low=low,
        key_high=high,
        root_cents=100.0 * pitch,
        sample_rate=ZONE_RATE,
        loop_start=0,
        loop_end=0,
        encoded=base64.b64encode(pcm.tobytes()).decode(),
        is_pcm=True,
    )


def load_note(path: Path) -> np.ndarray:
    """Mono float32 at ``ZONE_RATE`` from the note's onset, at most ``MAX_SECONDS``, peak 0.9."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    loud = np.flatnonzero(np.abs(mono) >= ONSET_LEVEL * max(float(np.abs(mono).max()), 1e-9))
    start = loud[0] if loud.size else 0
    mono = resample(mono[start : start + int(MAX_SECONDS * rate)], rate, ZONE_RATE)
    return mono * (0.9 / max(float(np.abs(mono).max()), 1e-9))
