"""The ``soundalike`` command line: one entry point for serving, the database and (as they land) the rest."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import click
import psycopg
import sqlalchemy.exc

from indexing.cli import index_group, rebuild_after_restore
from service.cli_models import models_group
from service.cli_support import database, register_shipped_model, run_in_session
from service.db.recovery import backup as backups
from service.db.schema import migrate
from service.db.server.runtime import DatabaseHandle
from service.errors import SoundalikeError
from service.ml.cli import register as register_ml_commands
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
    # names this process's database sessions (libpq reads it), so an operator can tell whose they are
    os.environ.setdefault("PGAPPNAME", f"soundalike {click.get_current_context().invoked_subcommand} pid {os.getpid()}")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# -- serve ------------------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Bind address [SOUNDALIKE_SERVER_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [SOUNDALIKE_SERVER_PORT, 8000].")
@click.option(
    "--workers",
    type=int,
    default=1,
    envvar="SOUNDALIKE_SERVER_WORKERS",
    show_default=True,
    help="API processes sharing the port (uvicorn's multi-process supervisor) [SOUNDALIKE_SERVER_WORKERS].",
)
@click.option(
    "--migrate/--no-migrate",
    "run_migrations",
    default=None,
    help="Apply migrations first [default: yes on the embedded server, no on an external one].",
)
def serve(host: str | None, port: int | None, workers: int, run_migrations: bool | None) -> None:
    """Serve the API (embedded PostgreSQL unless SOUNDALIKE_DATABASE_URL is set). Ctrl-C or SIGTERM stops both.

    With --workers N, uvicorn's supervisor runs N API processes on one socket (the kernel spreads connections
    over them) and replaces one that dies; this process owns the embedded server and stops it last."""
    import uvicorn

    from service.app import create_app
    from service.db.server.checks import check_ready
    from service.net import ensure_port_free

    if workers < 1:
        _fail(f"--workers must be at least 1 (got {workers}): it is the number of API processes")
    settings = get_settings()
    host, port = host or settings.server.host, port or settings.server.port
    ensure_port_free(host, port)
    with database() as db:
        if run_migrations if run_migrations is not None else db.embedded:
            migrate.upgrade(db.migration_url, settings.database.app_role)
        with sqlalchemy.create_engine(db.app_url).connect() as conn:
            check_ready(conn)
        log.info(register_shipped_model(db))
        _print_first_admin_key(db)
        click.echo(f"Soundalike on http://{host}:{port}  (OpenAPI: http://{host}:{port}/schema)")
        # Open event streams (the explorer keeps one) never end by themselves: give them 5 s at shutdown.
        options = {"host": host, "port": port, "log_level": "info", "timeout_graceful_shutdown": 5}
        if workers > 1:
            click.echo(
                f"{workers} API processes" + (", each with a job worker" if settings.jobs.in_process_worker else "")
            )
            # Each child imports the app factory and reads the database from the environment it inherits; the
            # supervisor stops them on SIGINT/SIGTERM, then returns, and ``database()`` stops the embedded server.
            os.environ[API_PROCESS_DATABASE_URL] = db.app_url
            uvicorn.run("service.cli:api_process_app", factory=True, workers=workers, **options)
            return
        app = create_app(db.app_url, settings, run_worker_in_process=settings.jobs.in_process_worker)
        signal.signal(signal.SIGTERM, _exit_cleanly)
        uvicorn.run(app, **options)


# Set by `serve --workers N` for its API processes: the application-role URL of the database it resolved.
API_PROCESS_DATABASE_URL = "SOUNDALIKE_SERVE_APP_URL"


def api_process_app():
    """The app of one of `serve --workers N`'s processes (uvicorn calls this factory in each child)."""
    from service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    app_url = os.environ[API_PROCESS_DATABASE_URL]
    return create_app(app_url, settings, run_worker_in_process=settings.jobs.in_process_worker)


def _exit_cleanly(signum: int, frame) -> None:
    """Uvicorn shuts down on SIGTERM, then re-raises it; by default that kills the process before the
    embedded database is stopped. Exiting normally instead lets ``database()`` stop it."""
    raise SystemExit(0)


def _print_first_admin_key(db: DatabaseHandle) -> None:
    """On a database with no admin key yet, make one and show it this once."""
    from service.domain.access import api_keys

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


# -- worker ---------------------------------------------------------------------------------------------


