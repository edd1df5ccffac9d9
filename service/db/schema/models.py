"""ORM models. Alembic migrations create the schema; these classes must match it (a test checks for drift)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import HALFVEC, Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    cast,
    column,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

LATENT_DIM = 512
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
LATENT_HNSW_INDEX = "ix_latent_embeddings_embedding_halfvec_hnsw"
SEGMENT_HNSW_INDEX = "ix_latent_segments_embedding_halfvec_hnsw"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MODEL_SOURCE_TYPES = ("builtin", "local", "imported", "remote")
MODEL_STATUSES = ("READY", "LOADING", "RUNNING", "FAILED", "ARCHIVED")
GENERATION_KINDS = ("text2music", "variant", "style_transfer", "import")
GENERATION_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
FAILURE_CLASSES = (
    "bad_input",
    "model_error",
    "resource_exhaustion",
    "infrastructure",
)  # see domain.generation.failures
VISIBILITIES = ("private", "public")
API_KEY_ROLES = ("reader", "creator", "admin")
INFERENCE_OPERATIONS = ("load", "generate", "encode", "inference")  # see domain.models.inference_stats


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK that keeps a text column inside a fixed vocabulary."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def created_at_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def half_precision(embedding: Any) -> Any:
    """``embedding::halfvec(512)``: what the HNSW indexes hold and the index scans order by (revision
    0015_halfvec_hnsw). The column stays ``vector(512)``: exact distances, re-ranking, exports and FAISS read it."""
    return cast(embedding, HALFVEC(LATENT_DIM))


def hnsw_cosine_index(name: str) -> Index:
    """The HNSW index (cosine) over a table's ``embedding`` column in half precision, with the project's build
    parameters: half the memory of a ``vector`` index at the same recall (docs/performance.md)."""
    return Index(
        name,
        half_precision(column("embedding")).label("embedding_half"),
        postgresql_using="hnsw",
        postgresql_with={"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
        postgresql_ops={"embedding_half": "halfvec_cosine_ops"},
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Model(Base):
    """A model version in the registry. ``source_id`` is the id the model has at its source
    (the built-in name, or the ``model_id`` of a legacy ``model.list`` line)."""

    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint(one_of("source_type", MODEL_SOURCE_TYPES), name="source_type"),
        CheckConstraint(one_of("status", MODEL_STATUSES), name="status"),
        CheckConstraint("latent_dim > 0", name="latent_dim_positive"),
        # At most one default model: a unique index over the rows where is_default holds.
        Index("uq_models_single_default", "is_default", unique=True, postgresql_where=text("is_default")),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    source_id: Mapped[str] = mapped_column(Text, unique=True)
    alias: Mapped[str] = mapped_column(Text, unique=True)
    source_type: Mapped[str] = mapped_column(Text)
    author_repo: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    config_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_sha256: Mapped[str | None] = mapped_column(Text)
    latent_dim: Mapped[int] = mapped_column(Integer, server_default=text(str(LATENT_DIM)))
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    clip_seconds: Mapped[float | None] = mapped_column(Double)
    status: Mapped[str] = mapped_column(Text, server_default=text("'READY'"))
    status_reason: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ModelInferenceStats(Base):
    """How one model version has run, summed over every process that ran it (revision 0014): calls, latency
    (a histogram over ``domain.models.inference_stats.LATENCY_BOUNDS``) and memory, per operation."""

    __tablename__ = "model_inference_stats"
    __table_args__ = (CheckConstraint(one_of("operation", INFERENCE_OPERATIONS), name="operation"),)

    model_id: Mapped[int] = mapped_column(Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    operation: Mapped[str] = mapped_column(Text, primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    items: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    errors: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    total_seconds: Mapped[float] = mapped_column(Double, server_default=text("0"))
    max_seconds: Mapped[float] = mapped_column(Double, server_default=text("0"))
    latency_buckets: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    rss_growth_bytes: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Generation(Base):
    """One produced (or imported) clip: who asked, with which model and parameters, and how it went."""

    __tablename__ = "generations"
    __table_args__ = (
        CheckConstraint(one_of("kind", GENERATION_KINDS), name="kind"),
        CheckConstraint(one_of("status", GENERATION_STATUSES), name="status"),
        CheckConstraint(one_of("visibility", VISIBILITIES), name="visibility"),
        CheckConstraint(one_of("failure_class", FAILURE_CLASSES), name="failure_class"),
        Index("ix_generations_owner_created_at", "owner", "created_at"),
        Index("ix_generations_model_id_created_at", "model_id", "created_at"),
        # No pending list (0013_search_storage): a tag lookup never scans unmerged insertions.
        Index("ix_generations_tags", "tags", postgresql_using="gin", postgresql_with={"fastupdate": "off"}),
        Index("ix_generations_parent_id", "parent_id"),
        Index("ix_generations_status_created_at", "status", "created_at"),
        Index("ix_generations_batch_id", "batch_id"),
        Index("ix_generations_neighbor_id", "neighbor_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid())
    owner: Mapped[str] = mapped_column(Text)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    kind: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("generations.id"))
    neighbor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("generations.id"))
    error: Mapped[str | None] = mapped_column(Text)
    failure_class: Mapped[str | None] = mapped_column(Text)  # why it failed: FAILURE_CLASSES
    visibility: Mapped[str] = mapped_column(Text, server_default=text("'private'"))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    created_at: Mapped[datetime] = created_at_column()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    job_id: Mapped[int | None] = mapped_column(BigInteger)  # the procrastinate job that produces it
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"))
    # imports: the model's in-domain score (0-1) and whether it reached the model's threshold (0010_segments)
    in_domain: Mapped[float | None] = mapped_column(Double)
    in_domain_ok: Mapped[bool | None] = mapped_column(Boolean)


BATCH_KINDS = ("variant", "reencode")


class Batch(Base):
    """A batch request: variants of many sources (progress counted from its generations), or a re-encode of a
    catalogue into another model's space (progress counted from its ``reencode_items``)."""

    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(one_of("kind", BATCH_KINDS), name="kind"),
        CheckConstraint("total > 0", name="total_positive"),
        Index("ix_batches_owner_created_at", "owner", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid())
    owner: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at_column()
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LatentEmbedding(Base):
    """The 512-d latent of a generation in one model's space (an item has at most one per model, and may have
    several after a re-encode). ``id`` is the int64 FAISS mirrors use. ``embedding`` has MAIN storage (kept in
    the row, not TOASTed; set by 0013_search_storage, which SQLAlchemy cannot declare)."""

    __tablename__ = "latent_embeddings"
    __table_args__ = (
        UniqueConstraint("generation_id", "model_id"),
        hnsw_cosine_index(LATENT_HNSW_INDEX),
        Index("ix_latent_embeddings_model_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    embedding: Mapped[Any] = mapped_column(Vector(LATENT_DIM))
    created_at: Mapped[datetime] = created_at_column()


class ArchivedLatent(Base):
    """A latent of an archived generation: out of the HNSW index (no vector index here), still readable."""

    __tablename__ = "archived_latents"
    __table_args__ = (UniqueConstraint("generation_id", "model_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    embedding: Mapped[Any] = mapped_column(Vector(LATENT_DIM))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime] = created_at_column()


class LatentSegment(Base):
    """The latent of one window (start to end, in seconds) of a file longer than one model window, in one model's
    space; visibility, deletion and archival come from its generation (revision 0010_segments)."""

    __tablename__ = "latent_segments"
    __table_args__ = (
        UniqueConstraint("generation_id", "model_id", "start_seconds"),
        CheckConstraint("end_seconds > start_seconds AND start_seconds >= 0", name="window"),
        hnsw_cosine_index(SEGMENT_HNSW_INDEX),
        Index("ix_latent_segments_model_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    start_seconds: Mapped[float] = mapped_column(Double)
    end_seconds: Mapped[float] = mapped_column(Double)
    in_domain: Mapped[float | None] = mapped_column(Double)
    embedding: Mapped[Any] = mapped_column(Vector(LATENT_DIM))
    created_at: Mapped[datetime] = created_at_column()


REENCODE_ITEM_STATUSES = ("pending", "succeeded", "failed", "cancelled")


class ReencodeItem(Base):
    """One generation of a re-encode batch: the chunk (one job) it belongs to and how its encode went."""

    __tablename__ = "reencode_items"
    __table_args__ = (
        CheckConstraint(one_of("status", REENCODE_ITEM_STATUSES), name="status"),
        Index("ix_reencode_items_batch_id_chunk", "batch_id", "chunk"),
        Index("ix_reencode_items_generation_id", "generation_id"),
    )

    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AudioAsset(Base):
    """Where a generation's audio lives in the blob store, and what it is."""

    __tablename__ = "audio_assets"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    generation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), unique=True)
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sample_rate: Mapped[int] = mapped_column(Integer)
    duration_seconds: Mapped[float] = mapped_column(Double)
    format: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class ApiKey(Base):
    """An API key, stored as a keyed hash; ``prefix`` identifies it in listings without revealing it."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(one_of("role", API_KEY_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    prefix: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text, index=True)
    role: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# -- indexing (revision 0004_indexing) --------------------------------------------------------------------


class LatentChange(Base):
    """One latent whose mirror state may have changed, appended by triggers in the writer's own transaction.

    ``xid`` is the writing transaction's id; the FAISS mirror re-reads the log from the ``xmin`` of the snapshot
    it last read (see docs/indexing.md), so rows committed out of id order are never missed.
    """

    __tablename__ = "latent_changes"
    __table_args__ = (Index("ix_latent_changes_model_id_xid", "model_id", "xid"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    latent_id: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[int] = mapped_column(Integer)
    xid: Mapped[int] = mapped_column(BigInteger, server_default=text("(pg_current_xact_id()::text)::bigint"))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LatentChangePruning(Base):
    """Single row: the change log holds every change from ``pruned_below`` on (older mirrors rebuild)."""

    __tablename__ = "latent_change_pruning"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pruned_below: Mapped[int] = mapped_column(BigInteger)
    pruned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ClusterRun(Base):
    """One offline k-means over a model's mirror; the newest run of a model is its active one."""

    __tablename__ = "cluster_runs"
    __table_args__ = (
        CheckConstraint("k > 0", name="k_positive"),
        Index("ix_cluster_runs_model_id_id", "model_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    k: Mapped[int] = mapped_column(Integer)
    niter: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    n_points: Mapped[int] = mapped_column(Integer)
    inertia: Mapped[float] = mapped_column(Double)
    sizes: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    mirror_watermark: Mapped[int] = mapped_column(BigInteger)
    duration_seconds: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = created_at_column()


class Cluster(Base):
    """A cluster of one run: its label (0..k-1), size and centroid (unit norm, the model's space)."""

    __tablename__ = "clusters"
    __table_args__ = (UniqueConstraint("run_id", "label"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("cluster_runs.id", ondelete="CASCADE"))
    label: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    centroid: Mapped[Any] = mapped_column(Vector(LATENT_DIM))


class ClusterAssignment(Base):
    """Which cluster a latent fell in, its similarity to the centroid and its 2-D map position (PCA)."""

    __tablename__ = "cluster_assignments"
    __table_args__ = (
        Index("ix_cluster_assignments_cluster_id_latent_id", "cluster_id", "latent_id"),
        Index("ix_cluster_assignments_latent_id", "latent_id"),
    )

    run_id: Mapped[int] = mapped_column(ForeignKey("cluster_runs.id", ondelete="CASCADE"), primary_key=True)
    latent_id: Mapped[int] = mapped_column(ForeignKey("latent_embeddings.id", ondelete="CASCADE"), primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(REAL)
    x: Mapped[float] = mapped_column(REAL)
    y: Mapped[float] = mapped_column(REAL)


# -- live events (revision 0006_events) --------------------------------------------------------------------

EVENT_TYPES = ("generation", "batch")


class Event(Base):
    """A status change of an owner's generation or batch, appended by triggers on ``generations`` in the
    writer's transaction (one owner's events commit in id order); ``GET /v1/events`` streams them."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(one_of("type", EVENT_TYPES), name="type"),
        Index("ix_events_owner_id", "owner", "id"),
        Index("ix_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    owner: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    subject_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at_column()


# -- webhooks (revision 0009_webhooks) ---------------------------------------------------------------------

WEBHOOK_DELIVERY_STATUSES = ("pending", "succeeded", "failed", "cancelled")
WEBHOOK_DELIVERY_TYPES = (*EVENT_TYPES, "ping")


class Webhook(Base):
    """A URL an owner registered for its events; ``secret`` signs every delivery (HMAC-SHA256)."""

    __tablename__ = "webhooks"
    __table_args__ = (Index("ix_webhooks_owner_created_at", "owner", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid())
    owner: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the secret before the last rotation signs beside the new one until then (revision 0012)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One event (or test ping) for one webhook: added by triggers, queued as a job, retried with backoff."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(one_of("status", WEBHOOK_DELIVERY_STATUSES), name="status"),
        CheckConstraint(one_of("type", WEBHOOK_DELIVERY_TYPES), name="type"),
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GenerationFieldsMixin:
    """Generation request fields a preset or an owner's defaults fill in when a request leaves them out
    (NULL: not set; revision 0011)."""

    steps: Mapped[int | None] = mapped_column(Integer)
    guidance_scale: Mapped[float | None] = mapped_column(Double)
    model: Mapped[str | None] = mapped_column(Text)  # a model alias, resolved when the request is made
    batch_size: Mapped[int | None] = mapped_column(Integer)


class Preset(GenerationFieldsMixin, Base):
    """A named prompt + parameter set ("style template"); a public one anyone may list and apply."""

    __tablename__ = "presets"
    __table_args__ = (
        CheckConstraint(one_of("visibility", VISIBILITIES), name="visibility"),
        UniqueConstraint("owner", "name"),
        Index("ix_presets_visibility_created_at", "visibility", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid())
    owner: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    prompt: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(Text, server_default=text("'private'"))
    created_at: Mapped[datetime] = created_at_column()


class GenerationDefaults(GenerationFieldsMixin, Base):
    """One owner's defaults for the generation fields its requests (and presets) leave out."""

    __tablename__ = "generation_defaults"
    __table_args__ = (CheckConstraint(one_of("visibility", VISIBILITIES), name="visibility"),)

    owner: Mapped[str] = mapped_column(Text, primary_key=True)
    visibility: Mapped[str | None] = mapped_column(Text)  # of the clips a request makes
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
