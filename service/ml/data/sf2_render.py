"""Render note events with a SoundFont preset through tinysoundfont (mono, float32)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import tinysoundfont._tinysoundfont as tsf

from service.ml.data.music import NoteEvent

MELODIC_CHANNEL, DRUM_CHANNEL = 0, 9


@lru_cache(maxsize=4)
def _load(path: str) -> tsf.SoundFont:
    return tsf.SoundFont(path)


def render(
    events: list[NoteEvent],
    program: int,
    soundfont: Path,
    sample_rate: int,
    n_samples: int,
    tuning: float = 0.0,
) -> np.ndarray:
    """Render ``events`` with GM ``program`` (drum events on the GM drum kit); ``tuning`` in semitones."""
    synth = tsf.SoundFont(_load(str(soundfont)))  # a clone: independent playback state, shared samples
    synth.set_output(tsf.OutputMode.Mono, sample_rate, 0.0)
    synth.channel_set_preset_number(MELODIC_CHANNEL, program, False)
    synth.channel_set_preset_number(DRUM_CHANNEL, 0, True)
    synth.channel_set_tuning(MELODIC_CHANNEL, tuning)
    audio = np.zeros(n_samples, dtype=np.float32)
    position = 0
    for at, action in _timeline(events, sample_rate):
        at = min(at, n_samples)
        if at > position:
            synth.render(audio[position:at].view(np.uint8), False)
            position = at
        if position >= n_samples:
            break
        action(synth)
    if position < n_samples:
        synth.render(audio[position:].view(np.uint8), False)
    return audio


def _timeline(events: list[NoteEvent], sample_rate: int):
    """(sample index, action) pairs sorted by time; each action is a note on or off."""
    actions = []
    for e in events:
        channel = DRUM_CHANNEL if e.drum else MELODIC_CHANNEL
        actions.append((int(e.start * sample_rate), 1, _note_on(channel, e.pitch, e.velocity)))
        actions.append((int((e.start + e.duration) * sample_rate), 0, _note_off(channel, e.pitch)))
    actions.sort(key=lambda a: (a[0], a[1]))
    return [(at, action) for at, _, action in actions]


def _note_on(channel: int, pitch: int, velocity: float):
    return lambda synth: synth.channel_note_on(channel, pitch, velocity)


def _note_off(channel: int, pitch: int):
    return lambda synth: synth.channel_note_off(channel, pitch)
