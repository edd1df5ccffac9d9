"""Presets ("style templates") and per-owner generation defaults.

A preset is a named prompt + parameter set of one owner, private or public (anyone may list and apply a public
one; admins see all). An owner's defaults are the fields its generation requests fall back to. A generation
request's fields come, in this order, from: the request itself, the preset it names, the caller's defaults,
then the model (steps, guidance scale) or the service (one clip, private). A field left out is None.

Presets by id are served from the read cache (``PRESETS``; a popular public preset is read by many callers, and
applied by id in their generation requests): the cached preset carries its owner and visibility, so the same rule
decides who sees it; deleting a preset forgets it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime

import msgspec
from sqlalchemy import ColumnElement, and_, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import VISIBILITIES, GenerationDefaults, Preset
from service.domain.access.api_keys import Caller
from service.domain.cache.store import ReadCache, Space
from service.domain.errors import Conflict, InvalidInput, MissingInput, NotFound
from service.domain.generation.generations import TextToMusic
from service.domain.models.model_lookup import resolve_model
from service.domain.pagination import encode_cursor, older_than

DEFAULT_BATCH_SIZE = 1
DEFAULT_VISIBILITY = "private"
PRESETS = Space("presets", ttl=300.0)


@dataclass(frozen=True)
class GenerationFields:
    """The parameters a preset or the defaults may carry (None: not set)."""

    steps: int | None = None
    guidance_scale: float | None = None
    model: str | None = None
    batch_size: int | None = None

    def over(self, fallback: GenerationFields) -> GenerationFields:
        """These fields, with the ones left out taken from ``fallback``."""
        return GenerationFields(**{f.name: _first(getattr(self, f.name), getattr(fallback, f.name)) for f in FIELDS})


FIELDS = fields(GenerationFields)


@dataclass(frozen=True)
class PresetSpec:
    name: str
    prompt: str | None = None
    params: GenerationFields = GenerationFields()
    description: str | None = None
    visibility: str = DEFAULT_VISIBILITY


@dataclass(frozen=True)
class Defaults:
    params: GenerationFields = GenerationFields()
    visibility: str | None = None  # of the clips a request makes


@dataclass(frozen=True)
class GenerationAsk:
    """A generation request as the client sent it: None is a field it left out."""

    prompt: str | None = None
    params: GenerationFields = GenerationFields()
    seed: int | None = None
    visibility: str | None = None
    preset: str | None = None  # a preset's id (any visible one) or the name of one of the caller's own


class PresetView(msgspec.Struct):
    """A preset as the read cache keeps it and the API shows it (the columns of a ``Preset`` row)."""

    id: uuid.UUID
    owner: str
    name: str
    description: str | None
    prompt: str | None
    steps: int | None
    guidance_scale: float | None
    model: str | None
    batch_size: int | None
    visibility: str
    created_at: datetime


VIEW_FIELDS = PresetView.__struct_fields__


async def create_preset(session: AsyncSession, caller: Caller, spec: PresetSpec) -> Preset:
    name = spec.name.strip()
    if not name:
        raise InvalidInput("name", "name must not be blank")
    if _is_uuid(name):
        raise InvalidInput("name", "name must not be a preset id (a generation's `preset` names ids and names alike)")
    await _check(session, spec.prompt, spec.params, spec.visibility)
    row = Preset(
        owner=caller.owner,
        name=name,
        description=spec.description,
        prompt=spec.prompt,
        visibility=spec.visibility,
        **_columns(spec.params),
    )
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"you already have a preset named {name!r}; delete it first or pick another name") from None
    return row


async def get_preset(
    session: AsyncSession, caller: Caller, preset_id: uuid.UUID, cache: ReadCache | None = None
) -> Preset | PresetView:
    row = await _preset_by_id(session, caller, preset_id, cache)
    if row is None:
        raise NotFound(f"no preset {preset_id}")
    return row


async def _preset_by_id(
    session: AsyncSession, caller: Caller, preset_id: uuid.UUID, cache: ReadCache | None
) -> Preset | PresetView | None:
    """The preset if the caller may see it; through ``cache`` when given."""
    if cache is None:
        return await session.scalar(select(Preset).where(Preset.id == preset_id, _visible(caller)))

    async def load() -> PresetView | None:
        row = await session.get(Preset, preset_id)
        return None if row is None else PresetView(**{name: getattr(row, name) for name in VIEW_FIELDS})

    view = await cache.fetch(PRESETS, str(preset_id), PresetView, load)
    return view if view is not None and _may_see(caller, view) else None


async def list_presets(
    session: AsyncSession, caller: Caller, owner: str | None, limit: int, cursor: str | None
) -> tuple[list[Preset], str | None]:
    """Presets the caller may use (its own and public ones; admins: all), newest first, one page after
    ``cursor``; ``owner`` keeps one owner's."""
    query = select(Preset).where(_visible(caller))
    if owner is not None:
        query = query.where(Preset.owner == owner)
    if (after := older_than(Preset.created_at, Preset.id, cursor)) is not None:
        query = query.where(after)
    rows = list(await session.scalars(query.order_by(Preset.created_at.desc(), Preset.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    return page, encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None


async def delete_preset(
    session: AsyncSession, caller: Caller, preset_id: uuid.UUID, cache: ReadCache | None = None
) -> None:
    """Delete the caller's own preset (admins: any); generations made with it keep their parameters. ``cache``:
    the read cache to forget it in (every process sharing it stops serving it)."""
    row = await session.scalar(select(Preset).where(Preset.id == preset_id, _owned(caller)))
    if row is None:
        raise NotFound(f"no preset {preset_id}")
    await session.delete(row)
    await session.commit()
    if cache is not None:
        await cache.forget(PRESETS, str(preset_id))


async def get_defaults(session: AsyncSession, caller: Caller) -> Defaults:
    row = await session.get(GenerationDefaults, caller.owner)
    if row is None:
        return Defaults()
    return Defaults(_fields_of(row), row.visibility)


async def put_defaults(session: AsyncSession, caller: Caller, defaults: Defaults) -> Defaults:
    """Replace the caller's defaults (a field left out is cleared)."""
    await _check(session, None, defaults.params, defaults.visibility)
    row = await session.get(GenerationDefaults, caller.owner)
    if row is None:
        row = GenerationDefaults(owner=caller.owner)
        session.add(row)
    for name, value in _columns(defaults.params).items():
        setattr(row, name, value)
    row.visibility = defaults.visibility
    await session.commit()
    return defaults


async def text_to_music(
    session: AsyncSession, caller: Caller, ask: GenerationAsk, cache: ReadCache | None = None
) -> TextToMusic:
    """The request to run: the fields the client left out taken from its preset (by id through ``cache``), then
    the caller's defaults."""
    preset = await _named_preset(session, caller, ask.preset, cache) if ask.preset is not None else None
    defaults = await get_defaults(session, caller)
    params = ask.params
    prompt = ask.prompt
    if preset is not None:
        params = params.over(_fields_of(preset))
        prompt = _first(prompt, preset.prompt)
    params = params.over(defaults.params)
    if prompt is None:
        missing = "neither the request nor its preset has one" if ask.preset else "send one, or a preset that has one"
        raise MissingInput("prompt", f"prompt is required: {missing}")
    return TextToMusic(
        prompt=prompt,
        steps=params.steps,
        guidance_scale=params.guidance_scale,
        batch_size=_first(params.batch_size, DEFAULT_BATCH_SIZE),
        seed=ask.seed,
        model=params.model,
        visibility=_first(ask.visibility, defaults.visibility, DEFAULT_VISIBILITY),
    )


async def _named_preset(
    session: AsyncSession, caller: Caller, ref: str, cache: ReadCache | None
) -> Preset | PresetView:
    """A visible preset by id, or one of the caller's own by name."""
    if _is_uuid(ref):
        row = await _preset_by_id(session, caller, uuid.UUID(ref), cache)
    else:
        which = and_(Preset.owner == caller.owner, Preset.name == ref.strip())
        row = await session.scalar(select(Preset).where(which, _visible(caller)))
    if row is None:
        raise InvalidInput("preset", f"no preset {ref!r}: give the id of a preset you can see or the name of yours")
    return row


async def _check(session: AsyncSession, prompt: str | None, params: GenerationFields, visibility: str | None) -> None:
    """Refuse what a later generation request would refuse, naming the field, before it is saved."""
    from service.ml.tags import parse_prompt  # the tag vocabulary; no model weights are loaded

    if prompt is not None:
        parse_prompt(prompt)
    if params.model is not None:
        await resolve_model(session, params.model)
    if visibility is not None and visibility not in VISIBILITIES:
        raise InvalidInput("visibility", f"visibility must be one of {', '.join(VISIBILITIES)}; got {visibility!r}")


def _columns(params: GenerationFields | Preset | PresetView | GenerationDefaults) -> dict[str, object]:
    return {f.name: getattr(params, f.name) for f in FIELDS}


def _fields_of(row: Preset | PresetView | GenerationDefaults) -> GenerationFields:
    return GenerationFields(**_columns(row))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _first(*values):
    return next((value for value in values if value is not None), None)


def _visible(caller: Caller) -> ColumnElement[bool]:
    return true() if caller.is_admin else or_(Preset.owner == caller.owner, Preset.visibility == "public")


def _may_see(caller: Caller, preset: PresetView) -> bool:
    """``_visible`` for a cached preset."""
    return caller.is_admin or preset.owner == caller.owner or preset.visibility == "public"


def _owned(caller: Caller) -> ColumnElement[bool]:
    return true() if caller.is_admin else Preset.owner == caller.owner
