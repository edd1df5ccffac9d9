"""``/v1/models``: the model registry for admins (list, show, add, rename, set default, archive, delete)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.auth import requires_role
from service.api.deps import CallerDep, JobsDep, SessionDep
from service.api.variants import BatchStatus, to_batch
from service.db.schema.models import Model
from service.domain.generation import variants
from service.domain.models import checkpoints, inference_stats, reencode, registry

Alias = Annotated[str, msgspec.Meta(min_length=1, max_length=registry.ALIAS_MAX_LENGTH)]


class ModelOut(msgspec.Struct):
    """A registry entry (``ModelOut`` rather than ``Model``: the ORM class owns that name)."""

    id: int
    alias: str
    source_id: str
    source_type: str
    author_repo: str | None
    version: str
    config_path: str | None
    checkpoint_path: str | None
    checkpoint_sha256: str | None
    latent_dim: int
    sample_rate: int | None
    clip_seconds: float | None
    status: str
    status_reason: str | None
    is_default: bool
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    inference: list[inference_stats.OperationStats] = []  # how it ran, per operation, over every process

    @classmethod
    def of(cls, row: Model, stats: Sequence[inference_stats.OperationStats] = ()) -> ModelOut:
        fields = {f: getattr(row, "metadata_" if f == "metadata" else f) for f in cls.__struct_fields__[:-1]}
        return cls(**fields, inference=list(stats))


async def models_out(session: AsyncSession, rows: list[Model]) -> list[ModelOut]:
    """The registry entries with their inference statistics."""
    stats = await inference_stats.stats_of(session, [row.id for row in rows])
    return [ModelOut.of(row, stats[row.id]) for row in rows]


class ModelCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Register a checkpoint file that exists on the server."""

    checkpoint_path: Annotated[str, msgspec.Meta(min_length=1)]
    alias: Alias
    version: str | None = None
    latent_dim: Annotated[int, msgspec.Meta(gt=0)] = registry.ModelSpec.latent_dim
    sample_rate: Annotated[int, msgspec.Meta(gt=0)] | None = None
    clip_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None
    is_default: bool = False
    metadata: dict[str, Any] | None = None


class ModelUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Change what may change: the alias, becoming the default, archived or not, metadata (merged)."""

    alias: Alias | None = None
    is_default: bool | None = None
    status: Literal["ARCHIVED", "READY"] | None = None
    metadata: dict[str, Any] | None = None


class ReencodeCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Re-encode every live item with audio in ``from``'s space into this model's space (one batch)."""

    from_: Annotated[str, msgspec.Meta(min_length=1, description="The model whose items to re-encode")] = msgspec.field(
        name="from"
    )
    include_archived: Annotated[bool, msgspec.Meta(description="Archived items too (their latents stay archived)")] = (
        False
    )


REENCODE_SUFFIX = "/reencode"


def _ref(path: Path) -> str:
    """The model reference in the URL; a path parameter, because aliases may hold ``/`` (``local:piano/v2``)."""
    return str(path).lstrip("/")


@contextmanager
def registry_errors() -> Iterator[None]:
    """Registry refusals as problem details: unknown 404, clashes 409, bad fields 400 naming the field."""
    try:
        yield
    except registry.ModelNotFound as exc:
        raise NotFoundException(str(exc)) from None
    except registry.ModelConflict as exc:
        raise ClientException(str(exc), status_code=409) from None
    except registry.InvalidModelInput as exc:
        raise ValidationException(str(exc), extra=[{"key": exc.field, "message": exc.reason}]) from None


