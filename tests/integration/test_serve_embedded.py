"""`soundalike serve` on a fresh embedded data dir: ready, Ctrl-C or SIGTERM stops app and database, data is reused."""

import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.integration.test_cli import _free_port
from tests.integration.test_embedded_server import _postgres_pids, _wait_until_gone

pytestmark = pytest.mark.slow


def _serve(data_dir, port, log_path):
    env = {"PATH": "/usr/bin:/bin", "SOUNDALIKE_DATABASE_EMBEDDED_DIR": str(data_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve exited early"
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {timeout} s")


def _first_admin_key(log_text: str) -> str | None:
    match = re.search(r"first admin API key \(shown only now\): (sk_\S+)", log_text)
    return match.group(1) if match else None


def test_serve_twice_on_the_same_data(tmp_path):
    data_dir = tmp_path / "var" / "pg"
    # Ctrl-C, then SIGTERM: what a service manager or `docker stop` sends
    for attempt, stop_signal in (("first", signal.SIGINT), ("second", signal.SIGTERM)):
        port, log = _free_port(), tmp_path / f"{attempt}.log"
        proc = _serve(data_dir, port, log)
        try:
            assert _wait_ready(port, proc)["status"] == "ready"
            key = _first_admin_key(log.read_text())
            if attempt == "first":
                me = httpx.get(f"http://127.0.0.1:{port}/v1/me", headers={"Authorization": f"Bearer {key}"})
                assert me.json()["role"] == "admin"
            else:
                assert key is None, "the first admin key is printed only once"
        finally:
            proc.send_signal(stop_signal)
            assert proc.wait(timeout=30) == 0, log.read_text()
        _wait_until_gone(data_dir)
        initialised = "initialising embedded PostgreSQL" in log.read_text()
        assert initialised == (attempt == "first"), log.read_text()
    assert not _postgres_pids(data_dir)
