"""Request and response bodies shared by the controllers (msgspec structs, validated by Litestar)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.api.openapi_docs import bounds
from service.domain.generation.generations import MAX_SEED, GenerationView, timings

Visibility = Literal["private", "public"]
Seed = Annotated[
    int, Meta(ge=0, le=MAX_SEED, description="Random seed; the same seed gives the same clip"), bounds(0, MAX_SEED)
]

# generation fields a request, a preset (/v1/presets) and the caller's defaults (/v1/me/defaults) share
Prompt = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=500,
        description="Comma-separated tags (GET /v1/tags)",
        examples=["piano, minor, slow, 80 bpm"],
    ),
]
Steps = Annotated[int, Meta(ge=1, le=200, description="Diffusion sampling steps (model default)")]
GuidanceScale = Annotated[float, Meta(ge=0.0, le=20.0, description="Classifier-free guidance (model default)")]
ModelAlias = Annotated[str, Meta(description="Model alias; the default model when absent")]
BatchSize = Annotated[int, Meta(ge=1, le=8, description="Clips to make (seeds seed, seed+1, ...); 1 when absent")]


class ModelRef(msgspec.Struct):
    id: int
    alias: str
    version: str


class Timings(msgspec.Struct):
    queued_seconds: float | None
    run_seconds: float | None
    total_seconds: float | None


class Links(msgspec.Struct):
    self: str
    audio: str | None
    latent: str | None


class Generation(msgspec.Struct):
    id: uuid.UUID
    kind: str
    status: str
    owner: str
    visibility: str
    tags: list[str]
    params: dict[str, Any]
    seed: int | None
    model: ModelRef
    parent_id: uuid.UUID | None
    neighbor_id: uuid.UUID | None
    error: str | None
    failure_class: str | None  # bad_input, model_error, resource_exhaustion or infrastructure (failed only)
    in_domain: Annotated[
        float | None, Meta(description="Imports: how much the file sounds like music the model knows (0-1)")
    ]
    in_domain_ok: Annotated[
        bool | None,
        Meta(description="Imports: in_domain reached the model's threshold; false = flagged (speech, noise)"),
    ]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    archived_at: datetime | None
    timings: Timings
    links: Links


def generation_url(generation_id: uuid.UUID) -> str:
    return f"/v1/generations/{generation_id}"


def to_generation(view: GenerationView) -> Generation:
    row, url = view.row, generation_url(view.row.id)
    return Generation(
        id=row.id,
        kind=row.kind,
        status=row.status,
        owner=row.owner,
        visibility=row.visibility,
        tags=list(row.tags),
        params=row.params,
        seed=row.seed,
        model=ModelRef(id=view.model.id, alias=view.model.alias, version=view.model.version),
        parent_id=row.parent_id,
        neighbor_id=row.neighbor_id,
        error=row.error,
        failure_class=row.failure_class,
        in_domain=row.in_domain,
        in_domain_ok=row.in_domain_ok,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        archived_at=row.archived_at,
        timings=Timings(**timings(row)),
        links=Links(
            self=url,
            audio=f"{url}/audio" if view.has_audio else None,
            latent=f"{url}/latent" if view.has_latent else None,
        ),
    )
