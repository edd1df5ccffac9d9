"""``soundalike index ...``: sync, verify, rebuild, cluster, duplicates, demo-data."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import click
from tqdm import tqdm

from indexing.errors import IndexingError
from service.cli_support import database

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines say which SIMD build it loaded


@contextmanager
def _app_database():
    with database() as handle:
        yield handle


def _index_dir() -> Path:
    from service.settings import get_settings

    return get_settings().storage.index_dir


class _Bars:
    """tqdm progress bars (on a terminal), one per step; ``bars(total)`` returns the step's update callback."""

    def __init__(self, label: str) -> None:
        self.label, self.bars = label, []

    def __call__(self, total: int):
        bar = tqdm(total=total, desc=self.label, unit="vec", unit_scale=True, disable=None, leave=False)
        self.bars.append(bar)
        return bar.update

    def close(self) -> None:
        for bar in self.bars:
            bar.close()


def _models(handle, alias: str | None):
    from indexing.source import models_with_latents, resolve_model
    from indexing.sync import connect

    with connect(handle.app_url) as conn:
        return [resolve_model(conn, alias)] if alias else models_with_latents(conn)


def _print_sync(result) -> None:
    click.echo(
        f"{result.model}: {result.mode}, +{result.upserted} -{result.removed}, {result.count} vectors, "
        f"watermark {result.watermark}, {result.seconds:.2f}s"
    )


@click.group("index")
def index_group() -> None:
    """FAISS mirror of the latents: sync, verify, rebuild; offline clustering and near-duplicates."""


@index_group.command("sync")
@click.option("--model", "alias", default=None, help="Model alias [default: every model with latents].")
@click.option("--prune/--no-prune", default=True, help="Prune the change log below the oldest watermark (all models).")
def sync_command(alias: str | None, prune: bool) -> None:
    """Bring the mirror(s) up to date with the database (incremental; full on first build)."""
    from indexing.sync import sync_alias, sync_all

    bars = _Bars("sync")
    try:
        with _app_database() as handle:
            if alias:
                results = [sync_alias(handle.app_url, _index_dir(), alias, progress=bars)]
            else:
                results = sync_all(handle.app_url, _index_dir(), prune=prune, progress=bars)
    finally:
        bars.close()
    for result in results:
        _print_sync(result)
    if not results:
        click.echo("no model has latents yet: nothing to sync")


@index_group.command("rebuild")
@click.option("--model", "alias", default=None, help="Model alias [default: every model with latents].")
def rebuild_command(alias: str | None) -> None:
    """Rebuild mirror(s) from the database (the source of truth); fixes corrupt or lost files."""
    with _app_database() as handle:
        _rebuild(handle, alias)


def rebuild_after_restore(handle) -> None:
    """Every model's mirror rebuilt from the restored rows (the restore bypassed the change log)."""
    _rebuild(handle, None)


def _rebuild(handle, alias: str | None) -> None:
    from indexing.sync import rebuild_all, sync_model

    bars = _Bars("rebuild")
    try:
        if alias:
            results = [
                sync_model(handle.app_url, _index_dir(), m, full=True, progress=bars) for m in _models(handle, alias)
            ]
        else:
            results = rebuild_all(handle.app_url, _index_dir(), progress=bars)
    finally:
        bars.close()
    for result in results:
        _print_sync(result)


@index_group.command("verify")
@click.option("--model", "alias", default=None, help="Model alias [default: every model with latents].")
def verify_command(alias: str | None) -> None:
    """Compare mirror(s) with the database; exit code 1 on drift, corruption or a missing mirror."""
    from indexing.verify import verify_model

    bars = _Bars("verify")
    try:
        with _app_database() as handle:
            reports = [verify_model(handle.app_url, _index_dir(), m, progress=bars) for m in _models(handle, alias)]
    finally:
        bars.close()
    for report in reports:
        click.echo(report.summary())
    bad = [r.model for r in reports if not r.ok]
    if bad:
        raise IndexingError(
            f"mirror of {', '.join(bad)} does not match the database: run `soundalike index sync`, "
            "or `soundalike index rebuild` for a corrupt or missing mirror"
        )