@main.command()
@click.option("--concurrency", type=int, default=None, help="Jobs run at once [SOUNDALIKE_JOBS_CONCURRENCY, 1].")
def worker(concurrency: int | None) -> None:
    """Run a job worker (more can run on other machines against the same database). Ctrl-C stops it."""

    from service.db.server.checks import check_ready
    from service.jobs.app import create_job_app, opened
    from service.jobs.runtime import Runtime
    from service.jobs.worker import run_with_main_thread_inference, run_worker, serve_metrics

    if concurrency is not None and concurrency < 1:
        _fail(f"--concurrency must be at least 1 (got {concurrency}): it is the number of jobs run at once")
    settings = get_settings()
    if concurrency is not None:
        settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"concurrency": concurrency})})

    async def work(app_url: str, inference) -> None:
        runtime = Runtime.create(app_url, settings, inference)
        job_app = create_job_app(app_url, settings.jobs)
        try:
            async with opened(job_app, app_url, settings.database):
                await run_worker(job_app, runtime, install_signal_handlers=False)  # the main thread has them
        finally:
            await runtime.close()

    with database() as db:
        with sqlalchemy.create_engine(db.app_url).connect() as conn:
            check_ready(conn)
        log.info(register_shipped_model(db))
        click.echo(f"worker started (concurrency {settings.jobs.concurrency})")
        if where := serve_metrics(settings.metrics):
            click.echo(f"worker metrics on {where}")
        run_with_main_thread_inference(lambda inference: work(db.app_url, inference), settings.model.threads)


# -- import ---------------------------------------------------------------------------------------------


@main.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--owner", required=True, help="Owner of the imported items.")
@click.option("--model", "model_alias", default=None, help="Model alias [default model].")
@click.option("--visibility", type=click.Choice(["private", "public"]), default="private")
@click.option("--tags", default="", help="Comma-separated tags for every imported item.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=32, help="Clips per encode and per COPY.")
def import_command(
    folder: Path, owner: str, model_alias: str | None, visibility: str, tags: str, batch_size: int
) -> None:
    """Import every WAV/FLAC/OGG/MP3 file under FOLDER: encoded in batches, rows bulk-loaded with COPY."""
    from tqdm import tqdm

    from service.api.imports import parse_tags
    from service.db.engine import connect_sync
    from service.domain.catalogue.bulk_import import audio_files, ignored_files, import_folder
    from service.domain.catalogue.imports import AUDIO_SUFFIXES, ImportOptions
    from service.ml.pipeline import Pipeline
    from service.storage import BlobStore

    settings = get_settings()
    files, ignored = audio_files(folder), ignored_files(folder)
    suffixes = ", ".join(AUDIO_SUFFIXES)
    for path in ignored:
        click.echo(f"  ignored {path}: not one of {suffixes}", err=True)
    if not files:
        raise SoundalikeError(f"no {suffixes} files under {folder}")
    options = ImportOptions(visibility=visibility, tags=parse_tags(tags))
    store = BlobStore(settings.storage.blob_dir, settings.storage.archive_dir)
    with database() as handle, connect_sync(handle.app_url) as conn:
        model_id, checkpoint = _model_for_import(handle, model_alias)
        pipeline = Pipeline.load(checkpoint)
        with tqdm(total=len(files), unit="file", desc="importing") as bar:
            report = import_folder(
                conn,
                store,
                pipeline,
                model_id,
                owner,
                files,
                options,
                settings.storage,
                batch_size,
                on_batch=bar.update,
            )
    click.echo(f"imported {report.imported} of {len(files)} files")
    for path, reason in report.skipped:
        click.echo(f"  skipped {path}: {reason}", err=True)
    for path in report.flagged:
        click.echo(f"  flagged {path}: stored, but not music to the model (in_domain below its threshold)", err=True)


def _model_for_import(handle: DatabaseHandle, alias: str | None) -> tuple[int, str]:
    """The model's id and verified checkpoint path (archived, failed or tampered models are refused)."""
    from service.domain.errors import DomainError
    from service.domain.models import registry
    from service.domain.models.model_lookup import resolve_model

    async def lookup(session):
        return await resolve_model(session, alias, for_new_work=True)

    try:
        model = run_in_session(handle, lookup)
    except DomainError as exc:
        raise SoundalikeError(exc.message) from None
    problem = registry.checkpoint_problem(model.checkpoint_path, model.checkpoint_sha256)
    if problem:
        raise SoundalikeError(f"model {model.alias!r} cannot be loaded: {problem}")
    return model.id, model.checkpoint_path


# -- lifecycle ------------------------------------------------------------------------------------------


@main.command("lifecycle")
@click.option("--retention-days", type=float, default=None, help="[SOUNDALIKE_STORAGE_RETENTION_DAYS, 180]")
def lifecycle_command(retention_days: float | None) -> None:
    """Run one archival pass now (archive old, purge deleted, sweep orphan files); workers run it on a cron."""
    from service.domain.catalogue.lifecycle import run_lifecycle
    from service.storage import BlobStore

    storage = get_settings().storage
    store = BlobStore(storage.blob_dir, storage.archive_dir)

    async def run(session):
        return await run_lifecycle(
            session, store, retention_days or storage.retention_days, storage.orphan_grace_seconds
        )

    with database() as handle:
        report = run_in_session(handle, run)
    click.echo(f"archived {report.archived}, purged {report.purged}, removed {report.orphans_removed} orphan files")


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
    from service.domain.access import api_keys

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
    from service.domain.access import api_keys

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
    """Revoke key KEY_ID (serving processes refuse it at once: the shared cache, else a NOTIFY they listen for)."""
    from service.domain.access import api_keys
    from service.domain.access.shared_state import CacheUnavailable, SharedState

    settings = get_settings()
    seconds = settings.auth.key_cache_seconds

    async def revoke(session):
        shared = SharedState.create(settings.cache.url, settings.cache.prefix, seconds)
        try:
            return await api_keys.revoke_key(session, key_id, shared.key_cache if shared.shared else None)
        except CacheUnavailable as exc:  # raised after the commit: the key is revoked all the same
            raise SoundalikeError(
                f"key {key_id} revoked, but {exc}; running servers refuse it within {seconds:g} s"
            ) from None
        finally:
            await shared.close()

    with database() as handle:
        if not run_in_session(handle, revoke):
            raise SoundalikeError(f"no active key with id {key_id} (see `soundalike keys list`)")
    if settings.cache.url:
        click.echo(f"key {key_id} revoked and dropped from the shared key cache; running servers refuse it now")
    else:
        click.echo(f"key {key_id} revoked; running servers drop it from their key caches now (NOTIFY)")


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
@click.option(
    "--admin-url",
    required=True,
    envvar="SOUNDALIKE_DATABASE_ADMIN_URL",
    help="A superuser URL of the external server [SOUNDALIKE_DATABASE_ADMIN_URL].",
)
def provision_command(admin_url: str) -> None:
    """Create the roles, the database and pgvector on an external server (the embedded one does this itself)."""
    from service.db.server import urls
    from service.db.server.provision import provision

    settings = get_settings()
    provision(urls.libpq_url(admin_url, "--admin-url"), settings.database)
    click.echo(
        f"provisioned database {settings.database.name}: owner {settings.database.owner_role}, "
        f"application role {settings.database.app_role}; set their passwords with ALTER ROLE"
    )


@db.command("slow-queries")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--log",
    "log_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A server log to read when pg_stat_statements is missing [the embedded server's log].",
)
def slow_queries(limit: int, log_file: Path | None) -> None:
    """The statements that took the most time (pg_stat_statements, or the slow-query log)."""
    from service.db.monitoring.slow_queries import top_statements

    settings = get_settings()
    if log_file is None and settings.database.embedded:
        log_file = settings.database.embedded_dir / "server.log"
    with database() as handle:
        found = top_statements(handle.migration_url, limit, log_file)
    click.echo(f"top {len(found.statements)} statements by total time (from {found.source})")
    click.echo(f"{'calls':>7} {'total ms':>11} {'mean ms':>9} {'max ms':>9}  statement")
    for s in found.statements:
        click.echo(f"{s.calls:>7} {s.total_ms:>11.1f} {s.mean_ms:>9.1f} {s.max_ms:>9.1f}  {s.query[:200]}")


