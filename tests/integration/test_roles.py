"""The application role reads and writes rows and can do nothing else."""

import psycopg
import pytest

from service.db.server import urls


@pytest.fixture
def app_conn(database):
    with psycopg.connect(urls.libpq_url(database.app_url), autocommit=True) as conn:
        yield conn


def test_app_role_reads_and_writes_rows(app_conn, empty_tables):
    app_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version) VALUES ('m1', 'one', 'builtin', 'v1')"
    )
    assert app_conn.execute("SELECT alias FROM models").fetchall() == [("one",)]
    app_conn.execute("UPDATE models SET alias = 'uno'")
    app_conn.execute("DELETE FROM models")
    assert app_conn.execute("SELECT count(*) FROM models").fetchone() == (0,)


@pytest.mark.parametrize(
    "ddl",
    [
        "DROP TABLE generations",
        "CREATE TABLE intruder (id int)",
        "CREATE TEMP TABLE intruder (id int)",
        "ALTER TABLE models ADD COLUMN intruder int",
        "TRUNCATE models",
        "CREATE SCHEMA intruder",
        "DROP INDEX ix_latent_embeddings_embedding_halfvec_hnsw",
        "INSERT INTO alembic_version VALUES ('forged')",
    ],
)
def test_app_role_cannot_change_the_schema(app_conn, ddl):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_conn.execute(ddl)


def test_app_role_can_read_the_schema_version(app_conn):
    assert app_conn.execute("SELECT version_num FROM alembic_version").fetchone() is not None
