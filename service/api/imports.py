"""/v1/imports: upload an existing clip; it is encoded and stored as a searchable generation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from litestar import Controller, post
from litestar.datastructures import State, UploadFile
from litestar.enums import RequestEncodingType
from litestar.openapi import ResponseSpec
from litestar.params import Body

from service.api.auth import requires_role
from service.api.deps import CallerDep, SessionDep
from service.api.problems import Problem
from service.api.schemas import Generation, Visibility, to_generation
from service.domain.catalogue.imports import FORMAT_NAMES, ImportOptions, decode_upload, import_clip
from service.domain.errors import InvalidInput
from service.domain.generation import generations
from service.ml.tags import normalise_tags

MAX_TAGS, MAX_TAG_LENGTH = 20, 50


@dataclass
class ImportForm:
    file: UploadFile
    model: str | None = None
    visibility: Visibility = "private"
    tags: str | None = None  # comma-separated


class ImportController(Controller):
    path = "/v1/imports"
    tags = ["imports"]

    @post(
        guards=[requires_role("creator")],
        status_code=201,
        summary=f"Import an audio file ({FORMAT_NAMES}) as a generation of kind `import`",
        description="Form fields: `file` (required), `model` (alias; default model when absent), `visibility`, "
        "`tags` (comma-separated). Size and duration limits come from the storage settings. The answer carries the "
        "model's `in_domain` score and `in_domain_ok` (false: not music to the model, stored but flagged); a file "
        "longer than one model window also gets its windows stored for `segments` search.",
        responses={
            413: ResponseSpec(Problem, description="The file is over the size limit"),
            422: ResponseSpec(
                Problem, description="Empty, unreadable, another format, too long or too short audio; unknown model"
            ),
        },
    )
    async def create(
        self,
        data: Annotated[ImportForm, Body(media_type=RequestEncodingType.MULTI_PART)],
        caller: CallerDep,
        db_session: SessionDep,
        state: State,
    ) -> Generation:
        limits = state.settings.storage
        raw = await data.file.read()
        clip = await asyncio.to_thread(
            decode_upload, raw, data.file.filename, limits.max_upload_bytes, limits.max_upload_seconds
        )
        options = ImportOptions(model=data.model, visibility=data.visibility, tags=parse_tags(data.tags))
        row = await import_clip(db_session, state.store, state.models, caller, clip, data.file.filename, options)
        return to_generation(await generations.get_view(db_session, caller, row.id))


def parse_tags(raw: str | None) -> tuple[str, ...]:
    tags = tuple(normalise_tags((raw or "").split(",")))
    if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_LENGTH for t in tags):
        raise InvalidInput("tags", f"at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters each")
    return tags
