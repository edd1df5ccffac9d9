"""ACE-Step-style tag prompts ("piano, minor, slow, 80 bpm") and their conditioning ids.

A prompt fills up to five slots: family, mode, tempo class, bpm bucket and
drums. Each slot is an integer id where 0 means "not given" (the null
condition the diffusion model also learns for classifier-free guidance).

People type more than the canonical tags: instrument names ("cello"), moods
("sad"), tempo words ("upbeat"), "90bpm". ``SYNONYMS`` maps those onto the
canonical tags (the slots and their ids never change: trained checkpoints
depend on them) and ``normalise_tag`` is the one place case, spacing and
separators are folded, so stored tags, filters and prompts agree.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from service.ml.data.instruments import FAMILY_NAMES
from service.ml.data.music import MAX_BPM, MIN_BPM, MODES
from service.ml.errors import PromptError

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
# What people type, by the canonical tag it means. Instruments go to the family whose GM programs hold them.
_SYNONYMS_OF: dict[str, tuple[str, ...]] = {
    "piano": ("grand piano", "acoustic piano", "electric piano", "rhodes", "keys", "keyboard"),
    "mallet": ("marimba", "vibraphone", "vibes", "xylophone", "bells", "glockenspiel", "celesta", "music box"),
    "organ": ("church organ", "pipe organ", "hammond", "hammond organ", "accordion"),
    "guitar": ("acoustic guitar", "electric guitar", "nylon guitar", "steel guitar", "jazz guitar"),
    "bass": ("double bass", "contrabass", "upright bass", "bass guitar", "electric bass", "fretless bass"),
    "strings": ("violin", "viola", "cello", "fiddle", "string", "string section", "string ensemble"),
    "brass": ("trumpet", "trombone", "horn", "french horn", "tuba", "brass section"),
    "reed": ("sax", "saxophone", "alto sax", "tenor sax", "clarinet", "oboe", "bassoon", "english horn"),
    "flute": ("piccolo", "recorder", "pan flute", "panpipes", "ocarina", "whistle"),
    "synth lead": ("lead", "synth", "lead synth", "synthesizer"),
    "synth pad": ("pad", "pads", "synth pads", "ambient pad"),
    "plucked": ("harp", "banjo", "sitar", "koto", "shamisen", "kalimba", "pizzicato"),
    "major": ("happy", "bright", "cheerful", "joyful", "uplifting"),
    "minor": ("sad", "dark", "melancholic", "melancholy", "gloomy", "moody"),
    "slow": ("slowly", "downtempo", "largo", "adagio", "lento"),
    "medium": ("moderate", "mid tempo", "midtempo", "andante", "moderato"),
    "fast": ("quick", "upbeat", "uptempo", "up tempo", "allegro", "presto"),
    "drums": ("drum", "with drums", "percussion", "beat", "beats"),
    "no drums": ("without drums", "no drum", "drumless", "no percussion"),
}
SYNONYMS: dict[str, str] = {word: tag for tag, words in _SYNONYMS_OF.items() for word in words}
SLOT_TAGS = {slot: [tag for tag, (s, _) in _WORD_TAGS.items() if s == slot] for slot in SLOTS if slot != "bpm"}


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


def normalise_tag(tag: str) -> str:
    """The one spelling of a tag: case, spacing, ``_``/``-`` folded; synonyms and ``90bpm`` made canonical.
    Tags outside the vocabulary (free-form import tags, filters) come back folded but otherwise as given."""
    folded = " ".join(unicodedata.normalize("NFKC", tag).lower().replace("_", " ").replace("-", " ").split())
    match = _BPM_PATTERN.match(folded)
    if match:
        return f"{match.group(1)} bpm"
    return SYNONYMS.get(folded, folded)


def normalise_tags(tags: Iterable[str]) -> list[str]:
    """Every tag normalised, empty ones and duplicates dropped, first-seen order kept."""
    return list(dict.fromkeys(t for t in map(normalise_tag, tags) if t))


def with_instruments_of(tags: Iterable[str], other: Iterable[str]) -> list[str]:
    """``tags`` with their instrument (family) tags replaced by ``other``'s: what a style transfer is tagged."""
    families = set(SLOT_TAGS["family"])
    kept = [tag for tag in normalise_tags(tags) if tag not in families]
    return normalise_tags([*kept, *(tag for tag in normalise_tags(other) if tag in families)])


def synonyms_of(tag: str) -> list[str]:
    return list(_SYNONYMS_OF.get(tag, ()))


def tempo_class_id(bpm: float) -> int:
    return 1 if bpm < 90 else (2 if bpm <= 130 else 3)


def bpm_bucket_id(bpm: float) -> int:
    return int(round((bpm - MIN_BPM) / BPM_STEP)) + 1


def parse_prompt(prompt: str, field: str = "prompt") -> ParsedPrompt:
    """Parse comma-separated tags; unknown tags raise PromptError with the closest known tags."""
    if not isinstance(prompt, str):
        raise PromptError(field, f"{field} must be a string of comma-separated tags, got {type(prompt).__name__}")
    slots: dict[str, tuple[int, str]] = {}
    tags = {}
    for raw in prompt.split(","):
        typed = " ".join(raw.split())
        tag = normalise_tag(raw)
        if not tag:
            continue
        for slot, value in _tag_slots(tag, typed, field):
            if slot in slots and slots[slot][0] != value:
                raise PromptError(field, f"tags {slots[slot][1]!r} and {typed!r} in {field} conflict (both set {slot})")
            slots[slot] = (value, typed)
        tags[tag] = None
    return ParsedPrompt(tuple(tags), **{slot: value for slot, (value, _) in slots.items()})


def _tag_slots(tag: str, typed: str, field: str) -> list[tuple[str, int]]:
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
    suggestions = difflib.get_close_matches(tag, [*known_tags(), *SYNONYMS], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
    raise PromptError(
        field, f"unknown tag {typed!r} in {field}{hint} (every known tag and synonym: GET /v1/tags)", suggestions
    )


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
