"""Point-in-time recovery of the embedded server: WAL archiving, base backups, restore to a moment.

- The embedded server archives every finished WAL segment into ``SOUNDALIKE_STORAGE_WAL_DIR`` (``var/pg-wal``).
- ``base_backup`` copies the running server with ``pg_basebackup`` (plain format, WAL streamed in, so the
  copy is consistent by itself) into ``<backup_dir>/base-<time>/`` and writes ``base-<time>.json`` beside
  it: when it finished and the blob manifest (every audio file the database referenced then).
- ``restore_until`` builds a NEW data directory from the newest base backup that finished before the target
  time, replays archived WAL up to that time (``recovery_target_time``, then promote), and verifies it: all
  indexes valid, every audio file the restored rows reference present in the blob store. Only then is it
  switched in (the old data directory is kept beside it as ``<name>.before-restore-<time>``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from service.db.server.embedded import SUPERUSER, EmbeddedPostgres, run_pg_tool
from service.db.server.standby import prepare_data_dir, prepare_owner
from service.errors import DatabaseError, SoundalikeError
from service.settings import Settings
from service.storage import BlobStore

BASE_PREFIX = "base-"
RECOVERY_TIMEOUT_SECONDS = 600.0
REFERENCED_BLOBS = "SELECT uri, sha256, bytes FROM audio_assets ORDER BY uri"
WAITING_FOR_ARCHIVER = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
INVALID_INDEXES = "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid OR NOT indisready"


def archiving_settings(wal_dir: Path) -> dict[str, str]:
    """Server settings that copy each finished WAL segment into ``wal_dir`` (never overwriting one)."""
    wal = Path(wal_dir).resolve()
    return {
        "archive_mode": "on",
        "archive_command": f'test ! -f "{wal}/%f" && cp "%p" "{wal}/%f"',
        "archive_timeout": "300",  # a quiet server still archives its last changes within 5 minutes
    }


def wal_archive_dir(settings: Settings) -> Path:
    """``SOUNDALIKE_STORAGE_WAL_DIR``, else beside the data directory (``var/pg`` archives into ``var/pg-wal``):
    one archive per server, so two servers never offer the same segment names to one directory."""
    data_dir = settings.database.embedded_dir.resolve()
    return (settings.storage.wal_dir or data_dir.with_name(f"{data_dir.name}-wal")).resolve()


def prepare_wal_dir(wal_dir: Path) -> None:
    prepare_data_dir(Path(wal_dir).resolve(), mode=0o755)


@dataclass(frozen=True)
class BaseBackup:
    path: Path
    finished_at: datetime
    blobs: list[dict] = field(default_factory=list)

    @property
    def manifest(self) -> Path:
        return self.path.with_suffix(".json")


def base_backup(server: EmbeddedPostgres, backup_dir: Path, database: str) -> BaseBackup:
    """A consistent copy of the running server plus its blob manifest; written under a temporary name."""
    backup_dir = Path(backup_dir).resolve()
    backup_dir.mkdir(parents=True, exist_ok=True)
    name = f"{BASE_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    partial = backup_dir / f".{name}.partial"
    prepare_data_dir(partial)
    source = ["--host", str(server.socket_dir), "--username", SUPERUSER, "--no-password", "--label", name]
    copy = ["--pgdata", str(partial), "--wal-method=stream", "--checkpoint=fast"]
    run_pg_tool("pg_basebackup", *source, *copy, timeout=3600)
    with psycopg.connect(server.url(SUPERUSER, database, driver=""), autocommit=True) as conn:
        blobs = [{"uri": u, "sha256": s, "bytes": b} for u, s, b in conn.execute(REFERENCED_BLOBS)]
        finished_at = conn.execute("SELECT now()").fetchone()[0]
    backup = BaseBackup(backup_dir / name, finished_at, blobs)
    partial.rename(backup.path)
    backup.manifest.write_text(json.dumps({"finished_at": finished_at.isoformat(), "blobs": blobs}, indent=1))
    return backup


def base_backups(backup_dir: Path) -> list[BaseBackup]:
    """The complete base backups under ``backup_dir``, oldest first."""
    found = []
    for manifest in sorted(Path(backup_dir).glob(f"{BASE_PREFIX}*.json")):
        data = json.loads(manifest.read_text())
        if manifest.with_suffix("").is_dir():
            found.append(
                BaseBackup(manifest.with_suffix(""), datetime.fromisoformat(data["finished_at"]), data["blobs"])
            )
    return sorted(found, key=lambda b: b.finished_at)


def pick_base(backup_dir: Path, target: datetime) -> BaseBackup:
    """The newest base backup that finished before ``target``."""
    if target > datetime.now(UTC):
        raise SoundalikeError(f"{target.isoformat()} is in the future: recovery replays what has happened")
    backups = base_backups(backup_dir)
    usable = [b for b in backups if b.finished_at <= target]
    if not usable:
        oldest = f"; the oldest finished at {backups[0].finished_at.isoformat()}" if backups else ""
        raise SoundalikeError(
            f"no base backup under {backup_dir} finished before {target.isoformat()}{oldest}: "
            "recovery starts from one (`soundalike backup --base`)"
        )
    return usable[-1]


def archive_current_wal(server: EmbeddedPostgres, timeout: float = 300.0) -> None:
    """Close the current WAL segment and wait until the archiver has copied every finished one (no ``.ready``
    file left in ``pg_wal/archive_status``), so the archive reaches this moment."""
    with psycopg.connect(server.url(driver=""), autocommit=True) as conn:
        # A commit stamped now: recovery to an earlier time stops at it instead of running out of WAL first
        # ("recovery ended before configured recovery target was reached") when nothing was written since.
        conn.execute("SELECT pg_current_xact_id()")
        conn.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + timeout
        while waiting := conn.execute(WAITING_FOR_ARCHIVER).fetchone()[0]:
            if time.monotonic() > deadline:
                failed = conn.execute("SELECT last_failed_wal FROM pg_stat_archiver").fetchone()[0]
                raise DatabaseError(
                    f"{waiting} WAL segment(s) not archived within {timeout:.0f} s (last failure {failed}): "
                    f"check archive_command in {server.log_file}"
                )
            time.sleep(0.1)


@dataclass
class RestoreReport:
    base: BaseBackup
    target: datetime
    data_dir: Path  # the recovered data directory (the live one once switched in)
    missing_blobs: list[str] = field(default_factory=list)
    invalid_indexes: list[str] = field(default_factory=list)
    previous: Path | None = None  # where the replaced data directory was kept

    @property
    def verified(self) -> bool:
        return not self.missing_blobs and not self.invalid_indexes

    def problems(self) -> str:
        found = [f"index {name} is not valid" for name in self.invalid_indexes]
        found += [f"audio file {uri} is missing from the blob store" for uri in self.missing_blobs[:20]]
        if len(self.missing_blobs) > 20:
            found.append(f"... {len(self.missing_blobs) - 20} more missing audio files")
        return "\n".join(found)


def recover(
    base: BaseBackup, target: datetime, into: Path, wal_dir: Path, database: str, store: BlobStore
) -> RestoreReport:
    """Build ``into`` from ``base`` plus archived WAL up to ``target``, run it until promoted, verify it."""
    # pg_verifybackup would check the copy against its backup_manifest, but the wheel's build crashes (SIGSEGV)
    # on every input; recovery itself checks each WAL record it replays, and _verify checks the result.
    _copy_base(base.path, into)
    _configure_recovery(into, Path(wal_dir).resolve(), target)
    server = EmbeddedPostgres(into, {"archive_mode": "off"})
    server.start()
    try:
        _wait_until_promoted(server)
        return _verify(server, database, store, RestoreReport(base, target, into))
    finally:
        server.stop()


def _copy_base(base: Path, into: Path) -> None:
    if into.exists():
        raise SoundalikeError(f"{into} already exists: restore into a new data directory")
    prepare_data_dir(into.parent, mode=0o755)
    shutil.copytree(base, into, symlinks=True)
    for leftover in ("server.log", ".s.PGSQL.5432.lock", "postmaster.pid", "standby.signal"):
        (into / leftover).unlink(missing_ok=True)
    _own(into)


def _own(path: Path) -> None:
    """Hand a copied tree to the server's system user (when we are root) with the modes PostgreSQL wants."""
    path.chmod(0o700)
    for entry in [path, *path.rglob("*")]:
        prepare_owner(entry)


