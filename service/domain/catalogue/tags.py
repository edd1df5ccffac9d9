"""The tag vocabulary a client can type: per slot, the canonical tags with their synonyms, and the tempo range.

The vocabulary lives with the model code (``service.ml.tags``); every registered model is conditioned on the
same slots, so a model's vocabulary is that one, named after the model that was asked about.

The slots are built once per process (``vocabulary_body``; building them looks up every tag's synonyms, ~0.3 ms):
they are code, not data, so no write changes them and a new release starts new processes. Only the model is looked
up per request.
"""

from __future__ import annotations

import functools

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.models.model_lookup import resolve_model
from service.ml import tags

EXAMPLE_PROMPTS = ("piano, minor, slow, 80 bpm", "cello, sad, 70bpm", "trumpet, happy, upbeat, drums", "harp")


class TagInfo(msgspec.Struct):
    tag: str
    synonyms: list[str]


class TagSlot(msgspec.Struct):
    slot: str
    tags: list[TagInfo]


class TempoRange(msgspec.Struct):
    min_bpm: int
    max_bpm: int
    step: int
    examples: list[str]


class TagVocabulary(msgspec.Struct):
    model: str
    slots: list[TagSlot]
    bpm: TempoRange
    examples: list[str]
    rules: str


async def vocabulary(session: AsyncSession, alias: str | None) -> TagVocabulary:
    model = await resolve_model(session, alias)
    return TagVocabulary(model=model.alias, **vocabulary_body())


@functools.cache
def vocabulary_body() -> dict:
    """Everything in a vocabulary but the model, built once (shared by every response; nothing mutates it).
    ``vocabulary_body.__wrapped__`` builds it afresh."""
    slots = [
        TagSlot(slot=slot, tags=[TagInfo(tag=tag, synonyms=tags.synonyms_of(tag)) for tag in names])
        for slot, names in tags.SLOT_TAGS.items()
    ]
    bpm = TempoRange(
        min_bpm=tags.MIN_BPM, max_bpm=tags.MAX_BPM, step=tags.BPM_STEP, examples=["72 bpm", "120bpm", "165 bpm"]
    )
    rules = (
        "A prompt is comma-separated tags, at most one per slot; case, spacing, '-' and '_' do not matter. A bpm "
        "tag also sets the tempo class (slow < 90 <= medium <= 130 < fast). Generations store the canonical tags."
    )
    return {"slots": slots, "bpm": bpm, "examples": list(EXAMPLE_PROMPTS), "rules": rules}