@db.group()
def replica() -> None:
    """Streaming replicas of the embedded server (development and tests)."""


@replica.command("create")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def replica_create(directory: Path) -> None:
    """Copy the embedded server into DIRECTORY as a streaming replica (pg_basebackup -R)."""
    from service.db.server.standby import create_replica

    settings = get_settings()
    if not settings.database.embedded:
        raise SoundalikeError(
            "replica create copies the embedded server; for an external PostgreSQL use its provider's replicas "
            "or pg_basebackup -R, then set SOUNDALIKE_DATABASE_READ_URLS (docs/operations.md)"
        )
    with database() as handle:
        create_replica(handle.server, directory)
    click.echo(f"replica created in {directory}; run it with `soundalike db replica run {directory}`")


@replica.command("run")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def replica_run(directory: Path) -> None:
    """Run the replica in DIRECTORY until Ctrl-C or SIGTERM; prints the read URL to configure."""
    from service.db.server.embedded import EmbeddedPostgres
    from service.db.server.runtime import embedded_server_settings
    from service.db.server.standby import is_replica

    settings = get_settings()
    if not is_replica(directory):
        raise SoundalikeError(f"{directory} holds no replica (no standby.signal): see `soundalike db replica create`")
    server = EmbeddedPostgres(directory, embedded_server_settings(settings))
    server.start()
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        url = server.url(settings.database.app_role, settings.database.name, driver="")
        click.echo(f"replica running; set SOUNDALIKE_DATABASE_READ_URLS={url}  (Ctrl-C stops it)")
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _current(handle: DatabaseHandle) -> str | None:
    with sqlalchemy.create_engine(handle.migration_url).connect() as conn:
        return migrate.current_revision(conn)


