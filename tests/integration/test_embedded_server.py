"""The embedded server recovers from a killed owner and from a killed server's stale lock."""

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from service.db.server.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow


@pytest.fixture
def server_root():
    """A directory the unprivileged server user can always enter: pytest's own tmp_path lives under
    /tmp/pytest-of-<user>, which any pytest starting meanwhile (a parallel run) resets to 0700."""
    root = Path(tempfile.mkdtemp(prefix="soundalike-test-embedded-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _postgres_pids(data_dir: Path) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(data_dir) in " ".join(proc.info["cmdline"] or []):
            pids.append(proc.pid)
    return pids


def _wait_until_gone(data_dir: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while _postgres_pids(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _postgres_pids(data_dir), "postgres processes still running"


def _answers(server: EmbeddedPostgres) -> bool:
    with psycopg.connect(server.url(driver=""), connect_timeout=5) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def test_stale_postmaster_pid_from_a_killed_server_is_recovered(server_root, caplog):
    data_dir = server_root / "pg"
    first = EmbeddedPostgres(data_dir)
    first.start()
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    _wait_until_gone(data_dir)
    # Make the lock look taken: its pid now belongs to a live process that is not PostgreSQL.
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    (data_dir / "postmaster.pid").write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")

    second = EmbeddedPostgres(data_dir)
    with caplog.at_level(logging.WARNING, logger="service.db.server.embedded"):
        second.start()
    try:
        assert second.owned and _answers(second)
        assert "stale lock" in caplog.text
    finally:
        second.stop()
    _wait_until_gone(data_dir)


def test_children_of_a_killed_server_are_waited_for_then_killed(server_root, caplog):
    """Under load a killed postmaster's children outlive it for a while and hold its shared memory; a new server
    refuses to start over them. Frozen children never exit by themselves: they must be killed after the grace."""
    data_dir = server_root / "pg"
    first = EmbeddedPostgres(data_dir)
    first.start()
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    children = postmaster.children()
    assert children, "a running server has a checkpointer, a writer, ..."
    for child in children:
        child.suspend()  # SIGSTOP: it cannot notice the postmaster's death
    postmaster.kill()
    _wait_until_gone(data_dir)

    second = EmbeddedPostgres(data_dir)
    second.leftover_grace_seconds = 1.0
    try:
        with caplog.at_level(logging.WARNING, logger="service.db.server.embedded"):
            second.start()
        assert second.owned and _answers(second)
        assert "waiting for" in caplog.text and "killing processes of a killed PostgreSQL" in caplog.text
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        second.stop()
        for child in children:  # never leave frozen processes behind, even when the recovery failed
            with contextlib.suppress(psutil.Error):
                child.kill()
    _wait_until_gone(data_dir)


def test_server_left_by_a_killed_owner_is_adopted_and_stopped(server_root, caplog):
    data_dir = server_root / "pg"
    starter = (
        "import os, signal, sys; from pathlib import Path; from service.db.server.embedded import EmbeddedPostgres; "
        "EmbeddedPostgres(Path(sys.argv[1])).start(); os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", starter, str(data_dir)])
    assert killed.returncode == -signal.SIGKILL
    assert _postgres_pids(data_dir), "the killed owner should have left its server running"

    adopter = EmbeddedPostgres(data_dir)
    with caplog.at_level(logging.WARNING, logger="service.db.server.embedded"):
        adopter.start()
    assert adopter.owned and "adopting" in caplog.text
    assert _answers(adopter)
    adopter.stop()
    _wait_until_gone(data_dir)


def test_a_second_process_attaches_without_taking_ownership(server_root):
    data_dir = server_root / "pg"
    owner = EmbeddedPostgres(data_dir)
    owner.start()
    try:
        guest = EmbeddedPostgres(data_dir)
        guest.start()
        assert not guest.owned
        guest.stop()  # a guest's stop leaves the server running
        assert _answers(owner)
    finally:
        owner.stop()
    _wait_until_gone(data_dir)


def test_long_data_dir_paths_get_a_short_socket_dir(server_root):
    deep = server_root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    server = EmbeddedPostgres(deep / "pg")
    assert server.socket_dir != server.data_dir
    server.start()
    try:
        assert _answers(server)
    finally:
        server.stop()
