"""/v1/presets: named, shareable prompt + parameter sets; /v1/me/defaults: the caller's generation defaults.

A generation request (POST /v1/generations) names a preset in ``preset``; the fields it leaves out come from
that preset, then from the caller's defaults (``service.domain.catalogue.presets``).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Annotated

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from msgspec import Meta

from service.api.auth import requires_role
from service.api.deps import CallerDep, SessionDep
from service.api.problems import Problem
from service.api.schemas import BatchSize, GuidanceScale, ModelAlias, Prompt, Steps, Visibility
from service.db.schema.models import Preset as PresetRow
from service.domain.catalogue import presets as domain

if TYPE_CHECKING:
    from service.api.generations import GenerationCreate

PresetId = FromPath[uuid.UUID]
PresetRef = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        description="A preset to fill in the fields this request leaves out: its id (any preset you can see) or "
        "the name of one of yours",
    ),
]
NOT_FOUND = ResponseSpec(Problem, description="Unknown, or another owner's private preset")


class PresetCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=100, description="Unique among your presets")]
    description: Annotated[str, Meta(max_length=500)] | None = None
    prompt: Prompt | None = None
    steps: Steps | None = None
    guidance_scale: GuidanceScale | None = None
    model: ModelAlias | None = None
    batch_size: BatchSize | None = None
    visibility: Annotated[Visibility, Meta(description="public: anyone may list and apply it")] = "private"


class Preset(domain.PresetView):
    """A preset: its owner, name, fields and visibility."""


class PresetPage(msgspec.Struct):
    items: list[Preset]
    next_cursor: str | None


class GenerationDefaults(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields a generation request of this owner falls back to when it (and its preset) leaves them out."""

    steps: Steps | None = None
    guidance_scale: GuidanceScale | None = None
    model: ModelAlias | None = None
    batch_size: BatchSize | None = None
    visibility: Annotated[Visibility, Meta(description="Of the clips a request makes")] | None = None


def _params(data: PresetCreate | GenerationDefaults | GenerationCreate) -> domain.GenerationFields:
    return domain.GenerationFields(
        steps=data.steps, guidance_scale=data.guidance_scale, model=data.model, batch_size=data.batch_size
    )


def generation_ask(data: GenerationCreate) -> domain.GenerationAsk:
    return domain.GenerationAsk(
        prompt=data.prompt, params=_params(data), seed=data.seed, visibility=data.visibility, preset=data.preset
    )


def to_preset(row: PresetRow | domain.PresetView) -> Preset:
    return msgspec.convert(row, Preset, from_attributes=True)


def to_defaults(defaults: domain.Defaults) -> GenerationDefaults:
    return GenerationDefaults(**dataclasses.asdict(defaults.params), visibility=defaults.visibility)


class PresetController(Controller):
    path = "/v1/presets"
    tags = ["presets"]

    @post(
        guards=[requires_role("creator")],
        summary="Save a named prompt + parameter set",
        responses={
            409: ResponseSpec(Problem, description="You already have a preset of that name"),
            422: ResponseSpec(Problem, description="An unknown tag or model, or a name that is a preset id"),
        },
    )
    async def create_preset(self, data: JSONBody[PresetCreate], caller: CallerDep, db_session: SessionDep) -> Preset:
        spec = domain.PresetSpec(
            name=data.name,
            prompt=data.prompt,
            params=_params(data),
            description=data.description,
            visibility=data.visibility,
        )
        return to_preset(await domain.create_preset(db_session, caller, spec))

    @get(summary="Presets you can use: yours and public ones (admins: all), newest first")
    async def list_presets(
        self,
        caller: CallerDep,
        db_session: SessionDep,
        owner: Annotated[str | None, Parameter(min_length=1, description="Only this owner's presets")] = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> PresetPage:
        rows, next_cursor = await domain.list_presets(db_session, caller, owner, limit, cursor)
        return PresetPage(items=[to_preset(row) for row in rows], next_cursor=next_cursor)

    @get("/{preset_id:uuid}", summary="One preset (served from the read cache)", responses={404: NOT_FOUND})
    async def get_preset(self, preset_id: PresetId, caller: CallerDep, db_session: SessionDep, state: State) -> Preset:
        return to_preset(await domain.get_preset(db_session, caller, preset_id, state.read_cache))

    @delete(
        "/{preset_id:uuid}",
        guards=[requires_role("creator")],
        summary="Delete your preset (admins: any); what it made keeps its parameters",
        responses={404: NOT_FOUND},
    )
    async def delete_preset(self, preset_id: PresetId, caller: CallerDep, db_session: SessionDep, state: State) -> None:
        await domain.delete_preset(db_session, caller, preset_id, state.read_cache)


class DefaultsController(Controller):
    path = "/v1/me/defaults"
    tags = ["presets"]

    @get(summary="Your generation defaults (null: not set)")
    async def get_defaults(self, caller: CallerDep, db_session: SessionDep) -> GenerationDefaults:
        return to_defaults(await domain.get_defaults(db_session, caller))

    @put(
        guards=[requires_role("creator")],
        summary="Replace your generation defaults (a field left out is cleared)",
        responses={422: ResponseSpec(Problem, description="An unknown model")},
    )
    async def put_defaults(
        self, data: JSONBody[GenerationDefaults], caller: CallerDep, db_session: SessionDep
    ) -> GenerationDefaults:
        defaults = domain.Defaults(params=_params(data), visibility=data.visibility)
        return to_defaults(await domain.put_defaults(db_session, caller, defaults))
