"""Issue 17: the HNSW indexes hold the latents in half precision (0015_halfvec_hnsw). The search statements order
by exactly the indexed expression (or the planner would not use the index), report full-precision distances,
and the migration keeps an index built by hand beforehand (CREATE INDEX CONCURRENTLY, no downtime)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import numpy as np
import psycopg
import pytest

from service.db.engine import connect_sync, create_engine, session_factory
from service.db.schema import migrate
from service.db.schema.models import LATENT_HNSW_INDEX, SEGMENT_HNSW_INDEX
from service.domain.access.api_keys import Caller
from service.domain.discovery import search as domain
from service.domain.discovery.search import SearchFilter, Target
from service.domain.discovery.segment_search import segment_statement
from service.errors import DatabaseError
from tests.integration.search.conftest import Item, add_model, clustered, insert

ALICE = Caller("alice", "reader", 0)
BEFORE = "0014_model_inference_stats"
HALF = "((embedding)::halfvec(512)) halfvec_cosine_ops"


@pytest.fixture
def seeded(owner_conn, empty_tables) -> tuple[int, list[Item]]:
    """A model's 300 public latents and a window of each of the first 50 (no trained model needed)."""
    model_id = add_model(owner_conn, "halfvec")
    rng = np.random.default_rng(5)
    items = [
        Item(uuid.uuid4(), model_id, v, "alice", "public", ["piano" if n % 4 == 0 else "guitar"])
        for n, v in enumerate(clustered(rng, 300))
    ]
    insert(owner_conn, items)
    add_windows(owner_conn, items[:50])
    owner_conn.execute("ANALYZE latent_embeddings; ANALYZE latent_segments")
    return model_id, items


def add_windows(conn, items: list[Item]) -> None:
    for n, item in enumerate(items):
        conn.execute(
            "INSERT INTO latent_segments (generation_id, model_id, start_seconds, end_seconds, embedding) "
            "VALUES (%s, %s, %s, %s, %s)",
            (item.id, item.model_id, 0.0, 2.0 + n, item.vector),
        )


def plan_of(conn, sql: str, params: dict) -> str:
    """EXPLAIN as the planner sees a large table (no scan and sort of a few hundred rows), custom plan."""
    with conn.transaction():
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.execute(f"SET LOCAL {setting} = off")
        return "\n".join(row[0] for row in conn.execute("EXPLAIN " + sql, params))


def shape_params(shape: domain.Shape, vector: np.ndarray) -> dict:
    return {**shape.params, domain.QUERY_VECTOR.key: vector}


def test_the_search_statements_walk_the_half_precision_indexes(database, seeded):
    model = domain.Model(id=seeded[0], alias="halfvec", latent_dim=512)
    query = seeded[1][0].vector
    target = Target(model, query)
    with connect_sync(database.app_url) as conn:
        unfiltered = domain._shaped(domain.nearest_statement, ALICE, target, SearchFilter(), 10, False, None)
        plan = plan_of(conn, unfiltered.sql, shape_params(unfiltered, query))
        assert f"Index Scan using {LATENT_HNSW_INDEX}" in plan, plan
        assert "(embedding)::halfvec(512) <=>" in plan, plan
        # a filter the exact path does not answer: the same index, the filter in the scan (iterative scans)
        filtered = domain._shaped(domain.nearest_statement, ALICE, target, SearchFilter(tags_all=["piano"]), 10)
        assert f"Index Scan using {LATENT_HNSW_INDEX}" in plan_of(conn, filtered.sql, shape_params(filtered, query))
        exact = domain._shaped(domain.nearest_statement, ALICE, target, SearchFilter(), 10, True, None)
        assert LATENT_HNSW_INDEX not in plan_of(conn, exact.sql, shape_params(exact, query))
        segments = segment_statement(ALICE, target, query, SearchFilter(), 10).compile(dialect=domain.PSYCOPG)
        assert f"Index Scan using {SEGMENT_HNSW_INDEX}" in plan_of(conn, str(segments), segments.params)


async def test_hits_carry_full_precision_distances_in_full_precision_order(database, settings, seeded):
    rng = np.random.default_rng(3)
    engine = create_engine(database.app_url, settings.database)
    try:
        async with session_factory(engine)() as session:
            model = await session.get(domain.Model, seeded[0])
            live = {i.id: i.vector for i in seeded[1]}
            for _ in range(5):
                query = domain.check_vector(rng.standard_normal(512), 512)
                hits = await domain.nearest(session, ALICE, Target(model, query), SearchFilter(), 20)
                assert len(hits) == 20
                exact = [
                    1.0 - float(live[h.generation_id] @ query / np.linalg.norm(live[h.generation_id])) for h in hits
                ]
                assert [h.distance for h in hits] == pytest.approx(exact, abs=1e-6)  # not halfvec's ~1e-3
                assert [h.distance for h in hits] == sorted(h.distance for h in hits)
                assert all(h.rank == pytest.approx(h.distance, abs=1e-2) for h in hits)
    finally:
        await engine.dispose()


def _seed(conn) -> None:
    model_id = add_model(conn, "seeded")
    rng = np.random.default_rng(7)
    items = [Item(uuid.uuid4(), model_id, v, "alice", "public", ["x"]) for v in clustered(rng, 20)]
    insert(conn, items)
    add_windows(conn, items[:4])


