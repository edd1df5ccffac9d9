"""Read replicas against a real primary and a real streaming replica (pg_basebackup -R of the test server):
reads go to the replica, a caller's own writes are read back at once, a lagging or stopped replica is
skipped (primary fallback), and the application role cannot write on the replica."""

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from service.cli import main
from service.db.server.embedded import EmbeddedPostgres
from service.db.server.standby import is_replica
from service.settings import get_settings
from tests.integration.api_helpers import api_client, api_settings, bearer_for

pytestmark = pytest.mark.slow
DB = "soundalike_test"


@pytest.fixture(scope="module")
def replica(pg_server, database):
    """Made by `soundalike db replica create` against the (running) test server."""
    root = Path(tempfile.mkdtemp(prefix="soundalike-test-replica-"))
    root.chmod(0o755)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOUNDALIKE_DATABASE_EMBEDDED_DIR", str(pg_server.data_dir))
        env.delenv("SOUNDALIKE_DATABASE_URL", raising=False)
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(main, ["db", "replica", "create", str(root / "data")])
        finally:
            get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert is_replica(root / "data")
    server = EmbeddedPostgres(root / "data")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def superuser(server):
    return psycopg.connect(server.url(driver=""), autocommit=True)


def wait_until_replayed(primary, replica_server, timeout: float = 60) -> None:
    with superuser(primary) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    with superuser(replica_server) as conn:
        while conn.execute("SELECT pg_last_wal_replay_lsn() < %s", (target,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.05)


def pause_replay(replica_server, paused: bool) -> None:
    with superuser(replica_server) as conn:
        conn.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")


def add_generation(owner_conn, model_id: int, owner: str = "alice") -> str:
    return str(
        owner_conn.execute(
            "INSERT INTO generations (owner, model_id, kind, status) VALUES (%s, %s, 'import', 'succeeded') "
            "RETURNING id",
            (owner, model_id),
        ).fetchone()[0]
    )


@pytest.fixture
def model_id(owner_conn, empty_tables):
    return owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version) VALUES ('m', 'm', 'local', 'v1') RETURNING id"
    ).fetchone()[0]


def replica_settings(database, replica_server, tmp_path, max_lag: float):
    settings = api_settings(database, tmp_path)
    settings.database.read_urls = replica_server.url(settings.database.app_role, DB, driver="")
    settings.database.replica_max_lag_seconds = max_lag
    settings.database.replica_poll_seconds = 0.1
    return settings


async def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


def test_a_second_replica_needs_an_empty_directory(replica, pg_server):
    from service.db.server.standby import create_replica
    from service.errors import SoundalikeError

    with pytest.raises(SoundalikeError, match="is not empty"):
        create_replica(pg_server, replica.data_dir)


def test_the_app_role_cannot_write_on_the_replica(replica, database):
    with (
        psycopg.connect(replica.url("soundalike_app", DB, driver="")) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("INSERT INTO api_keys (prefix, key_hash, owner, role) VALUES ('p', 'h', 'o', 'reader')")


async def test_reads_go_to_the_replica_and_writers_read_their_writes(
    replica, pg_server, database, owner_conn, model_id, tmp_path
):
    old = add_generation(owner_conn, model_id)
    settings = replica_settings(database, replica, tmp_path, max_lag=3600)
    async with api_client(database, settings, worker=False) as client:
        alice, ops = await bearer_for(client, "alice", "creator"), await bearer_for(client, "ops", "admin")
        wait_until_replayed(pg_server, replica)
        pause_replay(replica, True)
        try:
            new = add_generation(owner_conn, model_id)  # on the primary only: the replica is paused
            assert (await client.get(f"/v1/generations/{new}", headers=alice)).status_code == 404  # replica
            assert (await client.get(f"/v1/generations/{old}", headers=alice)).status_code == 200
            search = await client.post("/v1/search", json={"generation_id": new}, headers=alice)
            assert search.status_code == 404, search.text  # searches read the replica too

            assert (await client.delete(f"/v1/generations/{old}", headers=alice)).status_code == 204  # a write
            # alice's reads now go to the primary until the replica has replayed her write ...
            assert (await client.get(f"/v1/generations/{old}", headers=alice)).status_code == 404  # deleted
            assert (await client.get(f"/v1/generations/{new}", headers=alice)).status_code == 200
            search = await client.post("/v1/search", json={"generation_id": new}, headers=alice)
            assert search.status_code != 404, search.text  # found (it has no latent: another problem)
            # ... while other callers keep reading the (stale) replica
            assert (await client.get(f"/v1/generations/{old}", headers=ops)).status_code == 200
            assert (await client.get(f"/v1/generations/{new}", headers=ops)).status_code == 404

            metrics = (await client.get("/metrics", headers=ops)).text
            assert 'soundalike_db_replica_up{replica="soundalike_app@' in metrics
        finally:
            pause_replay(replica, False)
        replicas = client.app.state.replicas
        await wait_for(lambda: replicas.replicas[0].replay_lsn >= replicas.writes.of("alice"), "replayed")
        assert (await client.get(f"/v1/generations/{new}", headers=ops)).status_code == 200


async def test_a_lagging_replica_is_skipped(replica, pg_server, database, owner_conn, model_id, tmp_path):
    settings = replica_settings(database, replica, tmp_path, max_lag=0.5)
    async with api_client(database, settings, worker=False) as client:
        ops = await bearer_for(client, "ops", "admin")
        wait_until_replayed(pg_server, replica)
        pause_replay(replica, True)
        try:
            new = add_generation(owner_conn, model_id)
            state = client.app.state.replicas.replicas[0]
            await wait_for(lambda: state.lag_seconds > 0.5, "the replica lags")
            assert (await client.get(f"/v1/generations/{new}", headers=ops)).status_code == 200  # the primary
            metrics = (await client.get("/metrics", headers=ops)).text
            lag = [line for line in metrics.splitlines() if line.startswith("soundalike_db_replica_lag_seconds")]
            assert lag and float(lag[0].split()[-1]) > 0.5
        finally:
            pause_replay(replica, False)


async def test_a_stopped_replica_is_skipped(replica, pg_server, database, owner_conn, model_id, tmp_path):
    settings = replica_settings(database, replica, tmp_path, max_lag=3600)
    async with api_client(database, settings, worker=False) as client:
        ops = await bearer_for(client, "ops", "admin")
        state = client.app.state.replicas.replicas[0]
        await wait_for(lambda: state.up, "the replica is up")
        replica.stop()
        try:
            new = add_generation(owner_conn, model_id)
            for _ in range(3):  # the first read may still pick it and fall back on connecting
                assert (await client.get(f"/v1/generations/{new}", headers=ops)).status_code == 200
            await wait_for(lambda: not state.up, "the poller marks it down")
            assert "unreachable" in state.reason or "could not connect" in state.reason
        finally:
            replica.owned = True  # stop() gave up ownership; start it again for any later test
            replica.start()
