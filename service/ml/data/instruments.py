"""General MIDI instrument families used by the corpus, the tag vocabulary and the evaluation.

Each family lists the GM programs (0-based) that the corpus renders for it, in any bank that has
them. Families that play in the same register form a group: a training scene renders one melody
with several families of one group, so their renders line up note for note.
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
FAMILY_REGISTER: dict[str, int] = {"bass": 40, "strings": 60, "brass": 60, "reed": 60, "flute": 74}
DEFAULT_REGISTER = 64


def register(family: str) -> int:
    return FAMILY_REGISTER.get(family, DEFAULT_REGISTER)


def register_groups() -> dict[int, tuple[str, ...]]:
    """Register -> the families that play there."""
    groups: dict[int, list[str]] = {}
    for family in FAMILY_NAMES:
        groups.setdefault(register(family), []).append(family)
    return {tonic: tuple(families) for tonic, families in groups.items()}


def family_of_program(program: int) -> str | None:
    return next((family for family, programs in FAMILIES.items() if program in programs), None)


def family_index(family: str) -> int:
    return FAMILY_NAMES.index(family)
