"""Procedural composition: a key-agnostic melody and its realisation as note events.

A ``Melody`` (scale degrees, rhythm, chord progression, accompaniment texture)
is the unit the splits are made of: train, validation and test never share one.
``realise`` places it in a key, mode, tempo and register and returns timed
note events, ready for any instrument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
MODES = tuple(SCALES)
KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
TEXTURES = ("melody", "block chords", "arpeggio")
MIN_BPM, MAX_BPM = 60, 180
BEATS = 12  # 4 s at 180 bpm; slower tempi simply cut the clip earlier
RHYTHM_CELLS = ((1.0,), (0.5, 0.5), (1.5, 0.5), (0.5, 1.0, 0.5), (2.0,), (0.75, 0.25), (0.25, 0.25, 0.5))
PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3), (5, 3, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0))
KICK, SNARE, HAT = 36, 38, 42


@dataclass(frozen=True)
class Melody:
    melody_id: int
    degrees: tuple[int, ...]
    onsets: tuple[float, ...]
    durations: tuple[float, ...]
    progression: tuple[int, ...]
    texture: str


@dataclass(frozen=True)
class NoteEvent:
    start: float  # seconds
    duration: float  # seconds
    pitch: int  # MIDI note
    velocity: float  # 0..1
    drum: bool = False


def compose(melody_id: int, seed: int) -> Melody:
    """A melody drawn deterministically from (seed, melody_id)."""
    rng = np.random.default_rng([seed, melody_id])
    durations: list[float] = []
    while sum(durations) < BEATS:
        durations.extend(RHYTHM_CELLS[rng.integers(len(RHYTHM_CELLS))])
    onsets = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    degrees = [int(rng.integers(0, 5))]
    for _ in durations[1:]:
        step = int(rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3, 4]))
        centre_pull = -1 if degrees[-1] > 7 else (1 if degrees[-1] < -2 else 0)
        degrees.append(degrees[-1] + step + centre_pull)
    return Melody(
        melody_id=melody_id,
        degrees=tuple(int(d) for d in degrees),
        onsets=tuple(float(o) for o in onsets),
        durations=tuple(float(d) for d in durations),
        progression=PROGRESSIONS[rng.integers(len(PROGRESSIONS))],
        texture=TEXTURES[rng.integers(len(TEXTURES))],
    )


def degree_to_semitones(degree: int, mode: str) -> int:
    scale = SCALES[mode]
    octave, step = divmod(degree, len(scale))
    return 12 * octave + scale[step]


def realise(melody: Melody, key: int, mode: str, bpm: float, tonic: int, drums: bool) -> list[NoteEvent]:
    """Note events of ``melody`` in the given key (0=C), mode, tempo and register (tonic MIDI note)."""
    parts = realise_parts(melody, key, mode, bpm, tonic, drums)
    return sorted([e for part in parts.values() for e in part], key=lambda e: e.start)


def realise_parts(
    melody: Melody, key: int, mode: str, bpm: float, tonic: int, drums: bool
) -> dict[str, list[NoteEvent]]:
    """The lead line, the accompaniment and the drums as separate event lists (a mix plays them on different
    instruments)."""
    beat = 60.0 / bpm
    root = tonic + key - (12 if key > 6 else 0)
    lead = [
        NoteEvent(on * beat, dur * beat * 0.95, root + degree_to_semitones(deg, mode), 0.8)
        for deg, on, dur in zip(melody.degrees, melody.onsets, melody.durations, strict=True)
    ]
    return {
        "lead": lead,
        "accompaniment": _accompaniment(melody, root - 12, mode, beat),
        "drums": _drums(beat) if drums else [],
    }


def _accompaniment(melody: Melody, root: int, mode: str, beat: float) -> list[NoteEvent]:
    events: list[NoteEvent] = []
    for bar in range(BEATS // 4):
        chord_root = melody.progression[bar % len(melody.progression)]
        pitches = [root + degree_to_semitones(chord_root + third, mode) for third in (0, 2, 4)]
        start = bar * 4 * beat
        if melody.texture == "block chords":
            events += [NoteEvent(start, 4 * beat * 0.95, p, 0.5) for p in pitches]
        elif melody.texture == "arpeggio":
            pattern = pitches + [pitches[1]]
            events += [NoteEvent(start + i * beat, beat * 0.9, pattern[i], 0.5) for i in range(4)]
    return events


def _drums(beat: float) -> list[NoteEvent]:
    events = []
    for step in range(BEATS * 2):
        start = step * beat / 2
        events.append(NoteEvent(start, beat / 4, HAT, 0.4, drum=True))
        if step % 4 == 0:
            events.append(NoteEvent(start, beat / 2, KICK, 0.8, drum=True))
        if step % 4 == 2:
            events.append(NoteEvent(start, beat / 2, SNARE, 0.7, drum=True))
    return events