@index_group.command("cluster")
@click.option("--model", "alias", required=True, help="Model alias.")
@click.option("--k", type=click.IntRange(min=1), required=True, help="Number of clusters.")
@click.option("--niter", type=click.IntRange(min=1), default=20, show_default=True, help="k-means iterations.")
@click.option("--seed", type=int, default=1234, show_default=True)
@click.option(
    "--nredo",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="k-means restarts; the best objective wins.",
)
@click.option(
    "--init",
    type=click.Choice(["k-means++", "random"]),
    default="k-means++",
    show_default=True,
    help="Centre seeding: greedy k-means++ or FAISS's uniform random start.",
)
@click.option(
    "--keep",
    "keep_runs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Runs kept per model (the newest is active).",
)
@click.option("--sync/--no-sync", "sync_first", default=True, show_default=True, help="Sync the mirror first.")
def cluster_command(
    alias: str, k: int, niter: int, seed: int, nredo: int, init: str, keep_runs: int, sync_first: bool
) -> None:
    """Spherical k-means over the model's mirror; writes the run, centroids, assignments and 2-D map."""
    from indexing.clustering import cluster_model
    from indexing.source import resolve_model
    from indexing.sync import connect

    with _app_database() as handle:
        with connect(handle.app_url) as conn:
            model = resolve_model(conn, alias)
        result = cluster_model(
            handle.app_url,
            _index_dir(),
            model,
            k,
            niter=niter,
            seed=seed,
            nredo=nredo,
            init=init,
            keep_runs=keep_runs,
            sync_first=sync_first,
        )
    sizes = sorted(result.sizes)
    click.echo(
        f"run {result.run_id} ({result.model}): k={result.k} over {result.n_points} latents, "
        f"inertia {result.inertia:.2f}, sizes min {sizes[0]} / median {sizes[len(sizes) // 2]} / max {sizes[-1]}, "
        f"{result.seconds:.2f}s; now the active run"
    )


@index_group.command("duplicates")
@click.option("--model", "alias", required=True, help="Model alias.")
@click.option("--threshold", type=float, default=0.98, show_default=True, help="Minimum cosine similarity.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON report path [default: <index dir>/duplicates-<alias>.json].",
)
@click.option("--show", type=int, default=10, show_default=True, help="Pairs to print.")
@click.option("--sync/--no-sync", "sync_first", default=True, show_default=True, help="Sync the mirror first.")
def duplicates_command(alias: str, threshold: float, output: Path | None, show: int, sync_first: bool) -> None:
    """Near-duplicate pairs (FAISS range search over the mirror), printed and written as JSON."""
    from indexing.duplicates import find_pairs, write_report
    from indexing.source import resolve_model
    from indexing.sync import connect

    bars = _Bars("duplicates")
    try:
        with _app_database() as handle:
            with connect(handle.app_url) as conn:
                model = resolve_model(conn, alias)
            pairs = find_pairs(handle.app_url, _index_dir(), model, threshold, sync_first=sync_first, progress=bars)
    finally:
        bars.close()
    output = output or _index_dir() / f"duplicates-{alias}.json"
    write_report(output, model, threshold, pairs)
    click.echo(f"{len(pairs)} pairs with similarity > {threshold} in {alias}; report: {output}")
    for pair in pairs[:show]:
        click.echo(
            f"  {pair.similarity:.4f}  latent {pair.a} ({pair.generation_a})  latent {pair.b} ({pair.generation_b})"
        )


@index_group.command("demo-data")
@click.option("--model", "alias", default="demo", show_default=True, help="Model alias (created if new).")
@click.option("--n", "rows", type=click.IntRange(min=1), default=2000, show_default=True, help="Latents to load.")
@click.option("--clusters", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo_data_command(alias: str, rows: int, clusters: int, seed: int) -> None:
    """Bulk-load synthetic clustered latents (COPY) for development, notebooks and benchmarks."""
    from indexing.demo import DemoAlreadyLoaded, load_demo
    from indexing.sync import connect

    with _app_database() as handle, connect(handle.app_url) as conn:
        try:
            data = load_demo(conn, alias, rows, clusters, seed)
        except DemoAlreadyLoaded as exc:
            raise click.ClickException(str(exc)) from exc
        conn.commit()
    click.echo(
        f"loaded {data.rows} synthetic latents in {data.clusters} clusters for model {alias} (id {data.model.id})"
    )
