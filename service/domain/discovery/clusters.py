"""Clusters and the music map: what the offline clustering wrote back (``indexing.clustering``), read for callers.

Runs and clusters are readable by any authenticated caller; the items inside them (members, medoid
examples, map points) follow the visibility rule (own + public; admin: all) and never include soft-deleted
or archived items. The newest run of a model is its active one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from service.db.schema.models import Cluster, ClusterAssignment, ClusterRun, Generation, LatentEmbedding, Model
from service.domain.access import visibility
from service.domain.access.api_keys import Caller
from service.domain.errors import Conflict, InvalidInput, NotFound
from service.domain.pagination import decode_id_cursor, encode_id_cursor

TOP_TAGS = 5  # tags per cluster in a listing's summary


class ClusterRunInfo(msgspec.Struct):
    id: int
    k: int
    niter: int
    seed: int
    n_points: int
    inertia: float  # sum of (1 - cosine similarity to the assigned centroid)
    duration_seconds: float
    created_at: datetime
    active: bool
    params: dict[str, Any]


class Example(msgspec.Struct):
    latent_id: int
    generation_id: uuid.UUID
    score: float  # cosine similarity to the cluster centroid


class TagCount(msgspec.Struct):
    tag: str
    count: int


class ClusterSummary(msgspec.Struct):
    id: int
    label: int
    size: int
    medoid: Example | None  # the visible member closest to the centroid (None if none is visible)
    top_tags: list[TagCount]  # the visible members' most frequent tags: what a person reads the cluster as


class ClusterListing(msgspec.Struct):
    model: str
    run: ClusterRunInfo
    runs: list[ClusterRunInfo]
    clusters: list[ClusterSummary]


class ClusterMember(msgspec.Struct):
    latent_id: int
    generation_id: uuid.UUID
    score: float
    x: float
    y: float


class ClusterDetail(msgspec.Struct):
    id: int
    run_id: int
    model: str
    label: int
    size: int
    active: bool
    members: list[ClusterMember]
    next_cursor: str | None  # pass as ``cursor`` for the next page; None on the last page


class MapPoint(msgspec.Struct):
    latent_id: int
    generation_id: uuid.UUID
    x: float
    y: float
    cluster: int  # label in the run (0..k-1)
    cluster_id: int


class MapPage(msgspec.Struct):
    model: str
    run_id: int
    points: list[MapPoint]
    next_cursor: str | None


def visible_to(caller: Caller) -> ColumnElement[bool]:
    """Items the caller may see (own and public; admin: all), never deleted, and not archived: archived
    latents have left the catalogue the clusters describe."""
    return and_(visibility.visible_to(caller), Generation.archived_at.is_(None))


async def _model(session: AsyncSession, alias: str) -> Model:
    model = await session.scalar(select(Model).where(Model.alias == alias))
    if model is None:
        raise NotFound(f"unknown model alias {alias!r}")
    return model


def never_clustered(alias: str) -> str:
    """Why a model has no clusters, with the command that makes them (all its required options)."""
    return (
        f"model {alias!r} has no clustering run yet: run `soundalike index cluster --model {alias} --k K` "
        f"(K: the number of clusters, e.g. 16)"
    )


async def _runs(session: AsyncSession, model: Model) -> list[ClusterRun]:
    runs = list(
        await session.scalars(select(ClusterRun).where(ClusterRun.model_id == model.id).order_by(ClusterRun.id.desc()))
    )
    if not runs:
        raise NotFound(never_clustered(model.alias))
    return runs


def _run_info(run: ClusterRun, active_id: int) -> ClusterRunInfo:
    return ClusterRunInfo(
        id=run.id,
        k=run.k,
        niter=run.niter,
        seed=run.seed,
        n_points=run.n_points,
        inertia=run.inertia,
        duration_seconds=run.duration_seconds,
        created_at=run.created_at,
        active=run.id == active_id,
        params=run.params,
    )


def _members_query(caller: Caller):
    return (
        select(ClusterAssignment, LatentEmbedding.generation_id)
        .join(LatentEmbedding, LatentEmbedding.id == ClusterAssignment.latent_id)
        .join(Generation, Generation.id == LatentEmbedding.generation_id)
        .where(visible_to(caller))
    )


async def list_clusters(session: AsyncSession, caller: Caller, alias: str, run_id: int | None = None) -> ClusterListing:
    """The model's runs (newest first) and the clusters of the active run (or of ``run_id``)."""
    model = await _model(session, alias)
    runs = await _runs(session, model)
    run = runs[0] if run_id is None else next((r for r in runs if r.id == run_id), None)
    if run is None:
        raise NotFound(f"model {alias!r} has no clustering run {run_id}")
    clusters = list(await session.scalars(select(Cluster).where(Cluster.run_id == run.id).order_by(Cluster.label)))
    medoids = await session.execute(
        _members_query(caller)
        .where(ClusterAssignment.run_id == run.id)
        .ext(distinct_on(ClusterAssignment.cluster_id))
        .order_by(ClusterAssignment.cluster_id, ClusterAssignment.score.desc(), ClusterAssignment.latent_id)
    )
    examples = {a.cluster_id: Example(a.latent_id, gen, a.score) for a, gen in medoids.all()}
    tags = await _top_tags(session, caller, run.id)
    return ClusterListing(
        model=model.alias,
        run=_run_info(run, runs[0].id),
        runs=[_run_info(r, runs[0].id) for r in runs],
        clusters=[ClusterSummary(c.id, c.label, c.size, examples.get(c.id), tags.get(c.id, [])) for c in clusters],
    )


