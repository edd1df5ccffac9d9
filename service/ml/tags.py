"""ACE-Step-style tag prompts ("piano, minor, slow, 90 bpm") and their conditioning ids.

A prompt fills up to five slots: family, mode, tempo class, bpm bucket and
drums. Each slot is an integer id where 0 means "not given" (the null
condition the diffusion model also learns for classifier-free guidance).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from service.ml.errors import PromptError
from service.ml.instruments import FAMILY_NAMES
from service.ml.music import MAX_BPM, MIN_BPM, MODES

TEMPO_CLASSES = ("slow", "medium", "fast")
DRUM_TAGS = ("no drums", "drums")
BPM_STEP = 10
BPM_BUCKETS = tuple(range(MIN_BPM, MAX_BPM + 1, BPM_STEP))
SLOTS = ("family", "mode", "tempo", "bpm", "drums")
SLOT_SIZES = {
    "family": len(FAMILY_NAMES) + 1,
    "mode": len(MODES) + 1,
    "tempo": len(TEMPO_CLASSES) + 1,
    "bpm": len(BPM_BUCKETS) + 1,
    "drums": len(DRUM_TAGS) + 1,
}
_WORD_TAGS = {
    **{name: ("family", i + 1) for i, name in enumerate(FAMILY_NAMES)},
    **{name: ("mode", i + 1) for i, name in enumerate(MODES)},
    **{name: ("tempo", i + 1) for i, name in enumerate(TEMPO_CLASSES)},
    **{name: ("drums", i + 1) for i, name in enumerate(DRUM_TAGS)},
}
_BPM_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)\s*bpm$")


@dataclass(frozen=True)
class ParsedPrompt:
    """Normalised tags and the slot ids they set (0 = not given)."""

    tags: tuple[str, ...]
    family: int = 0
    mode: int = 0
    tempo: int = 0
    bpm: int = 0
    drums: int = 0

    def slot_ids(self) -> list[int]:
        return [getattr(self, slot) for slot in SLOTS]


def known_tags() -> list[str]:
    return [*_WORD_TAGS, *(f"{bpm} bpm" for bpm in BPM_BUCKETS)]


def tempo_class_id(bpm: float) -> int:
    return 1 if bpm < 90 else (2 if bpm <= 130 else 3)


def bpm_bucket_id(bpm: float) -> int:
    return int(round((bpm - MIN_BPM) / BPM_STEP)) + 1


def parse_prompt(prompt: str, field: str = "prompt") -> ParsedPrompt:
    """Parse comma-separated tags; unknown tags raise PromptError with the closest known tags."""
    if not isinstance(prompt, str):
        raise PromptError(field, f"{field} must be a string of comma-separated tags, got {type(prompt).__name__}")
    slots: dict[str, tuple[int, str]] = {}
    tags = []
    for raw in prompt.split(","):
        tag = " ".join(raw.strip().lower().replace("_", " ").replace("-", " ").split())
        if not tag:
            continue
        for slot, value in _tag_slots(tag, field):
            if slot in slots and slots[slot][0] != value:
                raise PromptError(field, f"tags {slots[slot][1]!r} and {tag!r} in {field} conflict (both set {slot})")
            slots[slot] = (value, tag)
        tags.append(tag)
    return ParsedPrompt(tuple(tags), **{slot: value for slot, (value, _) in slots.items()})


def _tag_slots(tag: str, field: str) -> list[tuple[str, int]]:
    if tag in _WORD_TAGS:
        return [_WORD_TAGS[tag]]
    match = _BPM_PATTERN.match(tag)
    if match:
        bpm = float(match.group(1))
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise PromptError(
                field,
                f"tempo {tag!r} is outside the allowed range [{MIN_BPM}, {MAX_BPM}] bpm",
                [f"{MIN_BPM} bpm", f"{MAX_BPM} bpm"],
            )
        return [("bpm", bpm_bucket_id(bpm)), ("tempo", tempo_class_id(bpm))]
    suggestions = difflib.get_close_matches(tag, known_tags(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
    raise PromptError(field, f"unknown tag {tag!r} in {field}{hint} (known tags: see known_tags())", suggestions)


def labels_to_slot_ids(family: str, mode: str, bpm: float, drums: bool) -> list[int]:
    """Slot ids of a fully labelled clip."""
    return [
        FAMILY_NAMES.index(family) + 1,
        MODES.index(mode) + 1,
        tempo_class_id(bpm),
        bpm_bucket_id(bpm),
        int(drums) + 1,
    ]


def family_prompt(family_id: int) -> str:
    """Tag of a family slot id (1-based)."""
    return FAMILY_NAMES[family_id - 1]
