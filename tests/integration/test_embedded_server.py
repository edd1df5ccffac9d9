"""The embedded server recovers from a killed owner and from a killed server's stale lock."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from service.db.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow


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


def test_stale_postmaster_pid_from_a_killed_server_is_recovered(tmp_path, caplog):
    data_dir = tmp_path / "pg"
    first = EmbeddedPostgres(data_dir)
    first.start()
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    _wait_until_gone(data_dir)
    # Make the lock look taken: its pid now belongs to a live process that is not PostgreSQL.
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    (data_dir / "postmaster.pid").write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")

    second = EmbeddedPostgres(data_dir)
    with caplog.at_level(logging.WARNING, logger="service.db.embedded"):
        second.start()
    try:
        assert second.owned and _answers(second)
        assert "stale lock" in caplog.text
    finally:
        second.stop()
    _wait_until_gone(data_dir)


def test_server_left_by_a_killed_owner_is_adopted_and_stopped(tmp_path, caplog):
    data_dir = tmp_path / "pg"
    starter = (
        "import os, signal, sys; from pathlib import Path; from service.db.embedded import EmbeddedPostgres; "
        "EmbeddedPostgres(Path(sys.argv[1])).start(); os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", starter, str(data_dir)])
    assert killed.returncode == -signal.SIGKILL
    assert _postgres_pids(data_dir), "the killed owner should have left its server running"

    adopter = EmbeddedPostgres(data_dir)
    with caplog.at_level(logging.WARNING, logger="service.db.embedded"):
        adopter.start()
    assert adopter.owned and "adopting" in caplog.text
    assert _answers(adopter)
    adopter.stop()
    _wait_until_gone(data_dir)


def test_a_second_process_attaches_without_taking_ownership(tmp_path):
    data_dir = tmp_path / "pg"
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


def test_long_data_dir_paths_get_a_short_socket_dir(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    server = EmbeddedPostgres(deep / "pg")
    assert server.socket_dir != server.data_dir
    server.start()
    try:
        assert _answers(server)
    finally:
        server.stop()
