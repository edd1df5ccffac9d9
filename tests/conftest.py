"""Shared fixtures: one throw-away embedded PostgreSQL per test session (never the dev data under var/)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("SOUNDALIKE_ENV", "test")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:  # noqa: F821
    from service.db.server.embedded import EmbeddedPostgres

    # Not under pytest's tmp_path: pytest resets /tmp/pytest-of-<user> to 0700 whenever any pytest starts,
    # which would lock out the unprivileged user PostgreSQL runs as when we are root.
    root = Path(tempfile.mkdtemp(prefix="soundalike-test-pg-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "data")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def make_database(pg_server) -> Iterator:
    """Factory: a provisioned, empty database of the given name on the session server."""
    from service.db.server.provision import provision
    from service.db.server.runtime import DatabaseHandle
    from service.settings import DatabaseSettings

    def make(name: str) -> tuple[DatabaseHandle, DatabaseSettings]:
        settings = DatabaseSettings(name=name)
        provision(pg_server.url(driver=""), settings)
        handle = DatabaseHandle(
            app_url=pg_server.url(settings.app_role, name),
            migration_url=pg_server.url(settings.owner_role, name),
        )
        return handle, settings

    yield make


@pytest.fixture(scope="session")
def database(make_database):
    """The session's main database, migrated to head."""
    from service.db.schema import migrate

    handle, settings = make_database("soundalike_test")
    migrate.upgrade(handle.migration_url, settings.app_role)
    return handle


@pytest.fixture(scope="session")
def settings(database):
    from service.settings import DatabaseSettings, Settings

    return Settings(env="test", database=DatabaseSettings(url=database.app_url, migration_url=database.migration_url))


@pytest.fixture
def owner_conn(database) -> Iterator:
    """A psycopg connection as the migration owner (autocommit), for setting up and inspecting rows."""
    from service.db.engine import connect_sync

    with connect_sync(database.migration_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def empty_tables(owner_conn) -> None:
    owner_conn.execute(
        "TRUNCATE models, generations, latent_embeddings, archived_latents, audio_assets, api_keys, "
        "procrastinate_jobs, batches, latent_changes, latent_change_pruning, cluster_runs, clusters, "
        "cluster_assignments, events, webhooks, webhook_deliveries RESTART IDENTITY CASCADE"
    )


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def trained_tiny(seed: int) -> Path:
    """A tiny model trained by the project's own code with ``seed`` (cached by a hash of the model sources)."""
    import hashlib

    from service.ml.training import train

    sources = sorted((repo_root() / "service" / "ml").rglob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cached = repo_root() / "var" / "test-cache" / (f"tiny-{digest}.pt" if seed == 0 else f"tiny-s{seed}-{digest}.pt")
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial.pt")
        corpus_cache = os.environ.get("SOUNDALIKE_ML_CACHE")
        os.environ["SOUNDALIKE_ML_CACHE"] = str(cached.parent / "corpus")  # never a developer's corpus cache
        try:
            # one thread: on a shared machine two contended threads are many times slower
            train(preset="tiny", out=partial, seed=seed, threads=1)
        finally:
            if corpus_cache is None:
                os.environ.pop("SOUNDALIKE_ML_CACHE", None)
            else:
                os.environ["SOUNDALIKE_ML_CACHE"] = corpus_cache
        partial.replace(cached)
    return cached


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """A tiny model trained by the project's own code (cached by a hash of the model sources)."""
    return trained_tiny(seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint_b() -> Path:
    """A second tiny model (another training seed): another latent space, for re-encode tests."""
    return trained_tiny(seed=1)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_checkpoint):
    from service.ml.pipeline import Pipeline

    return Pipeline.load(tiny_checkpoint)


def register_test_model(owner_conn, pipeline, checkpoint: Path, alias: str, default: bool) -> dict:
    """A trained test model in the registry under ``alias`` (also its source id), with the metadata the
    registry records of a checkpoint (its in-domain threshold and sampling defaults)."""
    from psycopg.types.json import Jsonb

    from service.domain.models.checkpoints import spec_of
    from service.domain.models.registry import recorded_metadata

    config = pipeline.config
    row = owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version, checkpoint_path, checkpoint_sha256, "
        "latent_dim, sample_rate, clip_seconds, is_default, metadata) "
        "VALUES (%s, %s, 'local', %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            alias,
            alias,
            pipeline.version,
            str(checkpoint),
            pipeline.sha256,
            config.latent_dim,
            config.sample_rate,
            config.clip_seconds,
            default,
            Jsonb(recorded_metadata(spec_of(pipeline))),
        ),
    ).fetchone()
    return {"id": row[0], "alias": alias, "pipeline": pipeline}


@pytest.fixture
def tiny_model(owner_conn, tiny_pipeline, tiny_checkpoint, empty_tables) -> dict:
    """The tiny model registered as the default model (fresh tables)."""
    return register_test_model(owner_conn, tiny_pipeline, tiny_checkpoint, "tiny", default=True)


@pytest.fixture
def model_id(owner_conn, empty_tables) -> int:
    """A model row with no checkpoint (fresh tables): for tests whose generations never run."""
    return owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version) VALUES ('m', 'm', 'local', '1') RETURNING id"
    ).fetchone()[0]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real ``redis-server`` (Debian's; ``make test`` installs it) on a free port in a temp dir, no persistence."""
    import socket
    import subprocess
    import time

    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: `make test` installs it (apt-get install redis-server)"
    root = Path(tempfile.mkdtemp(prefix="soundalike-test-redis-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(root), "--save", "", "--appendonly", "no"]
    with (root / "redis.log").open("wb") as log:
        server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert server.poll() is None, (root / "redis.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not answer within 30 s"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
