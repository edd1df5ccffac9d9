"""Which programs of a bank share samples with another bank: the guard between training and test banks.

A sample is identified by its PCM (SHA-1 of the 16-bit frames: SoundFonts and WebAudioFont's PCM
zones) and, where it loops, by (sample rate, loop start, loop end): an MP3 zone has no
comparable PCM, but a re-encoded copy of a sample keeps its loop points to the frame.
Unlooped MP3 zones can only be matched through a bank's other zones (see the model card).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from service.ml.data import waf
from service.ml.data.banks import BANKS, Bank
from service.ml.data.instruments import FAMILIES
from service.ml.data.sf2 import SoundFont2

Key = tuple


def program_keys(bank: Bank, programs: tuple[int, ...]) -> dict[int, set[Key]]:
    """GM program -> the identity keys of every sample it can play."""
    if bank.kind == "sf2":
        return _sf2_keys(bank.name, programs)
    return {p: _zone_keys(bank.zones(p)) for p in programs if bank.has_program(p)}


@lru_cache(maxsize=16)
def _sf2_keys(name: str, programs: tuple[int, ...]) -> dict[int, set[Key]]:
    font = SoundFont2(BANKS[name].path())
    samples = font.program_samples()
    out: dict[int, set[Key]] = {}
    for program in programs:
        keys: set[Key] = set()
        for index in samples.get(program, ()):
            header = font.samples[index]
            keys.add(("pcm", font.sample_digest(index)))
            if header.loop_end > header.loop_start + 8:
                keys.add(("loop", header.sample_rate, header.loop_start - header.start, header.loop_end - header.start))
        out[program] = keys
    return out


def _zone_keys(zones: tuple[waf.Zone, ...]) -> set[Key]:
    keys: set[Key] = set()
    for zone in zones:
        if zone.is_pcm:
            pcm = (zone.audio() * 32768.0).round().astype("<i2")
            keys.add(("pcm", hashlib.sha1(pcm.tobytes()).hexdigest()))
        if zone.looped:
            keys.add(("loop", zone.sample_rate, zone.loop_start, zone.loop_end))
    return keys


def all_programs() -> tuple[int, ...]:
    return tuple(sorted({p for programs in FAMILIES.values() for p in programs}))


def bank_keys(bank: Bank) -> set[Key]:
    return set().union(*program_keys(bank, all_programs()).values())


def clean_programs(bank: Bank, against: list[Bank]) -> tuple[dict[int, set[Key]], dict[int, int]]:
    """(kept programs and their keys, dropped program -> number of shared samples) of ``bank``."""
    forbidden = set().union(*(bank_keys(other) for other in against if other.available()))
    kept, dropped = {}, {}
    for program, keys in program_keys(bank, all_programs()).items():
        shared = keys & forbidden
        if shared:
            dropped[program] = len(shared)
        else:
            kept[program] = keys
    return kept, dropped
