"""Alembic driven from code: ``soundalike db upgrade|downgrade|current`` and the start-up schema check."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from service.db.server import urls
from service.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(url: str, app_role: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = urls.sqlalchemy_url(url, "SOUNDALIKE_DATABASE_MIGRATION_URL")
    config.attributes["app_role"] = app_role
    return config


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    heads = ScriptDirectory.from_config(config).get_heads()
    if len(heads) != 1:
        raise DatabaseError(f"migrations have {len(heads)} heads ({', '.join(heads)}); merge them")
    return heads[0]


def upgrade(url: str, app_role: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url, app_role), revision)


def downgrade(url: str, app_role: str, revision: str) -> None:
    command.downgrade(alembic_config(url, app_role), revision)


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at, or None before the first migration."""
    exists = connection.execute(sa.text("SELECT to_regclass('public.alembic_version') IS NOT NULL")).scalar()
    if not exists:
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
