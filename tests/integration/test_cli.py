"""Operator-facing failures end in one line that says what to do, exit code 1 and no traceback."""

import os
import socket
import subprocess
import sys

import pytest

from service.db.schema import migrate


def soundalike(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDALIKE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0]


def external(handle) -> dict[str, str]:
    return {
        "SOUNDALIKE_DATABASE_URL": handle.app_url,
        "SOUNDALIKE_DATABASE_MIGRATION_URL": handle.migration_url,
    }


def test_wrong_url_scheme():
    result = soundalike("db", "current", env={"SOUNDALIKE_DATABASE_URL": "mysql://u@h/db"})
    assert_one_line_error(result, "SOUNDALIKE_DATABASE_URL must point to PostgreSQL")


def test_unreachable_database(tmp_path):
    result = soundalike("db", "current", env={"SOUNDALIKE_DATABASE_URL": f"postgresql://u@/db?host={tmp_path}"})
    assert_one_line_error(result, "cannot connect to", "check SOUNDALIKE_DATABASE_URL")


def test_prod_refuses_the_embedded_server():
    result = soundalike("db", "current", env={"SOUNDALIKE_ENV": "prod"})
    assert_one_line_error(result, "SOUNDALIKE_ENV=prod needs an external database")


def test_prod_refuses_the_default_secret(database):
    result = soundalike("db", "current", env={"SOUNDALIKE_ENV": "prod", **external(database)})
    assert_one_line_error(result, "SOUNDALIKE_AUTH_SECRET")


def test_db_current_reports_both_revisions(database):
    result = soundalike("db", "current", env=external(database))
    assert result.returncode == 0, result.stderr
    head = migrate.head_revision()
    assert f"database: {head}" in result.stdout and f"code head: {head}" in result.stdout


def test_serve_refuses_a_schema_behind_head(make_database):
    handle, _ = make_database("behind_head")
    result = soundalike("serve", "--no-migrate", "--port", str(_free_port()), env=external(handle))
    assert_one_line_error(result, "run `soundalike db upgrade`")


def test_migration_without_pgvector_says_how_to_install_it(pg_server):
    import psycopg

    with psycopg.connect(pg_server.url(driver=""), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS novector")
        conn.execute("CREATE DATABASE novector OWNER soundalike_owner")
    url = pg_server.url("soundalike_owner", "novector")
    result = soundalike("db", "upgrade", env={"SOUNDALIKE_DATABASE_URL": url})
    assert_one_line_error(result, "pgvector is not installed", "CREATE EXTENSION vector")


def test_serve_names_the_process_holding_the_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = soundalike("serve", "--port", str(port))
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is already in use", f"by pid {os.getpid()}")


@pytest.mark.slow
def test_backup_command_writes_a_dump(database, tmp_path):
    target = tmp_path / "cli.dump"
    result = soundalike("backup", str(target), env=external(database))
    assert result.returncode == 0, result.stderr
    assert target.stat().st_size > 0 and "backup written" in result.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
