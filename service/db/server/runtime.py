"""Which database the service talks to: the embedded server (no URL set) or an external one.

``open_database`` returns the URLs of the two roles, starting and provisioning the embedded server when
needed; ``close`` stops that server if this process started it.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from service.db.recovery.pitr import archiving_settings, prepare_wal_dir, wal_archive_dir
from service.db.server import urls
from service.db.server.embedded import EmbeddedPostgres
from service.db.server.provision import provision
from service.errors import DatabaseError
from service.settings import Settings


@dataclass
class DatabaseHandle:
    app_url: str  # the application role: rows only
    migration_url: str  # the migration owner: DDL, backup, restore
    server: EmbeddedPostgres | None = None

    @property
    def embedded(self) -> bool:
        return self.server is not None

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def open_database(settings: Settings) -> DatabaseHandle:
    db = settings.database
    if db.embedded:
        return _open_embedded(settings)
    app_url = urls.sqlalchemy_url(db.url)
    migration_url = urls.sqlalchemy_url(db.migration_url or db.url, "SOUNDALIKE_DATABASE_MIGRATION_URL")
    ensure_reachable(app_url, "SOUNDALIKE_DATABASE_URL")
    return DatabaseHandle(app_url=app_url, migration_url=migration_url)


def _open_embedded(settings: Settings) -> DatabaseHandle:
    db = settings.database
    server = EmbeddedPostgres(db.embedded_dir, embedded_server_settings(settings))
    server.start()
    try:
        provision(server.url(driver=""), db)
    except Exception:
        server.stop()
        raise
    return DatabaseHandle(
        app_url=server.url(db.app_role, db.name),
        migration_url=server.url(db.owner_role, db.name),
        server=server,
    )


def embedded_server_settings(settings: Settings) -> dict[str, str]:
    """What the embedded server runs with beyond its defaults: the slow-query log and WAL archiving."""
    server = {"log_min_duration_statement": str(settings.database.slow_query_ms)}
    if settings.database.wal_archiving:
        prepare_wal_dir(wal_archive_dir(settings))
        server |= archiving_settings(wal_archive_dir(settings))
    return server


def ensure_reachable(url: str, setting: str) -> None:
    try:
        with psycopg.connect(urls.libpq_url(url, setting), connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"cannot connect to {urls.describe(url)} ({reason}): check {setting}") from None