def _hnsw_indexes(conn) -> dict[str, tuple[str, bool]]:
    rows = conn.execute(
        "SELECT c.relname, pg_get_indexdef(c.oid), i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = "
        "i.indexrelid WHERE i.indrelid IN ('latent_embeddings'::regclass, 'latent_segments'::regclass) "
        "AND pg_get_indexdef(c.oid) LIKE '%USING hnsw%'"
    ).fetchall()
    return {name: (indexdef, valid) for name, indexdef, valid in rows}


def _oid(conn, index: str) -> int:
    return conn.execute("SELECT to_regclass(%s)::oid", (index,)).fetchone()[0]


def test_0015_keeps_an_index_built_by_hand_and_round_trips(make_database):
    """The no-downtime path: the half-precision index built CONCURRENTLY before upgrading is kept (not built a
    second time); one a failed concurrent build left invalid is rebuilt; one of another shape is refused."""
    handle, settings = make_database("halfvec_hnsw")
    migrate.upgrade(handle.migration_url, settings.app_role, BEFORE)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        _seed(conn)
        conn.execute(
            f"CREATE INDEX CONCURRENTLY {LATENT_HNSW_INDEX} ON latent_embeddings USING hnsw "
            "((embedding::halfvec(512)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        with pytest.raises(psycopg.errors.UniqueViolation):  # four windows of one model: the build fails
            conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {SEGMENT_HNSW_INDEX} ON latent_segments (model_id)")
        assert _hnsw_indexes(conn).keys() == {
            "ix_latent_embeddings_embedding_hnsw",
            "ix_latent_segments_embedding_hnsw",
            LATENT_HNSW_INDEX,
        }
        built_by_hand = _oid(conn, LATENT_HNSW_INDEX)

    migrate.upgrade(handle.migration_url, settings.app_role)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        indexes = _hnsw_indexes(conn)
        assert indexes.keys() == {LATENT_HNSW_INDEX, SEGMENT_HNSW_INDEX}
        assert all(HALF in indexdef and valid for indexdef, valid in indexes.values()), indexes
        assert _oid(conn, LATENT_HNSW_INDEX) == built_by_hand

    migrate.downgrade(handle.migration_url, settings.app_role, BEFORE)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        indexes = _hnsw_indexes(conn)
        assert indexes.keys() == {"ix_latent_embeddings_embedding_hnsw", "ix_latent_segments_embedding_hnsw"}
        assert all("(embedding vector_cosine_ops)" in indexdef and valid for indexdef, valid in indexes.values())
        conn.execute(f"CREATE INDEX {LATENT_HNSW_INDEX} ON latent_embeddings (model_id)")

    with pytest.raises(DatabaseError, match=LATENT_HNSW_INDEX):
        migrate.upgrade(handle.migration_url, settings.app_role)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        conn.execute(f"DROP INDEX {LATENT_HNSW_INDEX}")
    migrate.upgrade(handle.migration_url, settings.app_role)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        assert _hnsw_indexes(conn).keys() == {LATENT_HNSW_INDEX, SEGMENT_HNSW_INDEX}


async def test_cursor_pages_partition_the_index_order(database, settings, seeded):
    """A cursor holds the half-precision rank of the page's last row in scan order: page two starts right after
    page one in the index's order, whatever the full-precision re-ordering inside each page."""
    engine = create_engine(database.app_url, settings.database)
    try:
        async with session_factory(engine)() as session:
            model = await session.get(domain.Model, seeded[0])
            query = domain.check_vector(np.random.default_rng(9).standard_normal(512), 512)
            twenty = await domain.nearest(session, ALICE, Target(model, query), SearchFilter(), 20)
            asked = domain.SearchQuery(vector=query.tolist(), model="halfvec", limit=10)
            first = await domain.search(session, ALICE, asked)
            second = await domain.search(session, ALICE, replace(asked, cursor=first.next_cursor))
            pages = [h.generation_id for h in first.hits + second.hits]
            assert len(set(pages)) == 20 and set(pages) == {h.generation_id for h in twenty}
    finally:
        await engine.dispose()


@pytest.mark.parametrize("statement", ["pipeline", "session"])
def test_ef_search_is_never_set_below_what_the_operator_configured(owner_conn, statement):
    """A large catalogue wants a wider candidate list than the app's default: an operator raises
    ``hnsw.ef_search`` with plain PostgreSQL (a role or database default) and the per-transaction setting keeps it."""
    sql = domain.PIPELINE_SETTINGS
    if statement == "session":
        sql = str(domain.SCAN_SETTINGS.compile(dialect=domain.PSYCOPG))  # as the session sends it (tune_scan)
    owner_conn.execute("SELECT '[1]'::vector")  # loads pgvector, which defines hnsw.ef_search

    def effective(limit: int) -> int:
        with owner_conn.transaction():
            owner_conn.execute(sql, domain.scan_settings(limit))
            return int(owner_conn.execute("SHOW hnsw.ef_search").fetchone()[0])

    assert effective(10) == domain.MIN_EF_SEARCH and effective(400) == 800
    owner_conn.execute("SET hnsw.ef_search = 600")  # what ALTER DATABASE/ROLE ... SET gives every new session
    try:
        assert effective(10) == 600 and effective(400) == 800
    finally:
        owner_conn.execute("RESET hnsw.ef_search")
