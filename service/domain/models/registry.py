"""The model registry: which model versions exist, which one is the default, and what state each is in.

One row per model version in ``models``. ``source_id`` is the model's id at its source (the built-in name with
its checkpoint hash, the ``model_id`` of a legacy ``model.list`` line, or ``local:<sha256>`` for an added file);
``alias`` is the user-facing handle (unique, and never equal to another model's ``source_id``, so a reference
is never ambiguous). Exactly one non-archived model is the default once any model exists.

Statuses and who moves them::

    READY ──mark_loading──▶ LOADING ──mark_ready──▶ READY          (a worker loads it into its cache)
    READY/LOADING ──mark_running──▶ RUNNING ──mark_idle──▶ READY   (while any job uses it)
    any but ARCHIVED ──mark_failed(reason)──▶ FAILED ──verify (checksum good again)──▶ READY
    any but the default ──archive──▶ ARCHIVED ──unarchive──▶ READY

Functions here flush (and return fully loaded rows) but never commit: callers (API, CLI, workers) commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import LATENT_DIM, Generation, LatentEmbedding, Model
from service.domain.catalogue import segments
from service.domain.generation import sampling
from service.errors import SoundalikeError

READY, LOADING, RUNNING, FAILED, ARCHIVED = "READY", "LOADING", "RUNNING", "FAILED", "ARCHIVED"
ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+@-]*$")
ALIAS_MAX_LENGTH = 100
HASH_CHUNK = 1 << 20
BUILTIN_NAME = "builtin-default"
# One advisory lock serialises registry writes that must see a consistent set of aliases and defaults.
REGISTRY_LOCK_KEY = 0x50A11D_7
WORKING = (READY, LOADING, RUNNING)
# Execution option of a status update among WORKING states: nothing a serving process caches (what is searchable,
# the default, aliases) changes, so ``default_cache`` does not tell them (two such updates per generation job).
WORKING_STATUS_ONLY = "soundalike.working_status_only"


# -- errors (the API maps them: not found 404, conflict 409, invalid 400) ------------------------------------


class RegistryError(SoundalikeError):
    """A registry operation was refused; the message says why and what to do."""


class ModelNotFound(RegistryError):
    pass


class ModelConflict(RegistryError):
    """The request clashes with the registry's state (alias taken, model archived, the default...)."""


class ModelUnavailable(ModelConflict):
    """The model exists but cannot be used for new work (archived or failed)."""