async def _top_tags(session: AsyncSession, caller: Caller, run_id: int) -> dict[int, list[TagCount]]:
    """Each cluster's ``TOP_TAGS`` most frequent tags among its visible members, with their counts."""
    members = (
        _members_query(caller)
        .with_only_columns(ClusterAssignment.cluster_id, func.unnest(Generation.tags).label("tag"))
        .where(ClusterAssignment.run_id == run_id)
        .subquery()
    )
    count = func.count().label("count")
    rank = func.row_number().over(partition_by=members.c.cluster_id, order_by=(count.desc(), members.c.tag))
    counted = (
        select(members.c.cluster_id, members.c.tag, count, rank.label("rank"))
        .group_by(members.c.cluster_id, members.c.tag)
        .subquery()
    )
    rows = await session.execute(
        select(counted.c.cluster_id, counted.c.tag, counted.c.count)
        .where(counted.c.rank <= TOP_TAGS)
        .order_by(counted.c.cluster_id, counted.c.rank)
    )
    top: dict[int, list[TagCount]] = {}
    for cluster_id, tag, n in rows:
        top.setdefault(cluster_id, []).append(TagCount(tag, n))
    return top


async def cluster_detail(
    session: AsyncSession, caller: Caller, cluster_id: int, limit: int, cursor: str | None
) -> ClusterDetail:
    """One cluster and a page of its visible members, in latent id order after ``cursor``."""
    after = decode_id_cursor(cursor)
    row = (
        await session.execute(
            select(Cluster, ClusterRun, Model.alias)
            .join(ClusterRun, ClusterRun.id == Cluster.run_id)
            .join(Model, Model.id == ClusterRun.model_id)
            .where(Cluster.id == cluster_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"no cluster {cluster_id}")
    cluster, run, alias = row
    active_id = await session.scalar(
        select(ClusterRun.id).where(ClusterRun.model_id == run.model_id).order_by(ClusterRun.id.desc()).limit(1)
    )
    page = await session.execute(
        _members_query(caller)
        .where(ClusterAssignment.cluster_id == cluster.id, ClusterAssignment.latent_id > after)
        .order_by(ClusterAssignment.latent_id)
        .limit(limit + 1)
    )
    rows = page.all()
    members = [ClusterMember(a.latent_id, gen, a.score, a.x, a.y) for a, gen in rows[:limit]]
    return ClusterDetail(
        id=cluster.id,
        run_id=run.id,
        model=alias,
        label=cluster.label,
        size=cluster.size,
        active=run.id == active_id,
        members=members,
        next_cursor=encode_id_cursor(members[-1].latent_id) if len(rows) > limit else None,
    )


async def map_points(session: AsyncSession, caller: Caller, alias: str, limit: int, cursor: str | None) -> MapPage:
    """A page of the active run's 2-D map: the caller's visible points in latent id order after ``cursor``."""
    after = decode_id_cursor(cursor)
    model = await _model(session, alias)
    run = (await _runs(session, model))[0]
    page = await session.execute(
        select(ClusterAssignment, LatentEmbedding.generation_id, Cluster.label)
        .join(Cluster, Cluster.id == ClusterAssignment.cluster_id)
        .join(LatentEmbedding, LatentEmbedding.id == ClusterAssignment.latent_id)
        .join(Generation, Generation.id == LatentEmbedding.generation_id)
        .where(ClusterAssignment.run_id == run.id, ClusterAssignment.latent_id > after, visible_to(caller))
        .order_by(ClusterAssignment.latent_id)
        .limit(limit + 1)
    )
    rows = page.all()
    points = [MapPoint(a.latent_id, gen, a.x, a.y, label, a.cluster_id) for a, gen, label in rows[:limit]]
    return MapPage(model.alias, run.id, points, encode_id_cursor(points[-1].latent_id) if len(rows) > limit else None)


# What search and variants ask of the clusters: a filter, the active run's labels, a cluster's central members.


def in_cluster(cluster_id: int) -> ColumnElement[bool]:
    """Generations whose latent the clustering run put in ``cluster_id`` (a filter clause on ``generations``)."""
    latent = aliased(LatentEmbedding)  # the search's own latent_embeddings must not correlate into this subquery
    members = (
        select(latent.generation_id)
        .join(ClusterAssignment, ClusterAssignment.latent_id == latent.id)
        .where(ClusterAssignment.cluster_id == cluster_id)
    )
    return Generation.id.in_(members)


async def check_cluster_of(session: AsyncSession, model: Model, cluster_id: int, field: str) -> None:
    """404 for an unknown cluster, 422 for a cluster of another model's latent space."""
    owner_model = await session.scalar(
        select(ClusterRun.model_id).join(Cluster, Cluster.run_id == ClusterRun.id).where(Cluster.id == cluster_id)
    )
    if owner_model is None:
        raise NotFound(f"no cluster {cluster_id} ({field})")
    if owner_model != model.id:
        raise InvalidInput(
            field,
            f"cluster {cluster_id} belongs to another model than {model.alias!r}; latents of two models never mix",
        )


async def active_run_id(session: AsyncSession, model: Model) -> int:
    """The newest run of the model; 409 when the model was never clustered."""
    run_id = await session.scalar(
        select(ClusterRun.id).where(ClusterRun.model_id == model.id).order_by(ClusterRun.id.desc()).limit(1)
    )
    if run_id is None:
        raise Conflict(never_clustered(model.alias))
    return run_id


async def labels_of(session: AsyncSession, run_id: int, latent_ids: list[int]) -> dict[int, tuple[int, int]]:
    """``latent_id -> (cluster_id, label)`` in one run; latents newer than the run are absent."""
    rows = await session.execute(
        select(ClusterAssignment.latent_id, Cluster.id, Cluster.label)
        .join(Cluster, Cluster.id == ClusterAssignment.cluster_id)
        .where(ClusterAssignment.run_id == run_id, ClusterAssignment.latent_id.in_(latent_ids))
    )
    return {latent_id: (cluster_id, label) for latent_id, cluster_id, label in rows}


async def central_members(session: AsyncSession, caller: Caller, cluster_id: int, limit: int | None) -> list[uuid.UUID]:
    """A cluster's visible live members, the one closest to the centroid first (404 for an unknown cluster)."""
    if await session.get(Cluster, cluster_id) is None:
        raise NotFound(f"no cluster {cluster_id} (cluster_id)")
    query = (
        select(LatentEmbedding.generation_id)
        .join(ClusterAssignment, ClusterAssignment.latent_id == LatentEmbedding.id)
        .join(Generation, Generation.id == LatentEmbedding.generation_id)
        .where(ClusterAssignment.cluster_id == cluster_id, visible_to(caller))
        .order_by(ClusterAssignment.score.desc(), ClusterAssignment.latent_id)
        .limit(limit)
    )
    return list(await session.scalars(query))
