"""Slow-query log on the embedded server and `soundalike db slow-queries` reading it."""

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from service.db.monitoring.slow_queries import from_log, top_statements
from service.db.server.embedded import EmbeddedPostgres

LOG = """\
2026-11-29 03:02:25.194 UTC [11] LOG:  duration: 120.500 ms  statement: SELECT pg_sleep(0.12)
2026-11-29 03:02:25.300 UTC [11] LOG:  duration: 40.000 ms  execute <unnamed>: SELECT id FROM gens
\tWHERE owner = $1
2026-11-29 03:02:25.301 UTC [11] DETAIL:  Parameters: $1 = 'alice'
2026-11-29 03:02:25.400 UTC [12] LOG:  duration: 60.000 ms  execute <unnamed>: SELECT id FROM gens WHERE owner = $1
2026-11-29 03:02:25.500 UTC [12] LOG:  checkpoint starting: time
"""


def test_log_lines_are_summed_per_statement():
    found = from_log(LOG.splitlines(keepends=True), limit=10)
    assert [(s.query, s.calls, s.total_ms, s.max_ms) for s in found] == [
        ("SELECT pg_sleep(0.12)", 1, 120.5, 120.5),
        ("SELECT id FROM gens WHERE owner = $1", 2, 100.0, 60.0),
    ]
    assert from_log(LOG.splitlines(), limit=1)[0].query == "SELECT pg_sleep(0.12)"


@pytest.fixture
def logging_server():
    root = Path(tempfile.mkdtemp(prefix="soundalike-test-slow-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "data", {"log_min_duration_statement": "0"})
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_embedded_server_logs_statements_and_the_command_ranks_them(logging_server, monkeypatch):
    url = logging_server.url(driver="")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SHOW log_min_duration_statement").fetchone()[0] == "0"
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.02), %s::int", (1,))
        conn.execute("SELECT 1")
    found = top_statements(url, 5, logging_server.log_file)
    assert found.source == str(logging_server.log_file)
    sleep = next(s for s in found.statements if "pg_sleep" in s.query)
    assert sleep.calls == 3 and sleep.query == "SELECT pg_sleep(0.02), $1::int" and sleep.total_ms > 0

    from service.cli import main
    from service.settings import get_settings

    monkeypatch.setenv("SOUNDALIKE_DATABASE_EMBEDDED_DIR", str(logging_server.data_dir))
    monkeypatch.delenv("SOUNDALIKE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["db", "slow-queries", "--limit", "3"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert f"from {logging_server.log_file}" in result.output and "pg_sleep" in result.output


def test_without_pg_stat_statements_or_a_log_it_says_what_to_do(database):
    from service.errors import SoundalikeError

    with pytest.raises(SoundalikeError, match="shared_preload_libraries"):
        top_statements(database.migration_url, 5, None)
