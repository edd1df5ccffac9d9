"""Database URL handling: one spelling for SQLAlchemy (``postgresql+psycopg://``), one for libpq/psycopg."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from service.errors import ConfigError


def parse(url: str, setting: str = "SOUNDALIKE_DATABASE_URL") -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{setting} is not a URL: expected postgresql://user:password@host:5432/dbname") from None
    if parsed.drivername == "postgres":  # the spelling Heroku and libpq also accept
        parsed = parsed.set(drivername="postgresql")
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(f"{setting} must point to PostgreSQL (postgresql://...), got {parsed.drivername}://")
    if parsed.get_driver_name() not in ("psycopg", "psycopg2", ""):
        raise ConfigError(f"{setting} uses driver {parsed.get_driver_name()!r}; use postgresql+psycopg://")
    return parsed.set(drivername="postgresql+psycopg")


def sqlalchemy_url(url: str, setting: str = "SOUNDALIKE_DATABASE_URL") -> str:
    return parse(url, setting).render_as_string(hide_password=False)


def libpq_url(url: str, setting: str = "SOUNDALIKE_DATABASE_URL") -> str:
    return parse(url, setting).set(drivername="postgresql").render_as_string(hide_password=False)


def describe(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    where = parsed.host or parsed.query.get("host") or "localhost"
    return f"{parsed.username or ''}@{where}/{parsed.database or ''}"
