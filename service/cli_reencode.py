"""``soundalike models reencode``: move a catalogue into another model's space through the workers."""

from __future__ import annotations

import asyncio
import uuid

import click

from service.cli_support import database
from service.domain.access.api_keys import Caller
from service.domain.errors import DomainError
from service.domain.generation import variants
from service.domain.models import reencode
from service.errors import SoundalikeError
from service.settings import Settings, get_settings

CLI_CALLER = Caller(owner="cli", role="admin", key_id=0)
FINISHED = ("succeeded", "failed", "partial", "cancelled")


@click.command("reencode")
@click.option("--from", "source", required=True, help="The model whose items to re-encode (alias, source id or id).")
@click.option("--to", "target", required=True, help="The model whose space they move into.")
@click.option("--include-archived", is_flag=True, help="Archived items too (their new latents stay archived).")
@click.option("--chunk-size", type=click.IntRange(1, 1024), default=None, help="Items per job [jobs setting].")
@click.option("--detach", is_flag=True, help="Queue the batch and return instead of following its progress.")
def reencode_command(source: str, target: str, include_archived: bool, chunk_size: int | None, detach: bool) -> None:
    """Re-encode every live item with audio in --from's space into --to's space, as one batch the workers
    process in chunks (`soundalike worker`). Safe to run again: only items still missing are listed."""
    settings = get_settings()
    request = reencode.ReencodeRequest(source, target, include_archived)
    size = chunk_size or settings.jobs.reencode_chunk_size
    with database() as handle:
        try:
            asyncio.run(_start_and_follow(handle.app_url, settings, request, size, detach))
        except DomainError as exc:
            raise SoundalikeError(exc.message) from None
        except KeyboardInterrupt:
            click.echo("\nstopped following; the batch keeps running in the workers (GET /v1/batches/ID)", err=True)


async def _start_and_follow(
    url: str, settings: Settings, request: reencode.ReencodeRequest, chunk_size: int, detach: bool
) -> None:
    from service.db.engine import create_engine, session_factory
    from service.jobs.app import create_job_app, opened
    from service.jobs.queue import ProcrastinateQueue

    engine = create_engine(url, settings.database)
    sessions = session_factory(engine)
    job_app = create_job_app(url, settings.jobs)
    try:
        async with opened(job_app, url, settings.database), sessions() as session:
            batch = await reencode.request_reencode(
                session, ProcrastinateQueue(job_app), CLI_CALLER, request, chunk_size
            )
        params = batch.params
        click.echo(
            f"batch {batch.id}: {batch.total} items from {params['from']!r} into {params['to']!r}, "
            f"{params['chunks']} chunks of {chunk_size}, queued for the workers"
        )
        if detach:
            click.echo(f"follow it with GET /v1/batches/{batch.id}")
            return
        await _follow(sessions, batch.id)
    finally:
        await engine.dispose()


async def _follow(sessions, batch_id: uuid.UUID, interval: float = 1.0) -> None:
    """A progress bar until the batch finishes; Ctrl-C stops following, not the batch."""
    from tqdm import tqdm

    async with sessions() as session:
        view = await variants.get_batch(session, CLI_CALLER, batch_id)
    with tqdm(total=view.batch.total, unit="item", desc="re-encoding") as bar:
        while True:
            done = view.counts["succeeded"] + view.counts["failed"] + view.counts["cancelled"]
            bar.total = view.batch.total
            bar.update(done - bar.n)
            if view.status in FINISHED:
                break
            await asyncio.sleep(interval)
            async with sessions() as session:
                view = await variants.get_batch(session, CLI_CALLER, batch_id)
    counts = view.counts
    click.echo(
        f"{view.status}: {counts['succeeded']} re-encoded, {counts['failed']} failed, {counts['cancelled']} cancelled"
    )