class ModelController(Controller):
    path = "/v1/models"
    tags = ["models"]
    guards = [requires_role("admin")]

    @get(summary="List the registered models")
    async def list_models(
        self,
        db_session: SessionDep,
        include_archived: FromQuery[bool] = True,
    ) -> list[ModelOut]:
        return await models_out(db_session, await registry.list_models(db_session, include_archived))

    @get("/{ref:path}", summary="One model, by alias, source id or id")
    async def show(self, db_session: SessionDep, ref: FromPath[Path]) -> ModelOut:
        with registry_errors():
            return (await models_out(db_session, [await registry.get_model(db_session, _ref(ref))]))[0]

    @post(
        summary="Register a checkpoint file on the server under an alias",
        description="The file is loaded and encodes a test clip first; one that is no usable model is a 400 "
        "naming `checkpoint_path`. `sample_rate` and `clip_seconds` come from the checkpoint (given ones must agree).",
    )
    async def add(self, db_session: SessionDep, data: JSONBody[ModelCreate]) -> ModelOut:
        spec = registry.ModelSpec(data.latent_dim, data.sample_rate, data.clip_seconds)
        with registry_errors():
            row = await registry.add_model(
                db_session,
                data.checkpoint_path,
                data.alias,
                version=data.version,
                spec=spec,
                make_default=data.is_default,
                metadata=data.metadata,
                check=checkpoints.inspect,
            )
            await db_session.commit()
            await db_session.refresh(row)
        return (await models_out(db_session, [row]))[0]

    @post(
        "/{ref:path}",
        status_code=202,
        summary="POST /v1/models/{ref}/reencode: re-encode a catalogue into this model's space",
        description="The path is the model reference followed by `/reencode` (a reference may hold `/`). Answers "
        "202 with the batch; follow it at `GET /v1/batches/{id}`, cancel it at `POST /v1/batches/{id}/cancel`.",
    )
    async def reencode(
        self,
        db_session: SessionDep,
        caller: CallerDep,
        jobs: JobsDep,
        ref: FromPath[Path],
        data: JSONBody[ReencodeCreate],
        state: State,
    ) -> BatchStatus:
        path = _ref(ref)
        if not path.endswith(REENCODE_SUFFIX):
            raise NotFoundException(f"no action at /v1/models/{path}; did you mean /v1/models/{path}/reencode?")
        request = reencode.ReencodeRequest(data.from_, path.removesuffix(REENCODE_SUFFIX), data.include_archived)
        batch = await reencode.request_reencode(
            db_session, jobs, caller, request, state.settings.jobs.reencode_chunk_size
        )
        return to_batch(await variants.get_batch(db_session, caller, batch.id))

    @patch("/{ref:path}", summary="Rename, make default, archive or unarchive, merge metadata")
    async def update(self, db_session: SessionDep, ref: FromPath[Path], data: JSONBody[ModelUpdate]) -> ModelOut:
        with registry_errors():
            row = await registry.get_model(db_session, _ref(ref))
            if data.is_default is False:
                raise registry.InvalidModelInput(
                    "is_default", "there is always one default: set is_default=true on the model that should take over"
                )
            if data.status == registry.ARCHIVED and data.is_default:
                raise registry.ModelConflict("a model cannot be archived and made the default at once")
            if data.status == registry.READY and row.status != registry.ARCHIVED:
                raise registry.InvalidModelInput("status", "only an archived model can be set back to READY")
            if data.alias is not None:
                row = await registry.rename(db_session, row.id, data.alias)
            if data.status == registry.READY:
                row = await registry.unarchive(db_session, row.id)
            if data.is_default:
                row = await registry.set_default(db_session, row.id)
            if data.status == registry.ARCHIVED:
                row = await registry.archive(db_session, row.id)
            if data.metadata is not None:
                row = await registry.update_metadata(db_session, row.id, data.metadata)
            await db_session.commit()
            await db_session.refresh(row)
        return (await models_out(db_session, [row]))[0]

    @delete("/{ref:path}", summary="Delete a model nothing refers to (otherwise archive it)")
    async def remove(self, db_session: SessionDep, ref: FromPath[Path]) -> None:
        with registry_errors():
            await registry.delete(db_session, _ref(ref))
            await db_session.commit()
