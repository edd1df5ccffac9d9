"""Provisioning: the cluster-level objects migrations cannot create for themselves.

Run as a superuser (the embedded server's ``postgres``, or an operator's admin URL): creates the migration
owner role, the application role, the database owned by the former, and the ``vector`` extension (pgvector
is not a trusted extension, so only a superuser may create it). Everything else is Alembic's job.
Idempotent: safe to run on every start.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from service.settings import DatabaseSettings


def provision(admin_conninfo: str, db: DatabaseSettings) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        for role in (db.owner_role, db.app_role):
            _ensure_role(conn, role)
        _ensure_database(conn, db.name, db.owner_role)
    with psycopg.connect(_with_database(admin_conninfo, db.name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        _ensure_pg_stat_statements(conn, db.owner_role)
        # Only the roles we name may connect; nobody else may create temporary tables.
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db.name)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db.name), sql.Identifier(db.app_role))
        )


def _ensure_pg_stat_statements(conn: psycopg.Connection, owner: str) -> None:
    """Where the server preloads pg_stat_statements, create it and let the owner read every role's statements
    (`soundalike db slow-queries`). The bundled embedded server has no contrib modules: it logs instead."""
    preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    if "pg_stat_statements" not in preload:
        return
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    conn.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(owner)))


def _ensure_role(conn: psycopg.Connection, role: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))


def _ensure_database(conn: psycopg.Connection, name: str, owner: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))


def _with_database(conninfo: str, database: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    params["dbname"] = database
    return psycopg.conninfo.make_conninfo(**params)
