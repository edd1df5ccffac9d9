"""A filter that keeps 1% of rows still yields `limit` exact results: pgvector's iterative HNSW scans.

The planner is forced onto the HNSW index (as it chooses on a large table) so the test exercises the index path,
and a control query without iterative scans shows the filter would otherwise starve the result."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sqlalchemy import text

from service.db.engine import create_engine, session_factory
from service.domain.access.api_keys import Caller
from service.domain.discovery import search as domain
from service.domain.discovery.search import SearchFilter, Target
from tests.integration.api_helpers import api_client, api_settings, bearer_for
from tests.integration.search.conftest import Item, clustered, exact_ids, insert

N, RARE = 3000, 30  # 1% selective


@pytest.fixture
def rare_catalogue(owner_conn, tiny_model) -> list[Item]:
    rng = np.random.default_rng(11)
    vectors = clustered(rng, N, centres=6)
    items = [
        Item(
            id=uuid.uuid4(),
            model_id=tiny_model["id"],
            vector=v,
            owner="alice",
            visibility="public",
            tags=["rare" if n % (N // RARE) == 0 else "common"],
        )
        for n, v in enumerate(vectors)
    ]
    insert(owner_conn, items)
    owner_conn.execute("ANALYZE generations; ANALYZE latent_embeddings")
    return items


def queries(items: list[Item], count: int = 5) -> list[np.ndarray]:
    common = [i for i in items if "common" in i.tags]
    return [common[j * 97].vector for j in range(count)]


async def test_api_returns_limit_rows_at_one_percent_selectivity(database, rare_catalogue, tmp_path):
    rare = [i for i in rare_catalogue if "rare" in i.tags]
    assert len(rare) == RARE
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        alice = await bearer_for(client, "alice", "reader")
        for query in queries(rare_catalogue):
            for limit in (10, 25):
                response = await client.post(
                    "/v1/search",
                    headers=alice,
                    json={"vector": query.tolist(), "limit": limit, "filter": {"tags_all": ["rare"]}},
                )
                found = [uuid.UUID(i["id"]) for i in response.json()["items"]]
                assert len(found) == limit
                assert found == exact_ids(rare, query, limit)


async def force_index(session) -> None:
    """What the planner picks on a large table: the HNSW index rather than a scan and sort (this transaction)."""
    for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
        await session.execute(text(f"SET LOCAL {setting} = off"))


async def test_selective_filters_are_scanned_exactly(database, settings, rare_catalogue):
    """1% of 3000 rows is under EXACT_BELOW_ROWS: one statement finds the candidates through the tag index and
    ranks them exactly (no HNSW, no settings), recall 1; a cursor pages on from the last hit."""
    rare = [i for i in rare_catalogue if "rare" in i.tags]
    engine = create_engine(database.app_url, settings.database)
    caller = Caller(owner="alice", role="reader", key_id=0)
    rare_only = SearchFilter(tags_all=["rare"])
    try:
        async with session_factory(engine)() as session:
            model = await session.get(domain.Model, rare_catalogue[0].model_id)
            target = Target(model, queries(rare_catalogue)[0])
            rows = (await session.execute(domain.filtered_statement(caller, target, rare_only, 10))).all()
            assert {row.candidates for row in rows} == {RARE} and RARE < domain.EXACT_BELOW_ROWS
            expected = exact_ids(rare, target.vector, 20)
            assert [row.generation_id for row in rows] == expected[:10]
            statement = domain.filtered_statement(caller, target, rare_only, 10)
            plan = "\n".join(
                r[0]
                for r in await session.execute(text("EXPLAIN " + str(statement.compile())), statement.compile().params)
            )
            assert "ix_latent_embeddings_embedding_halfvec_hnsw" not in plan and "Hash" not in plan, plan
            hits = await domain.nearest(session, caller, target, rare_only, 10)
            assert [h.generation_id for h in hits] == expected[:10]
            after = (hits[-1].distance, hits[-1].latent_id)
            page = await domain.nearest(session, caller, target, rare_only, 10, after=after)
            assert [h.generation_id for h in page] == expected[10:20]
    finally:
        await engine.dispose()


async def test_a_filter_that_leaves_nothing_answers_no_hits(database, settings, rare_catalogue):
    engine = create_engine(database.app_url, settings.database)
    caller = Caller(owner="alice", role="reader", key_id=0)
    try:
        async with session_factory(engine)() as session:
            target = Target(await session.get(domain.Model, rare_catalogue[0].model_id), queries(rare_catalogue)[0])
            assert await domain.nearest(session, caller, target, SearchFilter(tags_all=["absent"]), 10) == []
            # Statements are kept per shape (the vector is a parameter): another caller never gets alice's.
            assert len(await domain.nearest(session, caller, target, SearchFilter(mine=True), 10)) == 10
            nobody = Caller(owner="mallory", role="reader", key_id=0)  # visibility is part of the statement
            assert await domain.nearest(session, nobody, target, SearchFilter(mine=True), 10) == []
            other = Target(target.model, queries(rare_catalogue)[1])  # same shape, another vector
            hits = await domain.nearest(session, caller, other, SearchFilter(tags_all=["rare"]), 10)
            rare = [i for i in rare_catalogue if "rare" in i.tags]
            assert [h.generation_id for h in hits] == exact_ids(rare, other.vector, 10)
    finally:
        await engine.dispose()


async def test_index_path_with_iterative_scan_versus_without(database, settings, rare_catalogue, monkeypatch):
    monkeypatch.setattr(domain, "EXACT_BELOW_ROWS", 1)  # as on a table where 1% is many rows: the HNSW path
    domain._shapes.clear()  # statements kept by earlier tests were built with the real threshold
    rare = [i for i in rare_catalogue if "rare" in i.tags]
    engine = create_engine(database.app_url, settings.database)
    caller = Caller(owner="alice", role="reader", key_id=0)
    recalls = []
    try:
        async with session_factory(engine)() as session:
            model = await session.get(domain.Model, rare_catalogue[0].model_id)
            session.expunge(model)  # kept as read across the rollbacks below
            for query in queries(rare_catalogue):
                await force_index(session)
                target = Target(model, query)
                statement = domain.nearest_statement(caller, target, SearchFilter(tags_all=["rare"]), 10)
                hits = await domain.nearest(session, caller, target, SearchFilter(tags_all=["rare"]), 10)
                plan = "\n".join(
                    r[0]
                    for r in await session.execute(
                        text("EXPLAIN " + str(statement.compile(compile_kwargs={"literal_binds": False}))),
                        statement.compile().params,
                    )
                )
                assert "ix_latent_embeddings_embedding_halfvec_hnsw" in plan, plan
                assert len(hits) == 10
                recalls.append(len({h.generation_id for h in hits} & set(exact_ids(rare, query, 10))) / 10)
                await session.rollback()
                await force_index(session)
                await session.execute(text("SET LOCAL hnsw.iterative_scan = off"))
                starved = await session.execute(statement)
                assert len(starved.all()) < 10  # the control: post-filtering one ef_search window
                await session.rollback()
            monkeypatch.undo()  # statements kept per shape follow the threshold back: exact again
            hits = await domain.nearest(session, caller, Target(model, query), SearchFilter(tags_all=["rare"]), 10)
            assert [h.generation_id for h in hits] == exact_ids(rare, query, 10)
        assert np.mean(recalls) >= 0.9, recalls  # HNSW is approximate; the exact-scan path is tested elsewhere
    finally:
        await engine.dispose()
