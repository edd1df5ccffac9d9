"""The real app served by uvicorn on 127.0.0.1 in a helper thread, and a small Server-Sent Events reader."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(app, startup_timeout: float = 60) -> Iterator[str]:
    """Serve ``app`` (lifespan included) until the block ends; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class SseMessage:
    event: str = "message"
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)

    def json(self) -> dict:
        return json.loads(self.data)


def sse_messages(response: httpx.Response) -> Iterator[SseMessage]:
    """Parse a ``text/event-stream`` body; a comment-only block is yielded with ``event`` "comment"."""
    message = SseMessage()
    for line in response.iter_lines():
        if not line:
            if message.data or message.id is not None or message.comments:
                yield (
                    message if (message.data or message.id) else SseMessage(event="comment", comments=message.comments)
                )
            message = SseMessage()
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            message.comments.append(value)
        elif name == "data":
            message.data = f"{message.data}\n{value}" if message.data else value
        elif name in ("event", "id"):
            setattr(message, name, value)


def take(messages: Iterator[SseMessage], count: int, deadline_seconds: float = 30, keep_comments=False) -> list:
    """The next ``count`` events (comments skipped unless asked for); fails instead of hanging."""
    deadline, found = time.monotonic() + deadline_seconds, []
    for message in messages:
        if message.event != "comment" or keep_comments:
            found.append(message)
        if len(found) == count:
            return found
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"expected {count} events within {deadline_seconds} s, got {found}")


def insert_key(owner_conn, owner: str, role: str = "creator") -> str:
    """A new API key for ``owner`` (hashed under the default test secret); returns the plaintext."""
    import secrets

    from service.domain.access.api_keys import KEY_PREFIX, hash_key
    from service.settings import AuthSettings

    key = KEY_PREFIX + secrets.token_urlsafe(24)
    owner_conn.execute(
        "INSERT INTO api_keys (key_hash, prefix, owner, role) VALUES (%s, %s, %s, %s)",
        (hash_key(key, AuthSettings().secret), key[:10], owner, role),
    )
    return key


@contextmanager
def app_with_tiny_model(database, tmp_path, pipeline, checkpoint) -> Iterator[dict]:
    """Fresh tables, the project's tiny model as the default model ("default"), a creator key, and the app with
    an in-process worker on 127.0.0.1: ``{"url", "key", "tmp", "database"}``."""
    from service.app import create_app
    from service.db.engine import connect_sync
    from tests.conftest import register_test_model
    from tests.integration.api_helpers import api_settings

    with connect_sync(database.migration_url, autocommit=True) as conn:
        conn.execute("TRUNCATE models, generations, api_keys, batches, events, procrastinate_jobs CASCADE")
        key = insert_key(conn, "alice", "creator")
        register_test_model(conn, pipeline, checkpoint, "default", default=True)
    with live_server(create_app(database.app_url, api_settings(database, tmp_path), run_worker_in_process=True)) as url:
        yield {"url": url, "key": key, "tmp": tmp_path, "database": database}