# -- backup / restore -------------------------------------------------------------------------------------


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--base", is_flag=True, help="A base backup for point-in-time recovery (embedded server) instead.")
def backup(path: Path | None, base: bool) -> None:
    """Dump the whole database to PATH (pg_dump custom format), or take a base backup (--base)."""
    if base:
        return _base_backup()
    if path is None:
        raise click.UsageError("give the dump's PATH (or --base for a base backup)")
    with database() as handle:
        info = backups.backup(handle.migration_url, path)
    click.echo(f"backup written to {info.path} ({info.bytes / 1e6:.1f} MB)")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option(
    "--until",
    "until",
    default=None,
    metavar="TIMESTAMP",
    help="Point-in-time recovery to TIMESTAMP (ISO 8601; UTC unless it has an offset) instead.",
)
@click.option("--yes", is_flag=True, help="Do not ask before replacing the current contents.")
@click.option(
    "--index/--no-index",
    default=True,
    show_default=True,
    help="Rebuild the FAISS mirrors from the restored rows afterwards.",
)
def restore(path: Path | None, until: str | None, yes: bool, index: bool) -> None:
    """Restore PATH into the configured database, replacing what the dump contains (all or nothing); or
    recover the embedded server as it was at TIMESTAMP (--until). Then rebuild the FAISS mirrors."""
    if until is not None:
        return _restore_until(_timestamp(until), yes, index)
    if path is None:
        raise click.UsageError("give the dump's PATH (or --until TIMESTAMP for point-in-time recovery)")
    with database() as handle:
        backups.refuse_while_connected(handle.migration_url)
        if not yes and sys.stdin.isatty():
            click.confirm(f"Replace the database contents with {path}?", abort=True)
        backups.restore(handle.migration_url, path)
        click.echo(f"restored {path}")
        if index:
            rebuild_after_restore(handle)
        else:
            click.echo("mirrors not rebuilt: run `soundalike index rebuild` before using them")


def _base_backup() -> None:
    from service.db.recovery import pitr

    settings = _embedded_only("base backups")
    with database() as handle:
        made = pitr.base_backup(handle.server, settings.storage.backup_dir, settings.database.name)
    manifest = f"{len(made.blobs)} audio files in its manifest {made.manifest.name}"
    click.echo(f"base backup {made.path} (finished {made.finished_at.isoformat()}, {manifest})")
    click.echo(f"WAL from now on is archived in {pitr.wal_archive_dir(settings)}")


def _timestamp(text: str):
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        message = f"{text!r} is not an ISO 8601 time (2026-11-29T03:15:00+00:00)"
        raise click.BadParameter(message, param_hint="--until") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _embedded_only(what: str):
    settings = get_settings()
    if not settings.database.embedded:
        raise SoundalikeError(
            f"{what} here are for the embedded server; on an external PostgreSQL use its provider's point-in-time "
            "recovery or pg_basebackup + WAL archiving there (docs/operations.md)"
        )
    return settings


def _restore_until(target, yes: bool, index: bool) -> None:
    from datetime import UTC, datetime

    from service.db.recovery import pitr
    from service.storage import BlobStore

    settings = _embedded_only("point-in-time restores")
    if not yes and sys.stdin.isatty():
        click.confirm(f"Replace the database with its state at {target.isoformat()}?", abort=True)
    with database() as handle:
        server = handle.server
        if not server.owned:
            raise SoundalikeError(
                f"another process runs the embedded server in {server.data_dir}: stop `soundalike serve` and the "
                "workers first (the restore replaces its data directory)"
            )
        base = pitr.pick_base(settings.storage.backup_dir, target)
        pitr.archive_current_wal(server)
        into = server.data_dir.with_name(f"{server.data_dir.name}.restore-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}")
        click.echo(f"recovering {base.path.name} + archived WAL until {target.isoformat()} into {into}")
        store = BlobStore(settings.storage.blob_dir, settings.storage.archive_dir)
        wal_dir = pitr.wal_archive_dir(settings)
        report = pitr.recover(base, target, into, wal_dir, settings.database.name, store)
        report = pitr.switch_in(report, server)
        server.start()
        click.echo(f"restored to {target.isoformat()}: indexes valid, every referenced audio file present")
        click.echo(f"the previous data directory is kept as {report.previous}")
        if index:
            rebuild_after_restore(handle)


main.add_command(models_group)
main.add_command(index_group)
register_ml_commands(main)

if __name__ == "__main__":
    main()
