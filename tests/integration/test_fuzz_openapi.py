"""Property-based fuzzing of the whole OpenAPI document (schemathesis) against the app on the embedded database.

Every operation gets generated requests (valid and invalid bodies, parameters and headers) with an admin key
and a reader key; the checks: no 5xx, and every response matches what the document says it returns. The run
is bounded by ``SOUNDALIKE_FUZZ_EXAMPLES`` examples per operation and role (default 25: about 1,500 requests,
some 30 s of CPU on two idle cores); set it higher for a deeper hunt. The streaming routes (server-sent
events) are left out: a request to them never finishes.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from service.domain.access.api_keys import KEY_PREFIX, hash_key  # noqa: E402
from tests.integration.api_helpers import api_settings  # noqa: E402

EXAMPLES = int(os.environ.get("SOUNDALIKE_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, response_schema_conformance]
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class FuzzServer:
    base_url: str
    keys: dict[str, str]  # role -> bearer key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seed(conn, secret: str) -> dict[str, str]:
    """A default model with a few searchable items, and one key per fuzzed role."""
    model_id = conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version, is_default) "
        "VALUES ('fuzz', 'fuzz', 'local', 'v1', true) RETURNING id"
    ).fetchone()[0]
    for index in range(3):
        generation_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO generations (id, owner, model_id, kind, status, visibility, tags, params) "
            "VALUES (%s, 'root', %s, 'text2music', 'succeeded', 'public', %s, '{}')",
            (generation_id, model_id, ["piano", "minor", f"{90 + 10 * index} bpm"]),
        )
        vector = "[" + ",".join(str((i + index) % 7 + 1) for i in range(512)) + "]"
        conn.execute(
            "INSERT INTO latent_embeddings (generation_id, model_id, embedding) VALUES (%s, %s, %s::vector)",
            (generation_id, model_id, vector),
        )
    keys = {}
    for owner, role in (("root", "admin"), ("rita", "reader")):
        keys[role] = f"{KEY_PREFIX}fuzz-{role}-{uuid.uuid4().hex}"
        conn.execute(
            "INSERT INTO api_keys (key_hash, prefix, owner, role) VALUES (%s, %s, %s, %s)",
            (hash_key(keys[role], secret), keys[role][:10], owner, role),
        )
    return keys


@pytest.fixture(scope="module")
def fuzz_server(make_database, tmp_path_factory) -> Iterator[FuzzServer]:
    """The app served by uvicorn on a free port, on a database of its own (the fuzzer may delete anything)."""
    import uvicorn

    from service.app import create_app
    from service.db.engine import connect_sync
    from service.db.schema import migrate
    from service.settings import ServerSettings

    handle, db_settings = make_database("soundalike_fuzz")
    migrate.upgrade(handle.migration_url, db_settings.app_role)
    app_settings = api_settings(handle, tmp_path_factory.mktemp("fuzz"))
    app_settings.server = ServerSettings(rate_limit_per_minute=1_000_000)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        keys = _seed(conn, app_settings.auth.secret)
    port = _free_port()
    app = create_app(handle.app_url, app_settings, run_worker_in_process=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the fuzzed server did not start"
        time.sleep(0.05)
    yield FuzzServer(base_url=f"http://127.0.0.1:{port}", keys=keys)
    server.should_exit = True
    thread.join(timeout=30)


def _document() -> tuple[dict, list[str]]:
    """The OpenAPI document the app serves at /schema/openapi.json (built without a database), and the paths
    of its streaming routes (server-sent events never end, so a request to them cannot finish)."""
    from litestar.response import ServerSentEvent, Stream

    from service.app import create_app

    with warnings.catch_warnings():  # collection must not fail on a deprecation some route's tests report
        warnings.simplefilter("ignore")
        app = create_app("postgresql://unused/fuzz")
    streams = [
        route.path
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if isinstance(handler.parsed_fn_signature.return_type.annotation, type)
        and issubclass(handler.parsed_fn_signature.return_type.annotation, Stream | ServerSentEvent)
    ]
    return app.openapi_schema.to_schema(), streams


DOCUMENT, STREAMS = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)
for stream_path in STREAMS:
    schema = schema.exclude(path=stream_path)


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def call_as(role: str, case, server: FuzzServer) -> None:
    wait = str((case.query or {}).get("wait", ""))
    if wait.isdigit():  # no worker runs here: waiting for a result would only burn the time budget
        case.query["wait"] = min(int(wait), 1)
    headers = {"Authorization": f"Bearer {server.keys[role]}"}
    case.call_and_validate(base_url=server.base_url, headers=headers, checks=CHECKS, timeout=60)


@schema.parametrize()
@FUZZ_SETTINGS
def test_admin_gets_no_server_errors_and_responses_match_the_document(case, fuzz_server):
    call_as("admin", case, fuzz_server)


@schema.parametrize()
@FUZZ_SETTINGS
def test_reader_gets_no_server_errors_and_responses_match_the_document(case, fuzz_server):
    call_as("reader", case, fuzz_server)
