"""The statements that cost the most time, from ``pg_stat_statements`` when the server has it, otherwise from
the slow-query log (``log_min_duration_statement``) of the embedded server.

The bundled PostgreSQL 18 wheel ships without the contrib modules, so the embedded server has no
``pg_stat_statements``; it logs every statement slower than ``SOUNDALIKE_DATABASE_SLOW_QUERY_MS`` instead,
and this module sums those lines per statement. A production server with ``pg_stat_statements`` in
``shared_preload_libraries`` (managed PostgreSQL services have it) gets the extension at provisioning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from service.db.server import urls
from service.errors import SoundalikeError

# "2026-11-29 03:02:25.194 UTC [1234] LOG:  duration: 12.345 ms  statement: SELECT ..."
# (extended protocol: "... duration: 12.345 ms  execute <unnamed>: SELECT ... WHERE id = $1")
DURATION_LINE = re.compile(r"LOG:\s+duration: (?P<ms>[0-9.]+) ms\s+(?:statement|execute [^:]*): (?P<sql>.*)$")
STATEMENTS_SQL = """
SELECT query, calls, total_exec_time, mean_exec_time, max_exec_time, rows
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC
LIMIT %s
"""


@dataclass(frozen=True)
class Statement:
    query: str
    calls: int
    total_ms: float
    mean_ms: float
    max_ms: float


@dataclass(frozen=True)
class SlowQueries:
    source: str  # "pg_stat_statements" or the log file read
    statements: list[Statement]


def has_pg_stat_statements(conninfo: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone() is not None


def from_pg_stat_statements(conninfo: str, limit: int) -> list[Statement]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(STATEMENTS_SQL, (limit,)).fetchall()
    return [Statement(_one_line(q), calls, total, mean, high) for q, calls, total, mean, high, _ in rows]


def from_log(lines: Iterable[str], limit: int) -> list[Statement]:
    """Sum the slow-query log's ``duration:`` lines per statement (continuation lines start with a tab)."""
    durations: dict[str, list[float]] = {}
    current: tuple[str, float] | None = None
    for line in lines:
        if current is not None and line.startswith("\t"):
            current = (f"{current[0]} {line.strip()}", current[1])
            continue
        _add(durations, current)
        match = DURATION_LINE.search(line.rstrip("\n"))
        current = (match["sql"].strip(), float(match["ms"])) if match else None
    _add(durations, current)
    statements = [
        Statement(query, len(times), sum(times), sum(times) / len(times), max(times))
        for query, times in durations.items()
    ]
    return sorted(statements, key=lambda s: s.total_ms, reverse=True)[:limit]


def _add(durations: dict[str, list[float]], entry: tuple[str, float] | None) -> None:
    if entry is not None:
        durations.setdefault(_one_line(entry[0]), []).append(entry[1])


def _one_line(query: str) -> str:
    return " ".join(query.split())


def top_statements(url: str, limit: int, log_file: Path | None) -> SlowQueries:
    """``pg_stat_statements`` if installed, else the slow-query log at ``log_file``."""
    conninfo = urls.libpq_url(url, "SOUNDALIKE_DATABASE_MIGRATION_URL")
    if has_pg_stat_statements(conninfo):
        return SlowQueries("pg_stat_statements", from_pg_stat_statements(conninfo, limit))
    if log_file is None or not log_file.is_file():
        raise SoundalikeError(
            "this server has no pg_stat_statements and no slow-query log was given: add pg_stat_statements to "
            "shared_preload_libraries and run `soundalike db provision`, or pass --log with the server's log "
            "(log_min_duration_statement must be set)"
        )
    with open(log_file, errors="replace") as handle:
        return SlowQueries(str(log_file), from_log(handle, limit))
