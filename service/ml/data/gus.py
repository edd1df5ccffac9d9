"""Gravis UltraSound patches (``.pat``, the format of Debian's ``freepats``): a reader.

A patch holds one instrument of one layer of samples. Each sample header (96 bytes) gives its key
range and root as frequencies in milli-hertz, its loop points in bytes, its rate and a mode byte
(bit 0: 16-bit, bit 1: unsigned, bit 2: looped). ``read_patch`` turns every sample into a
``waf.Zone`` holding 16-bit PCM, so the WebAudioFont sampler plays it and the overlap guard
hashes it like any other PCM zone.
"""

from __future__ import annotations

import base64
import math
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np

from service.ml.data.waf import Zone

MAGIC = b"GF1PATCH110\x00"
HEADER_BYTES, INSTRUMENT_BYTES, LAYER_BYTES, SAMPLE_BYTES = 129, 63, 47, 96
SAMPLE_HEADER = struct.Struct("<7sBIIIHIII")  # name, fractions, size, loop start, loop end, rate, low, high, root
MODE_OFFSET = 55  # the mode byte, after tune, balance, envelope and tremolo/vibrato fields
SIXTEEN_BIT, UNSIGNED, LOOPED = 1, 2, 4


def patch_path(root: Path, program: int) -> Path | None:
    """The melodic patch of GM ``program`` in a freepats tree (names look like ``024_Nylon_Guitar.pat``)."""
    matches = sorted((Path(root) / "Tone_000").glob(f"{program:03d}_*.pat"))
    return matches[0] if matches else None


@lru_cache(maxsize=256)
def read_patch(path: Path) -> tuple[Zone, ...]:
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path} is not a GUS patch (no {MAGIC[:-1].decode()} header)")
    n_samples = data[HEADER_BYTES + INSTRUMENT_BYTES + 6]  # the first layer's sample count
    offset = HEADER_BYTES + INSTRUMENT_BYTES + LAYER_BYTES
    zones = []
    for _ in range(n_samples):
        zone, size = _zone(data, offset)
        zones.append(zone)
        offset += SAMPLE_BYTES + size
    if not zones:
        raise ValueError(f"{path} holds no samples")
    return tuple(zones)


def _zone(data: bytes, offset: int) -> tuple[Zone, int]:
    _, _, size, loop_start, loop_end, rate, low, high, root = SAMPLE_HEADER.unpack_from(data, offset)
    mode = data[offset + MODE_OFFSET]
    raw = data[offset + SAMPLE_BYTES : offset + SAMPLE_BYTES + size]
    width = 2 if mode & SIXTEEN_BIT else 1
    zone = Zone(
        key_low=_midi_key(low),
        key_high=_midi_key(high),
        root_cents=100.0 * _midi_pitch(root),
        sample_rate=rate,
        loop_start=loop_start // width if mode & LOOPED else 0,
        loop_end=loop_end // width if mode & LOOPED else 0,
        encoded=base64.b64encode(_to_int16(raw, mode).tobytes()).decode(),
        is_pcm=True,
    )
    return zone, size


def _to_int16(raw: bytes, mode: int) -> np.ndarray:
    if mode & SIXTEEN_BIT:
        values = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<u2" if mode & UNSIGNED else "<i2").astype(np.int32)
        return (values - 32768 if mode & UNSIGNED else values).astype("<i2")
    values = np.frombuffer(raw, dtype=np.uint8 if mode & UNSIGNED else np.int8).astype(np.int32)
    return ((values - 128 if mode & UNSIGNED else values) * 256).astype("<i2")


def _midi_pitch(millihertz: int) -> float:
    return 69.0 + 12.0 * math.log2(max(millihertz, 1) / 440_000.0)


def _midi_key(millihertz: int) -> int:
    return int(min(127, max(0, round(_midi_pitch(millihertz)))))
