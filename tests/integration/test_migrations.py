"""Migrations are the only source of the schema: they round-trip, and the ORM matches what they build."""

import sqlalchemy as sa

from service.db.schema import migrate
from service.db.schema.models import LATENT_HNSW_INDEX, SEGMENT_HNSW_INDEX
from service.db.schema.schema_drift import schema_drift

TABLES = {"models", "generations", "latent_embeddings", "audio_assets", "api_keys"}


def _tables(url: str) -> set[str]:
    with sa.create_engine(url).connect() as conn:
        return set(sa.inspect(conn).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade_on_empty_database(make_database):
    handle, settings = make_database("roundtrip")
    assert _tables(handle.migration_url) == set()

    migrate.upgrade(handle.migration_url, settings.app_role)
    assert _tables(handle.migration_url) >= TABLES

    migrate.downgrade(handle.migration_url, settings.app_role, "base")
    assert _tables(handle.migration_url) == set()

    migrate.upgrade(handle.migration_url, settings.app_role)
    assert _tables(handle.migration_url) >= TABLES
    with sa.create_engine(handle.migration_url).connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()


def test_orm_metadata_matches_migrated_schema(database):
    with sa.create_engine(database.migration_url).connect() as conn:
        assert schema_drift(conn) == []


def test_hnsw_indexes_hold_the_latents_in_half_precision_with_named_parameters(owner_conn):
    """0015_halfvec_hnsw: the graphs are built over ``embedding::halfvec(512)``; the columns stay ``vector(512)``."""
    for table, index in (("latent_embeddings", LATENT_HNSW_INDEX), ("latent_segments", SEGMENT_HNSW_INDEX)):
        indexdef = owner_conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (index,)).fetchone()[0]
        assert f"ON public.{table} USING hnsw (((embedding)::halfvec(512)) halfvec_cosine_ops)" in indexdef
        assert "m='16'" in indexdef and "ef_construction='64'" in indexdef
        others = owner_conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%USING hnsw%%'", (table,)
        ).fetchall()
        assert others == [(index,)]  # the full-precision index of 0001/0010 is gone
        column = owner_conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'embedding'",
            (table,),
        ).fetchone()[0]
        assert column == "vector(512)"


def test_latents_stay_in_their_rows_and_the_tag_index_has_no_pending_list(owner_conn):
    """0013_search_storage: a filtered search reads each candidate's latent from its row (MAIN storage, no TOAST
    probe) and looks tags up without scanning a GIN pending list."""
    storage = owner_conn.execute(
        "SELECT attstorage FROM pg_attribute WHERE attrelid = 'latent_embeddings'::regclass AND attname = 'embedding'"
    ).fetchone()[0]
    assert storage == "m"
    indexdef = owner_conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_generations_tags'").fetchone()
    assert "fastupdate=off" in indexdef[0]
