"""General MIDI instrument families used by the corpus and the tag vocabulary.

Each family lists GM programs (0-based). The last program of every family is
held out of training so the evaluation can ask whether the model learned the
family or just memorised one SoundFont preset.
"""

from __future__ import annotations

FAMILIES: dict[str, tuple[int, ...]] = {
    "piano": (0, 1, 2, 3, 4, 5),
    "mallet": (8, 9, 11, 12, 13, 10),
    "organ": (16, 17, 18, 19, 21, 20),
    "guitar": (24, 25, 26, 27, 29, 28),
    "bass": (32, 33, 34, 35, 38, 36),
    "strings": (40, 41, 48, 49, 44, 42),
    "brass": (56, 57, 61, 62, 63, 60),
    "reed": (64, 65, 68, 70, 71, 66),
    "flute": (73, 74, 75, 77, 79, 72),
    "synth lead": (80, 81, 82, 84, 87, 83),
    "synth pad": (88, 89, 90, 91, 94, 92),
    "plucked": (46, 105, 106, 107, 104, 45),
}

FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)

# Octave the family plays in (MIDI note of the melody's tonic).
FAMILY_REGISTER: dict[str, int] = {"bass": 40, "strings": 60, "brass": 60, "reed": 62, "flute": 74}
DEFAULT_REGISTER = 64


def train_programs(family: str) -> tuple[int, ...]:
    return FAMILIES[family][:-1]


def held_out_program(family: str) -> int:
    return FAMILIES[family][-1]


def family_index(family: str) -> int:
    return FAMILY_NAMES.index(family)