class InvalidModelInput(RegistryError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


# -- references and aliases ------------------------------------------------------------------------------------


def alias_problem(alias: str) -> str | None:
    """Why ``alias`` cannot be an alias, or None when it can."""
    if not alias:
        return "must not be empty"
    if len(alias) > ALIAS_MAX_LENGTH:
        return f"must be at most {ALIAS_MAX_LENGTH} characters"
    if alias.isdigit():
        return "must not be all digits (numbers refer to model ids)"
    if not ALIAS_PATTERN.match(alias):
        return "must start with a letter or digit and contain only letters, digits and . _ : / + @ -"
    return None


def first_free(base: str, taken: set[str]) -> str:
    """``base``, or ``base-1``, ``base-2``, … whichever is first not in ``taken``."""
    if base not in taken:
        return base
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def check_alias(alias: str, field: str = "alias") -> str:
    problem = alias_problem(alias)
    if problem:
        raise InvalidModelInput(field, f"{alias!r} {problem}")
    return alias


async def find_model(session: AsyncSession, ref: str | int) -> Model | None:
    """The model a reference names: its alias, its source id, or its numeric id (in that order)."""
    text_ref = str(ref)
    row = await session.scalar(select(Model).where(Model.alias == text_ref))
    if row is None:
        row = await session.scalar(select(Model).where(Model.source_id == text_ref))
    if row is None and text_ref.isdigit() and int(text_ref) < 2**31:
        row = await session.get(Model, int(text_ref))
    return row


async def get_model(session: AsyncSession, ref: str | int) -> Model:
    row = await find_model(session, ref)
    if row is None:
        raise ModelNotFound(f"no model {ref!r} (see `soundalike models list`)")
    return row


async def default_model(session: AsyncSession) -> Model | None:
    return await session.scalar(select(Model).where(Model.is_default))


async def resolve_alias(session: AsyncSession, alias: str | None) -> Model:
    """The model a request asks for by ``alias`` (or id), or the default when it names none."""
    if alias is None or alias == "":
        row = await default_model(session)
        if row is None:
            raise ModelNotFound("no default model is registered (register one with `soundalike models add`)")
        return row
    return await get_model(session, alias)


def ensure_usable(model: Model) -> Model:
    """Refuse new work with an archived or failed model (the API answers 409)."""
    if model.status == ARCHIVED:
        raise ModelUnavailable(
            f"model {model.alias!r} is archived: its data is kept but it takes no new work "
            f"(`soundalike models unarchive {model.alias}` brings it back)"
        )
    if model.status == FAILED:
        raise ModelUnavailable(
            f"model {model.alias!r} failed: {model.status_reason or 'no reason recorded'} "
            f"(fix it, then `soundalike models verify`)"
        )
    return model


async def model_for_new_work(session: AsyncSession, alias: str | None) -> Model:
    """What the generation code calls before creating work: the resolved model, usable, or an error."""
    return ensure_usable(await resolve_alias(session, alias))


async def list_models(session: AsyncSession, include_archived: bool = True) -> list[Model]:
    query = select(Model).order_by(Model.id)
    if not include_archived:
        query = query.where(Model.status != ARCHIVED)
    return list(await session.scalars(query))


async def usage_counts(session: AsyncSession, model_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """``{model_id: (generations, latents)}`` for the given models."""
    if not model_ids:
        return {}
    gens, lats = [
        dict(
            (
                await session.execute(
                    select(table.model_id, func.count()).where(table.model_id.in_(model_ids)).group_by(table.model_id)
                )
            ).all()
        )
        for table in (Generation, LatentEmbedding)
    ]
    return {mid: (gens.get(mid, 0), lats.get(mid, 0)) for mid in model_ids}


async def lock_registry(session: AsyncSession) -> None:
    """Serialise registry writes until the transaction ends (aliases and the default stay consistent)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": REGISTRY_LOCK_KEY})


async def taken_names(session: AsyncSession) -> set[str]:
    """Every alias and source id in the registry (a new alias must be none of them)."""
    rows = (await session.execute(select(Model.alias, Model.source_id))).all()
    return {name for row in rows for name in row}


async def _ensure_alias_free(session: AsyncSession, alias: str, exclude_id: int | None = None) -> None:
    query = select(Model).where(or_(Model.alias == alias, Model.source_id == alias))
    if exclude_id is not None:
        query = query.where(Model.id != exclude_id)
    other = await session.scalar(query.limit(1))
    if other is not None:
        what = "alias" if other.alias == alias else "source id"
        raise ModelConflict(f"{alias!r} is already the {what} of model {other.id} ({other.alias})")


# -- checkpoints ---------------------------------------------------------------------------------------------


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


def checkpoint_problem(path: str | Path | None, expected_sha256: str | None) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted (missing, unreadable, other hash), or None."""
    if not path:
        return "no checkpoint file is recorded for this model"
    path = Path(path)
    if not path.is_file():
        return f"checkpoint file not found: {path}"
    try:
        actual = sha256_file(path)
    except OSError as exc:
        return f"checkpoint unreadable: {path}: {exc.strerror or exc}"
    if expected_sha256 and actual != expected_sha256:
        return f"checkpoint sha256 mismatch for {path}: registered {expected_sha256[:16]}…, file has {actual[:16]}…"
    return None


def _checkpoint_file(path: str | Path, field: str = "checkpoint_path") -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidModelInput(field, f"no file at {path}")
    return path.resolve()


# -- adding models -------------------------------------------------------------------------------------------


# Loads a checkpoint file and reports its spec, raising InvalidModelInput when it is no usable model.
CheckpointCheck = Callable[[Path], "ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """What describes a model apart from its checkpoint: the architecture's shape."""

    latent_dim: int = LATENT_DIM
    sample_rate: int | None = None
    clip_seconds: float | None = None
    in_domain_threshold: float | None = None  # the checkpoint's calibrated threshold (catalogue.segments)
    defaults: sampling.SamplingDefaults | None = None  # the checkpoint's sampling defaults (generation.sampling)

    def validate(self) -> ModelSpec:
        if self.latent_dim <= 0:
            raise InvalidModelInput("latent_dim", "must be positive")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise InvalidModelInput("sample_rate", "must be positive")
        if self.clip_seconds is not None and not self.clip_seconds > 0:
            raise InvalidModelInput("clip_seconds", "must be positive")
        return self

    def agreeing_with(self, found: ModelSpec) -> ModelSpec:
        """The checkpoint's own spec (``found``), when every value given here agrees with it."""
        for name in ("latent_dim", "sample_rate", "clip_seconds"):
            given, actual = getattr(self, name), getattr(found, name)
            if given is not None and actual is not None and not math.isclose(given, actual):
                raise InvalidModelInput(name, f"{given} was given, but the checkpoint's {name} is {actual}")
        return found


async def _hash_checkpoint(checkpoint_path: str | Path, alias: str, spec: ModelSpec) -> tuple[Path, str]:
    """Check the inputs of a new registration; the checkpoint's absolute path and sha256."""
    check_alias(alias)
    spec.validate()
    path = _checkpoint_file(checkpoint_path)
    try:
        return path, await asyncio.to_thread(sha256_file, path)
    except OSError as exc:
        raise InvalidModelInput("checkpoint_path", f"cannot read {path}: {exc.strerror or exc}") from None


def _checkpoint_model(
    source_id: str,
    alias: str,
    source_type: str,
    version: str | None,
    path: Path,
    digest: str,
    spec: ModelSpec,
    metadata: dict[str, Any] | None = None,
    **extra,
) -> Model:
    return Model(
        source_id=source_id,
        alias=alias,
        source_type=source_type,
        version=version or digest[:12],
        checkpoint_path=str(path),
        checkpoint_sha256=digest,
        latent_dim=spec.latent_dim,
        sample_rate=spec.sample_rate,
        clip_seconds=spec.clip_seconds,
        status=READY,
        metadata_={**recorded_metadata(spec), **(metadata or {})},
        **extra,
    )


def recorded_metadata(spec: ModelSpec) -> dict[str, Any]:
    """What the registry records of a checkpoint in the model's metadata: its calibrated in-domain threshold and
    its sampling defaults."""
    recorded: dict[str, Any] = {}
    if spec.in_domain_threshold is not None:
        recorded[segments.THRESHOLD_KEY] = spec.in_domain_threshold
    if spec.defaults is not None:
        recorded[sampling.DEFAULTS_KEY] = spec.defaults.as_metadata()
    return recorded


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    if problem := segments.threshold_problem(metadata or {}):
        raise InvalidModelInput(f"metadata.{segments.THRESHOLD_KEY}", problem)
    if problem := sampling.defaults_problem(metadata or {}):
        raise InvalidModelInput(f"metadata.{sampling.DEFAULTS_KEY}", problem)
    return metadata or {}


async def _make_default_if_none(session: AsyncSession, row: Model) -> None:
    if await default_model(session) is None and row.status != ARCHIVED:
        row.is_default = True


async def add_model(
    session: AsyncSession,
    checkpoint_path: str | Path,
    alias: str,
    *,
    version: str | None = None,
    spec: ModelSpec = ModelSpec(),
    make_default: bool = False,
    metadata: dict[str, Any] | None = None,
    check: CheckpointCheck | None = None,
) -> Model:
    """Register a local checkpoint under ``alias`` (hashing it); the first model becomes the default. With
    ``check`` (``service.domain.models.checkpoints.inspect``) the file must also load and work as a model, and the spec
    is the one it reports."""
    check_metadata(metadata)
    path, digest = await _hash_checkpoint(checkpoint_path, alias, spec)
    await lock_registry(session)
    await _ensure_alias_free(session, alias)
    same = await session.scalar(select(Model).where(Model.checkpoint_sha256 == digest).limit(1))
    if same is not None:
        raise ModelConflict(f"this checkpoint (sha256 {digest[:16]}…) is already registered as {same.alias!r}")
    if check is not None:
        spec = spec.agreeing_with(await asyncio.to_thread(check, path))
    row = _checkpoint_model(f"local:{digest}", alias, "local", version, path, digest, spec, metadata)
    session.add(row)
    await session.flush()
    if make_default:
        await set_default(session, row.id)
    else:
        await _make_default_if_none(session, row)
    return await _saved(session, row)


@dataclass(frozen=True)
class BuiltinRegistration:
    model: Model
    created: bool
    note: str


async def register_builtin(
    session: AsyncSession,
    checkpoint_path: str | Path,
    *,
    name: str = BUILTIN_NAME,
    alias: str = "default",
    version: str | None = None,
    spec: ModelSpec = ModelSpec(),
) -> BuiltinRegistration:
    """Register the shipped checkpoint once (idempotent; call it at every start-up and commit).

    The same file again changes nothing. A different file (a new shipped version) gets a new row, because its
    latents live in another space; it takes over ``alias`` and the default from the previous built-in version
    if that one held them, and the previous version keeps its data under ``<alias>-<sha8>``.
    """
    path, digest = await _hash_checkpoint(checkpoint_path, alias, spec)
    await lock_registry(session)
    same_file = select(Model).where(Model.source_type == "builtin", Model.checkpoint_sha256 == digest)
    existing = await session.scalar(same_file)
    if existing is not None:
        _record_missing(existing, spec)
        if existing.checkpoint_path != str(path):
            existing.checkpoint_path = str(path)
            await session.flush()
            return BuiltinRegistration(existing, False, f"built-in model {existing.alias!r} moved to {path}")
        return BuiltinRegistration(existing, False, f"built-in model {existing.alias!r} already registered")

    previous = await session.scalar(select(Model).where(Model.source_type == "builtin", Model.alias == alias))
    take_default = await default_model(session) is None or (previous is not None and previous.is_default)
    if previous is not None:
        previous.alias = first_free(
            f"{alias}-{(previous.checkpoint_sha256 or str(previous.id))[:8]}", await taken_names(session)
        )
        if previous.is_default:
            previous.is_default = False
        await session.flush()
    final_alias = first_free(alias, await taken_names(session))
    source_id = f"{name}@{digest[:12]}"
    row = _checkpoint_model(source_id, final_alias, "builtin", version, path, digest, spec, is_default=take_default)
    session.add(row)
    await session.flush()
    await session.refresh(row)
    note = f"registered built-in model {final_alias!r} (version {row.version})"
    if previous is not None:
        note += f"; previous built-in version is now {previous.alias!r}"
    return BuiltinRegistration(row, True, note)


# -- changing models -----------------------------------------------------------------------------------------


async def rename(session: AsyncSession, ref: str | int, new_alias: str) -> Model:
    check_alias(new_alias)
    await lock_registry(session)
    row = await get_model(session, ref)
    if row.alias == new_alias:
        return row
    await _ensure_alias_free(session, new_alias, exclude_id=row.id)
    row.alias = new_alias
    return await _saved(session, row)


async def set_default(session: AsyncSession, ref: str | int) -> Model:
    """Make ``ref`` the one default model (refused for archived or failed models)."""
    await lock_registry(session)
    row = await get_model(session, ref)
    if row.status in (ARCHIVED, FAILED):
        ensure_usable(row)
    if row.is_default:
        return row
    await session.execute(update(Model).where(Model.is_default).values(is_default=False))
    await session.execute(update(Model).where(Model.id == row.id).values(is_default=True))
    await session.refresh(row)
    return row


def _refuse_the_default(row: Model, action: str) -> None:
    if row.is_default:
        raise ModelConflict(
            f"model {row.alias!r} is the default and cannot be {action}: make another model the default first "
            f"(`soundalike models set-default ALIAS`)"
        )


async def _saved(session: AsyncSession, row: Model) -> Model:
    """Flush ``row`` and read it back (server-side values such as ``updated_at`` included)."""
    await session.flush()
    await session.refresh(row)
    return row


async def archive(session: AsyncSession, ref: str | int) -> Model:
    """Archive a model: keep all its data, take no new work with it, hide its latents from default search."""
    await lock_registry(session)
    row = await get_model(session, ref)
    _refuse_the_default(row, "archived")
    if row.status == ARCHIVED:
        return row
    if row.status in (LOADING, RUNNING):
        raise ModelConflict(f"model {row.alias!r} is {row.status} (in use by a worker); archive it when it is idle")
    row.status, row.status_reason = ARCHIVED, None
    return await _saved(session, row)


async def unarchive(session: AsyncSession, ref: str | int) -> Model:
    row = await get_model(session, ref)
    if row.status != ARCHIVED:
        raise ModelConflict(f"model {row.alias!r} is {row.status}, not archived")
    row.status, row.status_reason = READY, None
    return await _saved(session, row)


async def delete(session: AsyncSession, ref: str | int) -> Model:
    """Delete a model that nothing refers to; a model with generations can only be archived."""
    await lock_registry(session)
    row = await get_model(session, ref)
    _refuse_the_default(row, "deleted")
    generations, latents = (await usage_counts(session, [row.id]))[row.id]
    if generations or latents:
        raise ModelConflict(
            f"model {row.alias!r} produced {generations} generations ({latents} latents): archive it instead "
            f"(`soundalike models archive {row.alias}`), which keeps the data"
        )
    await session.delete(row)
    await session.flush()
    return row


def _record_missing(row: Model, spec: ModelSpec) -> None:
    """A model registered before the registry recorded a value (the in-domain threshold) gets it now."""
    missing = {k: v for k, v in recorded_metadata(spec).items() if k not in row.metadata_}
    if missing:
        row.metadata_ = {**row.metadata_, **missing}


async def update_metadata(session: AsyncSession, ref: str | int, metadata: dict[str, Any]) -> Model:
    """Merge ``metadata`` into the model's JSONB metadata (a key set to None is removed; ``defaults`` is merged
    key by key, so ``{"defaults": {"steps": 30}}`` keeps the recorded guidance and strength)."""
    check_metadata(metadata)
    row = await get_model(session, ref)
    merged = {**row.metadata_, **metadata}
    key = sampling.DEFAULTS_KEY
    if isinstance(metadata.get(key), dict) and isinstance(row.metadata_.get(key), dict):
        merged[key] = {**row.metadata_[key], **metadata[key]}
    row.metadata_ = {k: v for k, v in merged.items() if v is not None}
    return await _saved(session, row)


# -- status transitions (workers) -----------------------------------------------------------------------------


async def _transition(
    session: AsyncSession, model_id: int, to: str, allowed_from: tuple[str, ...], reason: str | None = None
) -> str:
    """Move ``model_id`` to ``to`` if it is in one of ``allowed_from``; returns the status it has afterwards."""
    working_only = to in WORKING and set(allowed_from) <= set(WORKING)
    result = await session.execute(
        update(Model)
        .where(Model.id == model_id, Model.status.in_(allowed_from))
        .values(status=to, status_reason=reason)
        .returning(Model.status)
        .execution_options(**{WORKING_STATUS_ONLY: working_only})
    )
    moved = result.scalar_one_or_none()
    if moved is not None:
        return moved
    current = await session.scalar(select(Model.status).where(Model.id == model_id))
    if current is None:
        raise ModelNotFound(f"no model with id {model_id}")
    if current == ARCHIVED:
        raise ModelUnavailable(f"model {model_id} is archived")
    return current


async def mark_loading(session: AsyncSession, model_id: int) -> str:
    """A worker starts loading the model (a model already RUNNING elsewhere stays RUNNING)."""
    return await _transition(session, model_id, LOADING, (READY,))


async def mark_ready(session: AsyncSession, model_id: int) -> str:
    """A worker finished loading it (RUNNING stays RUNNING: another worker's job still uses it)."""
    return await _transition(session, model_id, READY, (LOADING,))


async def mark_running(session: AsyncSession, model_id: int) -> str:
    """A job starts using the model."""
    return await _transition(session, model_id, RUNNING, (READY, LOADING, RUNNING))


async def mark_idle(session: AsyncSession, model_id: int) -> str:
    """A job with the model ended: back to READY unless another generation of it is still running.

    Call it after the job's generation has left the ``running`` status (same or earlier transaction). The model's
    row is locked first, so of two jobs finishing at once the second counts after the first has committed (FOR NO
    KEY UPDATE, as the status update itself: new generations' foreign-key checks on the row do not wait for it).
    """
    await session.execute(select(Model.id).where(Model.id == model_id).with_for_update(key_share=True))
    still_running = await session.scalar(
        select(func.count()).where(Generation.model_id == model_id, Generation.status == "running")
    )
    if still_running:
        return RUNNING
    return await _transition(session, model_id, READY, (RUNNING,))


async def mark_failed(session: AsyncSession, model_id: int, reason: str) -> str:
    """Loading or the checksum failed: FAILED with the reason (an archived model stays archived)."""
    return await _transition(session, model_id, FAILED, (READY, LOADING, RUNNING, FAILED), reason)


# -- verification ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    model_id: int
    alias: str
    outcome: str  # "ok", "recovered", "failed", "no checkpoint"
    detail: str


async def verify(
    session: AsyncSession, progress: Callable[[Model], None] | None = None, check: CheckpointCheck | None = None
) -> list[VerifyResult]:
    """Re-hash every recorded checkpoint (and, with ``check``, load it and encode a test clip): a mismatch, a
    missing file or a file that is no usable model marks the model FAILED with the reason, a FAILED model whose
    file is good again returns to READY. Archived models are checked but keep their status."""
    results = []
    for row in await list_models(session):
        if progress:
            progress(row)
        if not row.checkpoint_path:
            results.append(VerifyResult(row.id, row.alias, "no checkpoint", "no checkpoint file recorded"))
            continue
        problem = await asyncio.to_thread(checkpoint_problem, row.checkpoint_path, row.checkpoint_sha256)
        if problem is None and check is not None:
            problem = await _check_problem(check, Path(row.checkpoint_path))
        if problem:
            if row.status != ARCHIVED:
                await mark_failed(session, row.id, problem)
            results.append(VerifyResult(row.id, row.alias, "failed", problem))
        elif row.status == FAILED:
            await _transition(session, row.id, READY, (FAILED,))
            results.append(VerifyResult(row.id, row.alias, "recovered", "checksum matches again; READY"))
        else:
            results.append(VerifyResult(row.id, row.alias, "ok", f"sha256 {row.checkpoint_sha256[:16]}…"))
    await session.flush()
    return results


async def _check_problem(check: CheckpointCheck, path: Path) -> str | None:
    try:
        await asyncio.to_thread(check, path)
    except InvalidModelInput as exc:
        return exc.reason
    return None
