"""Clusters of the catalogue and the music map (written by ``soundalike index cluster``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import PathParameter, QueryParameter

from service.api.deps import CallerDep, SessionDep
from service.api.hygiene import MAX_BIGINT, MAX_INT
from service.domain.discovery import clusters

Alias = Annotated[str, QueryParameter(name="model", min_length=1, description="Model alias")]
Cursor = Annotated[str | None, QueryParameter(description="The next_cursor of the previous page")]


class ClustersController(Controller):
    path = "/v1/clusters"
    tags = ["clusters"]

    @get(summary="Clustering runs of a model and the clusters of the active run (size, medoid example)")
    async def list_clusters(
        self,
        db_session: SessionDep,
        caller: CallerDep,
        alias: Alias,
        run: Annotated[int | None, QueryParameter(ge=1, le=MAX_INT, description="A run id, not the active run")] = None,
    ) -> clusters.ClusterListing:
        return await clusters.list_clusters(db_session, caller, alias, run)

    @get("/{cluster_id:int}", summary="One cluster and a page of its members (visible items only)")
    async def get_cluster(
        self,
        db_session: SessionDep,
        caller: CallerDep,
        cluster_id: Annotated[int, PathParameter(ge=1, le=MAX_BIGINT)],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        cursor: Cursor = None,
    ) -> clusters.ClusterDetail:
        return await clusters.cluster_detail(db_session, caller, cluster_id, limit, cursor)


class MapController(Controller):
    path = "/v1/map"
    tags = ["clusters"]

    @get(summary="The music map of a model's active run: points (id, x, y, cluster), paginated")
    async def get_map(
        self,
        db_session: SessionDep,
        caller: CallerDep,
        alias: Alias,
        limit: Annotated[int, QueryParameter(ge=1, le=10000)] = 1000,
        cursor: Cursor = None,
    ) -> clusters.MapPage:
        return await clusters.map_points(db_session, caller, alias, limit, cursor)
