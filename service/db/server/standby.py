"""Streaming replicas of the embedded server, for development and tests: ``pg_basebackup -R`` from the
bundled PostgreSQL 18 copies the primary's data directory and writes ``standby.signal`` and
``primary_conninfo``, so the copy starts as a hot standby that streams the primary's WAL over its socket.

In production, replicas come from the database service (or from the same ``pg_basebackup -R`` against the
primary); the application only needs their URLs in ``SOUNDALIKE_DATABASE_READ_URLS``.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from service.db.server.embedded import SUPERUSER, SYSTEM_USER, EmbeddedPostgres, run_pg_tool
from service.errors import SoundalikeError


def create_replica(primary: EmbeddedPostgres, target: Path) -> EmbeddedPostgres:
    """Copy the running ``primary`` into the empty directory ``target`` as a streaming standby (not started)."""
    target = Path(target).resolve()
    if target.exists() and any(target.iterdir()):
        raise SoundalikeError(f"{target} is not empty: a replica needs a new data directory")
    prepare_data_dir(target)
    source = ["--host", str(primary.socket_dir), "--username", SUPERUSER, "--no-password"]
    copy = ["--pgdata", str(target), "--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast"]
    run_pg_tool("pg_basebackup", *source, *copy, timeout=600)
    for copied in ("server.log", ".s.PGSQL.5432.lock"):  # the primary's log and socket lock came along
        (target / copied).unlink(missing_ok=True)
    return EmbeddedPostgres(target, primary.server_settings)


def prepare_data_dir(target: Path, mode: int = 0o700) -> None:
    """Create ``target`` for the server's files (owned by its system user when we are root)."""
    target.mkdir(mode=mode, parents=True, exist_ok=True)
    prepare_owner(target)


def prepare_owner(path: Path) -> None:
    """PostgreSQL tools run as the server's system user when we are root: that user must own ``path``."""
    if os.geteuid() == 0:
        user = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def is_replica(data_dir: Path) -> bool:
    return (Path(data_dir) / "standby.signal").exists()
