"""The ``soundalike`` command line: one entry point for serving, the database and (as they land) the rest."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

import click
import psycopg
import sqlalchemy.exc

from service.cli_support import run_in_session
from service.db import backup as backups
from service.db import migrate
from service.db.runtime import DatabaseHandle, open_database
from service.errors import SoundalikeError
from service.settings import get_settings

log = logging.getLogger("soundalike")


class FriendlyGroup(click.Group):
    """Operator errors end as one line on stderr and exit code 1, never a traceback wall."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SoundalikeError as exc:
            _fail(str(exc))
        except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as exc:
            _fail(f"database error: {str(exc).strip().splitlines()[0]}")


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


@click.group(cls=FriendlyGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def main(verbose: bool) -> None:
    """Soundalike: vector search for generated music."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@contextmanager
def database() -> DatabaseHandle:
    """The configured database for the length of one command (the embedded server is started if needed)."""
    settings = get_settings()
    settings.check_profile()
    handle = open_database(settings)
    try:
        yield handle
    finally:
        handle.close()


# -- serve ------------------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Bind address [SOUNDALIKE_SERVER_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [SOUNDALIKE_SERVER_PORT, 8000].")
@click.option("--migrate/--no-migrate", "run_migrations", default=None,
              help="Apply migrations first [default: yes on the embedded server, no on an external one].")  # fmt: skip
def serve(host: str | None, port: int | None, run_migrations: bool | None) -> None:
    """Serve the API (embedded PostgreSQL unless SOUNDALIKE_DATABASE_URL is set). Ctrl-C stops both."""
    import uvicorn

    from service.app import create_app
    from service.db.checks import check_ready
    from service.net import ensure_port_free

    settings = get_settings()
    host, port = host or settings.server.host, port or settings.server.port
    ensure_port_free(host, port)
    with database() as db:
        if run_migrations if run_migrations is not None else db.embedded:
            migrate.upgrade(db.migration_url, settings.database.app_role)
        with sqlalchemy.create_engine(db.app_url).connect() as conn:
            check_ready(conn)
        _print_first_admin_key(db)
        click.echo(f"Soundalike on http://{host}:{port}  (OpenAPI: http://{host}:{port}/schema)")
        uvicorn.run(create_app(db.app_url, settings), host=host, port=port, log_level="info")


def _print_first_admin_key(db: DatabaseHandle) -> None:
    """On a database with no admin key yet, make one and show it this once."""
    from service.domain import api_keys

    secret = get_settings().auth.secret

    async def ensure(session):
        if await api_keys.any_admin_key(session):
            return None
        issued = await api_keys.create_key(session, secret, owner="admin", role="admin", label="first run")
        await session.commit()
        return issued

    issued = run_in_session(db, ensure)
    if issued:
        click.secho(f"Created the first admin API key (shown only now): {issued.key}", fg="yellow", bold=True)


# -- API keys ---------------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """API keys: create, list, revoke."""


@keys.command("create")
@click.option("--role", type=click.Choice(["reader", "creator", "admin"]), required=True)
@click.option("--owner", required=True, help="The owner the key acts for (its items belong to this owner).")
@click.option("--label", default=None, help="A note to recognise the key by.")
def keys_create(role: str, owner: str, label: str | None) -> None:
    """Create a key and print it once."""
    from service.domain import api_keys

    async def create(session):
        issued = await api_keys.create_key(session, get_settings().auth.secret, owner, role, label)
        await session.commit()
        return issued

    with database() as handle:
        issued = run_in_session(handle, create)
    click.echo(f"key {issued.id} for {owner} ({role}); shown only now:\n{issued.key}")


@keys.command("list")
def keys_list() -> None:
    """List keys (prefix, owner, role, state); never the keys themselves."""
    from service.domain import api_keys

    with database() as handle:
        rows = run_in_session(handle, api_keys.list_keys)
    click.echo(f"{'id':>4}  {'prefix':<12} {'owner':<16} {'role':<8} {'created':<20} state")
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        click.echo(
            f"{row.id:>4}  {row.prefix:<12} {row.owner:<16} {row.role:<8} {row.created_at:%Y-%m-%d %H:%M:%S}  {state}"
        )


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke key KEY_ID (takes effect on the next request)."""
    from service.domain import api_keys

    async def revoke(session):
        done = await api_keys.revoke_key(session, key_id)
        await session.commit()
        return done

    with database() as handle:
        if not run_in_session(handle, revoke):
            raise SoundalikeError(f"no active key with id {key_id} (see `soundalike keys list`)")
    click.echo(f"key {key_id} revoked")


# -- database ---------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Schema migrations and provisioning."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    with database() as handle:
        migrate.upgrade(handle.migration_url, get_settings().database.app_role, revision)
        click.echo(f"database at {_current(handle)}")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' empties the schema)."""
    with database() as handle:
        migrate.downgrade(handle.migration_url, get_settings().database.app_role, revision)
        click.echo(f"database at {_current(handle) or 'base'}")


@db.command()
def current() -> None:
    """Print the database's revision and the code's head."""
    with database() as handle:
        click.echo(f"database: {_current(handle) or 'base (empty)'}\ncode head: {migrate.head_revision()}")


@db.command("provision")
@click.option("--admin-url", required=True, envvar="SOUNDALIKE_DATABASE_ADMIN_URL",
              help="A superuser URL of the external server [SOUNDALIKE_DATABASE_ADMIN_URL].")  # fmt: skip
def provision_command(admin_url: str) -> None:
    """Create the roles, the database and pgvector on an external server (the embedded one does this itself)."""
    from service.db import urls
    from service.db.provision import provision

    settings = get_settings()
    provision(urls.libpq_url(admin_url, "--admin-url"), settings.database)
    click.echo(
        f"provisioned database {settings.database.name}: owner {settings.database.owner_role}, "
        f"application role {settings.database.app_role}; set their passwords with ALTER ROLE"
    )


def _current(handle: DatabaseHandle) -> str | None:
    with sqlalchemy.create_engine(handle.migration_url).connect() as conn:
        return migrate.current_revision(conn)


# -- backup / restore -------------------------------------------------------------------------------------


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup(path: Path) -> None:
    """Dump the whole database to PATH (pg_dump custom format)."""
    with database() as handle:
        info = backups.backup(handle.migration_url, path)
    click.echo(f"backup written to {info.path} ({info.bytes / 1e6:.1f} MB)")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask before replacing the current contents.")
def restore(path: Path, yes: bool) -> None:
    """Restore PATH into the configured database, replacing what the dump contains (all or nothing)."""
    if not yes and sys.stdin.isatty():
        click.confirm(f"Replace the database contents with {path}?", abort=True)
    with database() as handle:
        backups.restore(handle.migration_url, path)
    click.echo(f"restored {path}")


from indexing.cli import index_group  # noqa: E402  (late: it imports this module lazily)

main.add_command(index_group)

if __name__ == "__main__":
    main()
