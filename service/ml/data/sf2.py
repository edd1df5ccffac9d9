"""A minimal SoundFont 2 reader: sample headers, their PCM, and which samples each GM program plays.

Rendering goes through tinysoundfont; this reader exists to compare banks sample by sample
(``overlap``), which needs the raw PCM and loop points that a synthesiser hides.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

GEN_INSTRUMENT, GEN_SAMPLE_ID = 41, 53
ROM_SAMPLE = 0x8000


@dataclass(frozen=True)
class SampleHeader:
    name: str
    start: int
    end: int
    loop_start: int
    loop_end: int
    sample_rate: int
    original_pitch: int
    sample_type: int


class SoundFont2:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._chunks = _read_chunks(self.path.read_bytes())

    @cached_property
    def samples(self) -> list[SampleHeader]:
        records = _records(self._chunks["shdr"], "<20sIIIIIBbHH")
        return [
            SampleHeader(name.split(b"\0")[0].decode("latin-1"), s, e, ls, le, rate, pitch, kind)
            for name, s, e, ls, le, rate, pitch, _, _, kind in records[:-1]  # the last record is the EOS terminator
        ]

    @cached_property
    def pcm(self) -> np.ndarray:
        return np.frombuffer(self._chunks["smpl"], dtype="<i2")

    def sample_pcm(self, index: int) -> np.ndarray:
        header = self.samples[index]
        return self.pcm[header.start : header.end]

    def sample_digest(self, index: int) -> str:
        return hashlib.sha1(self.sample_pcm(index).tobytes()).hexdigest()

    def program_samples(self) -> dict[int, set[int]]:
        """GM program (bank 0) -> indices of the samples its preset can play."""
        presets = _records(self._chunks["phdr"], "<20sHHHIII")
        preset_bags = [(bank, program, bag) for _, program, bank, bag, *_ in presets]
        preset_gens = _zone_generators(self._chunks["pbag"], self._chunks["pgen"])
        instruments = _records(self._chunks["inst"], "<20sH")
        instrument_gens = _zone_generators(self._chunks["ibag"], self._chunks["igen"])
        out: dict[int, set[int]] = {}
        for i, (bank, program, first_bag) in enumerate(preset_bags[:-1]):
            if bank != 0:
                continue
            last_bag = preset_bags[i + 1][2]
            for bag in range(first_bag, last_bag):
                for instrument in preset_gens.get(bag, {}).get(GEN_INSTRUMENT, []):
                    first, last = instruments[instrument][1], instruments[instrument + 1][1]
                    for ibag in range(first, last):
                        out.setdefault(program, set()).update(instrument_gens.get(ibag, {}).get(GEN_SAMPLE_ID, []))
        return out


def _read_chunks(data: bytes) -> dict[str, bytes]:
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise ValueError("not a SoundFont 2 file (no RIFF sfbk header)")
    chunks: dict[str, bytes] = {}
    _walk(data, 12, len(data), chunks)
    return chunks


def _walk(data: bytes, position: int, end: int, chunks: dict[str, bytes]) -> None:
    while position + 8 <= end:
        tag, size = data[position : position + 4].decode("latin-1"), struct.unpack_from("<I", data, position + 4)[0]
        body = position + 8
        if tag == "LIST":
            _walk(data, body + 4, body + size, chunks)
        else:
            chunks[tag] = data[body : body + size]
        position = body + size + (size & 1)


def _records(chunk: bytes, layout: str) -> list[tuple]:
    size = struct.calcsize(layout)
    return [struct.unpack_from(layout, chunk, offset) for offset in range(0, len(chunk) - size + 1, size)]


def _zone_generators(bags: bytes, generators: bytes) -> dict[int, dict[int, list[int]]]:
    """bag index -> generator operator -> amounts (only the operators that point at other records)."""
    bag_starts = [gen for gen, _ in _records(bags, "<HH")]
    gens = _records(generators, "<HH")
    out: dict[int, dict[int, list[int]]] = {}
    for bag, (first, last) in enumerate(zip(bag_starts[:-1], bag_starts[1:], strict=True)):
        for operator, amount in gens[first:last]:
            if operator in (GEN_INSTRUMENT, GEN_SAMPLE_ID):
                out.setdefault(bag, {}).setdefault(operator, []).append(amount)
    return out