def _configure_recovery(into: Path, wal_dir: Path, target: datetime) -> None:
    settings = {
        "restore_command": f'cp "{wal_dir}/%f" "%p"',
        "recovery_target_time": target.isoformat(),
        "recovery_target_action": "promote",
    }
    with open(into / "postgresql.auto.conf", "a") as conf:
        conf.write("# point-in-time recovery (soundalike restore --until)\n")
        conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
    (into / "recovery.signal").touch()
    prepare_owner(into / "recovery.signal")


def _wait_until_promoted(server: EmbeddedPostgres) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
    with psycopg.connect(server.url(driver=""), autocommit=True) as conn:
        while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            if time.monotonic() > deadline:
                raise DatabaseError(f"recovery in {server.data_dir} did not finish: see {server.log_file}")
            time.sleep(0.1)


def _verify(server: EmbeddedPostgres, database: str, store: BlobStore, report: RestoreReport) -> RestoreReport:
    with psycopg.connect(server.url(SUPERUSER, database, driver=""), autocommit=True) as conn:
        report.invalid_indexes = [name for (name,) in conn.execute(INVALID_INDEXES)]
        referenced = [uri for uri, _, _ in conn.execute(REFERENCED_BLOBS)] if _has_table(conn, "audio_assets") else []
    report.missing_blobs = [uri for uri in referenced if not store.path(uri).is_file()]
    return report


def _has_table(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{name}",)).fetchone()[0]


def switch_in(report: RestoreReport, live: EmbeddedPostgres) -> RestoreReport:
    """Stop the live server (this process must own it), keep its data directory aside, move the recovered
    one into its place. The caller starts the server again."""
    if not report.verified:
        raise SoundalikeError(f"the recovered data directory {report.data_dir} did not verify:\n{report.problems()}")
    data_dir = live.data_dir
    live.stop()
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    report.previous = data_dir.with_name(f"{data_dir.name}.before-restore-{stamp}")
    data_dir.rename(report.previous)
    report.data_dir.rename(data_dir)
    report.data_dir = data_dir
    return report
