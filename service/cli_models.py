"""``soundalike models ...``: the model registry from the command line (registered in service/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from service.cli_reencode import reencode_command
from service.cli_support import database, run_in_session
from service.domain.models import checkpoints, inference_stats, registry
from service.errors import SoundalikeError
from service.tables import format_table


def _run(work):
    """Run ``work(session)`` against the configured database; it commits what it changes."""
    with database() as handle:
        return run_in_session(handle, work)


def _commit_after(operation, *args):
    """``operation(session, *args)``, committed, as work for ``run_in_session``."""

    async def work(session):
        result = await operation(session, *args)
        await session.commit()
        return result

    return work


def _committing(operation, *args):
    return _run(_commit_after(operation, *args))


@click.group("models")
def models_group() -> None:
    """The model registry: list, show, add, alias, set-default, archive, verify, import-list."""


@models_group.command("list")
@click.option("--active", is_flag=True, help="Leave archived models out.")
def list_command(active: bool) -> None:
    """The registered models as a table (* marks the default)."""

    async def work(session):
        rows = await registry.list_models(session, include_archived=not active)
        ids = [r.id for r in rows]
        return rows, await registry.usage_counts(session, ids), await inference_stats.stats_of(session, ids)

    rows, usage, stats = _run(work)
    if not rows:
        click.echo("no models registered (add one with `soundalike models add PATH --alias NAME`)")
        return
    table = [
        [
            row.id,
            ("* " if row.is_default else "  ") + row.alias,
            row.version,
            row.source_type,
            row.status,
            usage[row.id][0],
            *_run_summary(stats[row.id]),
            row.latent_dim,
            row.checkpoint_path or row.config_path,
        ]
        for row in rows
    ]
    headers = ["id", "  alias", "version", "source", "status", "generations", "calls", "p95-ms", "rss-MB", "dim"]
    click.echo(format_table([*headers, "file"], table))


def _run_summary(stats: list[inference_stats.OperationStats]) -> list[str]:
    """Model calls (every operation but loading), the p95 latency of its busiest operation and the peak RSS of a
    process that loaded it; ``-`` for a model that never ran."""
    calls = [s for s in stats if s.operation != inference_stats.LOAD]
    busiest = max(calls, key=lambda s: s.calls, default=None)
    rss = max((s.peak_rss_bytes or 0 for s in stats), default=0)
    return [
        str(sum(s.calls for s in calls)) if calls else "-",
        _ms(busiest.p95_seconds) + f" ({busiest.operation})" if busiest else "-",
        f"{rss / 2**20:.0f}" if rss else "-",
    ]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _stats_lines(stats: list[inference_stats.OperationStats]) -> list[tuple[str, str]]:
    """One ``models show`` line per operation: calls, items, errors, mean/p50/p95/max ms, memory."""
    lines = []
    for s in stats:
        memory = f", peak rss {s.peak_rss_bytes / 2**20:.0f} MB" if s.peak_rss_bytes else ""
        if s.rss_growth_bytes:
            memory += f", rss growth {s.rss_growth_bytes / 2**20:.0f} MB"
        lines.append(
            (
                s.operation,
                f"{s.calls} calls, {s.items} items, {s.errors} errors; ms mean {_ms(s.mean_seconds)} "
                f"p50 {_ms(s.p50_seconds)} p95 {_ms(s.p95_seconds)} max {_ms(s.max_seconds)}{memory}",
            )
        )
    return lines


@models_group.command("show")
@click.argument("ref")
def show_command(ref: str) -> None:
    """Everything the registry knows about one model (REF: alias, source id or id)."""

    async def work(session):
        row = await registry.get_model(session, ref)
        stats = (await inference_stats.stats_of(session, [row.id]))[row.id]
        return row, (await registry.usage_counts(session, [row.id]))[row.id], stats

    row, (generations, latents), stats = _run(work)
    fields = [
        ("id", row.id),
        ("alias", row.alias + ("  (default)" if row.is_default else "")),
        ("source id", row.source_id),
        ("source type", row.source_type),
        ("author repo", row.author_repo),
        ("version", row.version),
        ("status", row.status + (f": {row.status_reason}" if row.status_reason else "")),
        ("config path", row.config_path),
        ("checkpoint", row.checkpoint_path),
        ("sha256", row.checkpoint_sha256),
        ("latent dim", row.latent_dim),
        ("sample rate", row.sample_rate),
        ("clip seconds", row.clip_seconds),
        ("generations", generations),
        ("latents", latents),
        ("created", f"{row.created_at:%Y-%m-%d %H:%M:%S %Z}"),
        ("updated", f"{row.updated_at:%Y-%m-%d %H:%M:%S %Z}"),
        ("metadata", json.dumps(row.metadata_, sort_keys=True) if row.metadata_ else None),
        *_stats_lines(stats),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<14}{'-' if value is None else value}")


@models_group.command("add")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--alias", required=True, help="The name clients use to ask for this model.")
@click.option("--version", "version", default=None, help="A version label [default: the checkpoint hash, 12 chars].")
@click.option("--latent-dim", type=int, default=registry.ModelSpec.latent_dim, show_default=True)
@click.option("--sample-rate", type=int, default=None, help="Audio sample rate in Hz [the checkpoint's; must agree].")
@click.option("--clip-seconds", type=float, default=None, help="Clip length in seconds [the checkpoint's; must agree].")
@click.option("--default", "make_default", is_flag=True, help="Make it the default model.")
def add_command(
    path: Path,
    alias: str,
    version: str | None,
    latent_dim: int,
    sample_rate: int | None,
    clip_seconds: float | None,
    make_default: bool,
) -> None:
    """Register the checkpoint at PATH: loaded and tried on a test clip now, its hash checked before every load."""
    spec = registry.ModelSpec(latent_dim=latent_dim, sample_rate=sample_rate, clip_seconds=clip_seconds)

    async def add(session, *_):
        return await registry.add_model(
            session, path, alias, version=version, spec=spec, make_default=make_default, check=checkpoints.inspect
        )

    row = _committing(add)
    default = " (the default model)" if row.is_default else ""
    click.echo(f"registered model {row.id} as {row.alias!r}{default}: sha256 {row.checkpoint_sha256}")


@models_group.command("alias")
@click.argument("old")
@click.argument("new")
def alias_command(old: str, new: str) -> None:
    """Rename the model known as OLD to NEW."""
    row = _committing(registry.rename, old, new)
    click.echo(f"model {row.id} is now {row.alias!r}")


@models_group.command("set-default")
@click.argument("ref")
def set_default_command(ref: str) -> None:
    """Make REF the default model (the one used when a request names none)."""
    row = _committing(registry.set_default, ref)
    click.echo(f"default model: {row.alias!r} (id {row.id}, version {row.version})")


@models_group.command("archive")
@click.argument("ref")
@click.option("--keep-latents", is_flag=True, help="Keep REF's latents (its space stays searchable by name).")
@click.option(
    "--backup-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the backup taken before dropping goes [SOUNDALIKE_STORAGE_BACKUP_DIR, var/backups].",
)
def archive_command(ref: str, keep_latents: bool, backup_dir: Path | None) -> None:
    """Archive REF: it takes no new work, and its latents are dropped after a backup of the database (items
    keep their latents in other spaces; refused while an item has a latent only in REF's). Move the catalogue
    first with `soundalike models reencode --from REF --to NEW`."""
    if keep_latents:
        row = _committing(registry.archive, ref)
        click.echo(f"model {row.alias!r} archived (data kept; `soundalike models unarchive {row.alias}` undoes it)")
        return
    from datetime import UTC, datetime

    from service.db.recovery import backup as backups
    from service.domain.models import model_archive
    from service.settings import get_settings

    async def plan(session):
        row, size = await model_archive.plan(session, ref)
        alias = row.alias
        await session.rollback()  # a check: nothing is archived or dropped before the backup
        return alias, size

    with database() as handle:
        alias, size = run_in_session(handle, plan)
        backup = None
        if not size.empty:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            folder = backup_dir or get_settings().storage.backup_dir
            backup = backups.backup(handle.migration_url, folder / f"before-archive-{alias}-{stamp}.dump").path
        row, size = run_in_session(handle, _commit_after(model_archive.archive_dropping_latents, ref, backup))
    if size.empty:
        click.echo(f"model {row.alias!r} archived (it had no latents; `soundalike models unarchive {row.alias}`)")
        return
    click.echo(
        f"model {row.alias!r} archived; dropped its {size.latents} latents and {size.segments} segment windows "
        f"(backup {backup}; `soundalike restore {backup}` brings them back)"
    )


@models_group.command("unarchive")
@click.argument("ref")
def unarchive_command(ref: str) -> None:
    """Bring an archived model back (READY)."""
    row = _committing(registry.unarchive, ref)
    click.echo(f"model {row.alias!r} is READY again")


@models_group.command("delete")
@click.argument("ref")
def delete_command(ref: str) -> None:
    """Delete a model nothing refers to (a model with generations can only be archived)."""
    row = _committing(registry.delete, ref)
    click.echo(f"model {row.id} ({row.alias!r}) deleted")


@models_group.command("verify")
def verify_command() -> None:
    """Re-hash and load every checkpoint: mismatches, missing files and files that are no usable model mark the
    model FAILED (exit code 1)."""

    def progress(row) -> None:
        if row.checkpoint_path:
            click.echo(f"checking {row.alias} ({row.checkpoint_path}) ...", err=True)

    async def work(session):
        results = await registry.verify(session, progress, check=checkpoints.inspect)
        await session.commit()
        return results

    results = _run(work)
    if not results:
        click.echo("no models registered")
        return
    click.echo(
        format_table(["id", "alias", "result", "detail"], [[r.model_id, r.alias, r.outcome, r.detail] for r in results])
    )
    failed = [r for r in results if r.outcome == "failed"]
    if failed:
        raise SoundalikeError(f"{len(failed)} of {len(results)} checkpoints failed verification (now FAILED)")


@models_group.command("import-list")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and show the mapping; write nothing.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid lines even if some are invalid.")
@click.option(
    "--backup-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the pre-import backup goes [SOUNDALIKE_STORAGE_BACKUP_DIR, var/backups].",
)
def import_list_command(file: Path, dry_run: bool, skip_invalid: bool, backup_dir: Path | None) -> None:
    """Import a legacy model.list (validated first; backed up; one transaction; restored on failure)."""
    from tqdm import tqdm

    from service.domain.models import legacy_model_list as legacy
    from service.settings import get_settings

    parsed = legacy.read_legacy_list(file)
    backup_dir = backup_dir or get_settings().storage.backup_dir
    with database() as handle:
        bar = tqdm(desc="importing", unit="model", disable=None, leave=False)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        async def work(session):
            return await legacy.import_legacy_list(
                session,
                parsed,
                migration_url=handle.migration_url,
                backup_dir=backup_dir,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
                progress=progress,
            )

        try:
            report = run_in_session(handle, work)
        finally:
            bar.close()
    click.echo(legacy.format_report(report))
    if not report.ok:
        raise SoundalikeError(report.message)


models_group.add_command(reencode_command)
