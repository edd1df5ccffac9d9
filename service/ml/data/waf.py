"""WebAudioFont presets (``surikov/webaudiofontdata``): a reader and a small sampler.

A preset is a JavaScript file holding zones: a sample (base64 MP3 in ``file`` or base64 16-bit
PCM in ``sample``) with its root pitch (``originalPitch``, cents), key range, loop points and
tuning. ``render`` plays note events the way the WebAudioFont player does: pick the zone whose
key range holds the note, play it at ``2 ** ((100 * note - root) / 1200)`` times its speed,
loop between the loop points while the note is held, and fade out on release.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile

from service.ml.data.music import NoteEvent

ZONE_PATTERN = re.compile(r"\{(.*?)\}", re.DOTALL)
FIELD_PATTERN = re.compile(r"(\w+)\s*:\s*('([^']*)'|[-\w.]+)")
ATTACK_SECONDS, RELEASE_SECONDS = 0.004, 0.25


@dataclass(frozen=True)
class Zone:
    key_low: int
    key_high: int
    root_cents: float  # originalPitch - 100 * coarseTune - fineTune
    sample_rate: int
    loop_start: int
    loop_end: int
    encoded: str  # base64 payload
    is_pcm: bool

    @property
    def looped(self) -> bool:
        return self.loop_end > self.loop_start + 8

    def audio(self) -> np.ndarray:
        return _decode(self.encoded, self.is_pcm)


def preset_path(root: Path, bank: str, program: int, variant: int = 0) -> Path | None:
    """The preset file of GM ``program`` in ``bank`` (names look like ``0400_JCLive_sf2_file.js``)."""
    for suffix in ("_sf2_file.js", "_sf2.js"):
        path = Path(root) / "sound" / f"{program:03d}{variant}_{bank}{suffix}"
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=256)
def read_preset(path: Path) -> tuple[Zone, ...]:
    """The preset's zones whose sample decodes (a few MP3 zones of the banks are truncated single frames)."""
    zones = tuple(zone for zone in _parse(path) if _decodes(zone))
    if not zones:
        raise ValueError(f"{path} holds no playable zones")
    return zones


def _decodes(zone: Zone) -> bool:
    try:
        return zone.audio().size > 0
    except (soundfile.LibsndfileError, ValueError):
        return False


def _parse(path: Path) -> list[Zone]:
    text = Path(path).read_text(encoding="latin-1")
    zones = []
    for block in ZONE_PATTERN.findall(text.split("zones:", 1)[-1]):
        fields = {
            m.group(1): m.group(3) if m.group(3) is not None else m.group(2) for m in FIELD_PATTERN.finditer(block)
        }
        payload = fields.get("file") or fields.get("sample")
        if not payload:
            continue
        zones.append(
            Zone(
                key_low=int(fields.get("keyRangeLow", 0)),
                key_high=int(fields.get("keyRangeHigh", 127)),
                root_cents=float(fields.get("originalPitch", 6000))
                - 100.0 * float(fields.get("coarseTune", 0))
                - float(fields.get("fineTune", 0)),
                sample_rate=int(fields.get("sampleRate", 44100)),
                loop_start=int(fields.get("loopStart", 0)),
                loop_end=int(fields.get("loopEnd", 0)),
                encoded=payload,
                is_pcm="file" not in fields,
            )
        )
    return zones


@lru_cache(maxsize=4096)
def _decode(encoded: str, is_pcm: bool) -> np.ndarray:
    raw = base64.b64decode(encoded)
    if is_pcm:
        return (np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0).copy()
    audio, _ = soundfile.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    return audio.mean(axis=1)


def zone_for(zones: tuple[Zone, ...], pitch: int) -> Zone:
    for zone in zones:
        if zone.key_low <= pitch <= zone.key_high:
            return zone
    return min(zones, key=lambda z: min(abs(pitch - z.key_low), abs(pitch - z.key_high)))


def render(
    events: list[NoteEvent], zones: tuple[Zone, ...], sample_rate: int, n_samples: int, tuning: float = 0.0
) -> np.ndarray:
    """Mix the notes of ``events`` played on ``zones`` into a mono float32 buffer; ``tuning`` in semitones."""
    out = np.zeros(n_samples, dtype=np.float32)
    for event in events:
        start = int(event.start * sample_rate)
        if start >= n_samples:
            continue
        note = _play_note(zone_for(zones, event.pitch), event.pitch + tuning, event.duration, sample_rate)
        note = note[: n_samples - start]
        out[start : start + note.size] += event.velocity * note
    return out


def _play_note(zone: Zone, pitch: float, duration: float, sample_rate: int) -> np.ndarray:
    source = zone.audio()
    step = 2.0 ** ((100.0 * pitch - zone.root_cents) / 1200.0) * zone.sample_rate / sample_rate
    held = int(duration * sample_rate)
    length = held + int(RELEASE_SECONDS * sample_rate)
    positions = np.arange(length, dtype=np.float64) * step
    if zone.looped and zone.loop_end <= source.size:
        span = zone.loop_end - zone.loop_start
        beyond = positions >= zone.loop_end
        positions[beyond] = zone.loop_start + np.mod(positions[beyond] - zone.loop_start, span)
    else:
        length = min(length, int(source.size / step))
        positions = positions[:length]
    note = np.interp(positions, np.arange(source.size), source, right=0.0).astype(np.float32)
    return note * _envelope(len(note), held, sample_rate)


def _envelope(length: int, held: int, sample_rate: int) -> np.ndarray:
    t = np.arange(length, dtype=np.float32)
    attack = np.minimum(1.0, t / max(1.0, ATTACK_SECONDS * sample_rate))
    release = np.exp(-np.maximum(0.0, t - held) / (0.2 * RELEASE_SECONDS * sample_rate))
    return attack * release
