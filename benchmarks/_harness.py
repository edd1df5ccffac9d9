"""Shared by the benchmarks: a throw-away embedded PostgreSQL migrated to head, a model registered, `soundalike`
commands run as processes against it, results written to benchmarks/results/. Not a benchmark itself (the
leading underscore keeps `make bench` off it)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from service.db.schema import migrate
from service.db.server.embedded import EmbeddedPostgres
from service.db.server.provision import provision
from service.db.server.runtime import DatabaseHandle
from service.settings import DatabaseSettings

RESULTS = Path(__file__).parent / "results"
STOP_SECONDS = 120  # generous: a busy 2-core machine stops a torch process slowly


@contextmanager
def throwaway_database():
    root = Path(tempfile.mkdtemp(prefix="soundalike-bench-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pg")
    server.start()
    try:
        db = DatabaseSettings()
        provision(server.url(driver=""), db)
        handle = DatabaseHandle(
            app_url=server.url(db.app_role, db.name), migration_url=server.url(db.owner_role, db.name)
        )
        migrate.upgrade(handle.migration_url, db.app_role)
        yield handle, root
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def benchmark_checkpoint() -> Path:
    """The shipped default model when present, else a tiny one trained (once) by the project's own code."""
    from service.ml.pipeline import default_checkpoint_path
    from service.ml.training import train

    if default_checkpoint_path().exists():
        return default_checkpoint_path()
    cached = Path("var/bench-cache/tiny.pt")
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        train(preset="tiny", out=cached, seed=0)
    return cached


def register_model(handle: DatabaseHandle, pipeline, checkpoint: Path) -> int:
    config = pipeline.config
    with psycopg.connect(handle.migration_url.replace("+psycopg", ""), autocommit=True) as conn:
        return conn.execute(
            "INSERT INTO models (source_id, alias, source_type, version, checkpoint_path, checkpoint_sha256, "
            "latent_dim, sample_rate, clip_seconds, is_default) VALUES ('bench', 'bench', 'local', %s, %s, %s, %s, "
            "%s, %s, true) RETURNING id",
            (
                pipeline.version,
                str(checkpoint),
                pipeline.sha256,
                config.latent_dim,
                config.sample_rate,
                config.clip_seconds,
            ),
        ).fetchone()[0]


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        **result,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def service_env(handle: DatabaseHandle, root: Path) -> dict[str, str]:
    """What `soundalike` commands need to share the benchmark's database and blob store with the API server."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOUNDALIKE_")},
        "SOUNDALIKE_DATABASE_URL": handle.app_url,
        "SOUNDALIKE_DATABASE_MIGRATION_URL": handle.migration_url,
        "SOUNDALIKE_STORAGE_BLOB_DIR": str(root / "blobs"),
        "SOUNDALIKE_STORAGE_ARCHIVE_DIR": str(root / "archive"),
    }


@contextmanager
def running(name: str, args: list[str], env: dict[str, str], root: Path, stopped: dict | None = None):
    """`soundalike <args>` in its own process, logging to ROOT/NAME.log; Ctrl-C at the end, and how long it took
    to stop goes into ``stopped`` (None: it did not stop within STOP_SECONDS and was killed)."""
    log = (root / f"{name}.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env, stdout=log, stderr=log)
    try:
        yield process
    finally:
        started = time.perf_counter()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_SECONDS)
            seconds = time.perf_counter() - started
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            seconds = None
        if stopped is not None:
            stopped[name] = seconds
        log.close()
