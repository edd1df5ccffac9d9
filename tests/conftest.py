"""Shared fixtures: one throw-away embedded PostgreSQL per test session (never the dev data under var/)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("SOUNDALIKE_ENV", "test")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:  # noqa: F821
    from service.db.embedded import EmbeddedPostgres

    root = tmp_path_factory.mktemp("pg")
    server = EmbeddedPostgres(root / "data")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def make_database(pg_server) -> Iterator:
    """Factory: a provisioned, empty database of the given name on the session server."""
    from service.db.provision import provision
    from service.db.runtime import DatabaseHandle
    from service.settings import DatabaseSettings

    def make(name: str) -> tuple[DatabaseHandle, DatabaseSettings]:
        settings = DatabaseSettings(name=name)
        provision(pg_server.url(driver=""), settings)
        handle = DatabaseHandle(
            app_url=pg_server.url(settings.app_role, name),
            migration_url=pg_server.url(settings.owner_role, name),
        )
        return handle, settings

    yield make


@pytest.fixture(scope="session")
def database(make_database):
    """The session's main database, migrated to head."""
    from service.db import migrate

    handle, settings = make_database("soundalike_test")
    migrate.upgrade(handle.migration_url, settings.app_role)
    return handle


@pytest.fixture(scope="session")
def settings(database):
    from service.settings import DatabaseSettings, Settings

    return Settings(env="test", database=DatabaseSettings(url=database.app_url, migration_url=database.migration_url))


@pytest.fixture
def owner_conn(database) -> Iterator:
    """A psycopg connection as the migration owner (autocommit), for setting up and inspecting rows."""
    from service.db.engine import connect_sync

    with connect_sync(database.migration_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def empty_tables(owner_conn) -> None:
    owner_conn.execute(
        "TRUNCATE models, generations, latent_embeddings, audio_assets, api_keys, latent_changes, "
        "latent_change_pruning, cluster_runs, clusters, cluster_assignments RESTART IDENTITY CASCADE"
    )


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
