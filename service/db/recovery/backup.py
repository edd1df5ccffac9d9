"""Backup and restore with ``pg_dump``/``pg_restore`` (custom format) from the bundled PostgreSQL 18 binaries.

A dump holds schema, rows, grants and indexes (the HNSW index is rebuilt on restore). Restore runs in a single
transaction as the migration owner and replaces the objects it contains (``--clean --if-exists``): either the
whole dump lands or nothing changes. The ``vector`` extension is provisioning's, so restore skips its entries
and requires it to exist already.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from service.db.server import urls
from service.db.server.embedded import PG_BIN
from service.errors import DatabaseError, SoundalikeError

EXTENSION_ENTRY_MARKERS = (" EXTENSION - ", " COMMENT - EXTENSION ")


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    bytes: int


def backup(migration_url: str, path: Path) -> BackupInfo:
    """Dump the database to ``path`` atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        _run("pg_dump", "--format=custom", "--file", tmp_name, "--dbname", _libpq(migration_url))
        with open(tmp_name, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return BackupInfo(path=path, bytes=path.stat().st_size)


# pg_restore recreates every table as the owner, so the owner's default privileges grant the application role
# row access to each one, alembic_version included; the dump's own GRANTs only add to that. The schema version
# is read-only for everyone but its owner (migration 0001), so take the extra rights back after a restore.
SCHEMA_VERSION_READ_ONLY = """
DO $$
DECLARE grantee_name text;
BEGIN
    FOR grantee_name IN
        SELECT DISTINCT grantee FROM information_schema.role_table_grants
        WHERE table_schema = 'public' AND table_name = 'alembic_version' AND privilege_type <> 'SELECT'
          AND grantee <> current_user
    LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON alembic_version FROM %I',
                       grantee_name);
    END LOOP;
END $$
"""


def restore(migration_url: str, path: Path) -> None:
    """Restore a dump made by :func:`backup` into the configured database, all or nothing."""
    path = Path(path)
    if not path.is_file():
        raise SoundalikeError(f"no backup file at {path}")
    _require_pgvector(migration_url)
    entries = _run("pg_restore", "--list", str(path)).stdout
    kept = [line for line in entries.splitlines() if not any(m in line for m in EXTENSION_ENTRY_MARKERS)]
    with tempfile.NamedTemporaryFile("w", suffix=".list") as listing:
        listing.write("\n".join(kept) + "\n")
        listing.flush()
        _run(
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "--use-list",
            listing.name,
            "--dbname",
            _libpq(migration_url),
            str(path),
        )
    with psycopg.connect(_libpq(migration_url)) as conn:
        conn.execute(SCHEMA_VERSION_READ_ONLY)


# Every client session on this database but our own; autovacuum workers come and go and hold no role.
OTHER_SESSIONS = """
SELECT pid, usename, application_name, client_addr FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND usename IS NOT NULL
  AND backend_type IS DISTINCT FROM 'autovacuum worker'
ORDER BY pid
"""


def refuse_while_connected(migration_url: str) -> None:
    """Refuse to go on while other sessions use the database: a restore drops and recreates the tables under
    them, which leaves a serving process with broken pooled connections and a dead job worker."""
    with psycopg.connect(_libpq(migration_url)) as conn:
        sessions = [_describe_session(*row) for row in conn.execute(OTHER_SESSIONS)]
    if sessions:
        raise DatabaseError(
            f"{len(sessions)} other session(s) are connected to the database: {'; '.join(sessions)}. Stop the "
            "processes using it first (`soundalike serve`, `soundalike worker`, `make run`): a restore replaces "
            "the tables under them, which breaks their connections and kills their job workers"
        )


def _describe_session(pid: int, user: str, application: str | None, client: str | None) -> str:
    named = f" {application!r}" if application else ""
    where = f" from {client}" if client else ""
    return f"pid {pid}{named} as {user}{where}"


def _require_pgvector(migration_url: str) -> None:
    with psycopg.connect(_libpq(migration_url)) as conn:
        if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
            raise DatabaseError(
                "the target database has no pgvector: provision it first (`soundalike db provision`, or "
                "`CREATE EXTENSION vector;` as a superuser)"
            )


def _libpq(url: str) -> str:
    return urls.libpq_url(url, "SOUNDALIKE_DATABASE_MIGRATION_URL")


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(PG_BIN / tool), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise DatabaseError(f"{tool} failed: {' / '.join(message[-3:])}")
    return proc
