"""A Python client for the Soundalike API: sync (``Client``) and async (``AsyncClient``) over httpx.

    from service.client import Client

    with Client("http://127.0.0.1:8000", api_key) as sa:
        accepted = sa.generate("piano, minor, 90 bpm", batch_size=4)
        clips = sa.wait(accepted.ids)                 # waits through GET /v1/events, not by polling
        like = sa.search(generation_id=clips[0].id, limit=5)
        sa.save_audio(like.items[0].id, "neighbour.wav")

Results are typed: the server's own msgspec response structs. A 4xx/5xx answer raises a
``ProblemError`` subclass carrying the RFC 9457 problem details (``detail``, ``errors``, ``field_errors``).
Every endpoint method exists on both clients with the same arguments; on ``AsyncClient`` it is awaited.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec

from service.api.generations import GenerationPage, GenerationsAccepted, Latent
from service.api.me import Me
from service.api.presets import GenerationDefaults, Preset, PresetPage
from service.api.schemas import Generation
from service.api.search import SearchResponse, SongPath
from service.api.variants import BatchStatus, LineageResponse
from service.api.webhooks import Delivery, DeliveryPage, Webhook, WebhookCreated
from service.domain.notify.webhooks import verify_signature as verify_webhook

__all__ = ["AsyncClient", "Client", "ProblemError", "verify_webhook"]
T = TypeVar("T")
FINISHED = frozenset({"succeeded", "failed", "cancelled", "partial"})
Upload = str | Path | bytes


# ---- results -----------------------------------------------------------------------------------------------


# The server's own response structs: the client decodes exactly what this version of the API answers.
Accepted = GenerationsAccepted
Batch = BatchStatus
Lineage = LineageResponse
SearchResult = SearchResponse


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of ``GET /v1/events``: ``type`` is ready, generation or batch."""

    type: str
    id: int
    data: dict[str, Any]


# ---- errors ------------------------------------------------------------------------------------------------


class ProblemError(Exception):
    """An error answer, with its problem details (RFC 9457)."""

    def __init__(self, status: int, problem: dict[str, Any], headers: httpx.Headers | None = None) -> None:
        self.status, self.problem = status, problem
        self.detail: str = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        self.errors: list[dict[str, Any]] = problem.get("errors") or []
        self.retry_after = float(headers["Retry-After"]) if headers and "Retry-After" in headers else None
        super().__init__(f"{status}: {self.detail}")

    @property
    def field_errors(self) -> dict[str, str]:
        """The message for each named field (``{"steps": "Expected `int` <= 200"}``)."""
        return {e["field"]: e["message"] for e in self.errors if e.get("field")}


class InvalidRequest(ProblemError):
    """400 or 422: a value the server refused; ``field_errors`` says which."""


class Unauthorized(ProblemError):
    """401 (no or a revoked key) or 403 (the key's role does not allow it)."""


class NotFound(ProblemError):
    """404: unknown, deleted, or another owner's private item."""


class Conflict(ProblemError):
    """409: the item's state forbids it (e.g. cancelling a finished generation)."""


class RateLimited(ProblemError):
    """429: too many requests or a full queue; ``retry_after`` is in seconds when the server says."""


ERRORS = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
}


def raise_for_problem(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text or response.reason_phrase}
    raise ERRORS.get(response.status_code, ProblemError)(response.status_code, problem, response.headers)


# ---- requests ----------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One request and the type its answer decodes to (None: no body; bytes: the raw body)."""

    method: str
    path: str
    result: Any = None
    params: dict[str, Any] | None = None
    body: Any = None
    files: dict[str, tuple[str, bytes]] | None = None
    form: dict[str, str] | None = None

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        return client.build_request(
            self.method, self.path, params=params, json=self.body, files=self.files, data=self.form
        )

    def decode(self, response: httpx.Response) -> Any:
        raise_for_problem(response)
        if self.result is None:
            return None
        if self.result is bytes:
            return response.content
        return msgspec.convert(response.json(), self.result, strict=False)


def upload(file: Upload, name: str = "clip.wav") -> tuple[str, bytes]:
    if isinstance(file, bytes):
        return name, file
    path = Path(file)
    return path.name, path.read_bytes()


def dropped_nones(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class Endpoints:
    """Every endpoint as a ``Call``; ``Client`` sends it at once, ``AsyncClient`` returns an awaitable."""

    def _send(self, call: Call):
        raise NotImplementedError

    def me(self) -> Me:
        return self._send(Call("GET", "/v1/me", Me))

    def tags(self) -> dict[str, Any]:
        return self._send(Call("GET", "/v1/tags", dict))

    def generate(
        self,
        prompt: str | None = None,
        *,
        seed: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        batch_size: int | None = None,
        model: str | None = None,
        visibility: str | None = None,
        preset: str | uuid.UUID | None = None,
    ) -> Accepted:
        """Queue clips; what is left out comes from ``preset``, then the caller's defaults, then the model."""
        body = dropped_nones(
            {
                "prompt": prompt,
                "seed": seed,
                "steps": steps,
                "guidance_scale": guidance_scale,
                "batch_size": batch_size,
                "model": model,
                "visibility": visibility,
                "preset": None if preset is None else str(preset),
            }
        )
        return self._send(Call("POST", "/v1/generations", Accepted, body=body))

    def create_preset(self, name: str, **fields: Any) -> Preset:
        """Save a preset: ``prompt``, ``steps``, ``guidance_scale``, ``model``, ``batch_size``, ``description``,
        ``visibility`` (private or public)."""
        body = dropped_nones({"name": name, **fields})
        return self._send(Call("POST", "/v1/presets", Preset, body=body))

    def presets(self, owner: str | None = None, limit: int = 20, cursor: str | None = None) -> PresetPage:
        params = {"owner": owner, "limit": limit, "cursor": cursor}
        return self._send(Call("GET", "/v1/presets", PresetPage, params=params))

    def preset(self, preset_id: uuid.UUID | str) -> Preset:
        return self._send(Call("GET", f"/v1/presets/{preset_id}", Preset))

    def delete_preset(self, preset_id: uuid.UUID | str) -> None:
        return self._send(Call("DELETE", f"/v1/presets/{preset_id}"))

    def defaults(self) -> GenerationDefaults:
        return self._send(Call("GET", "/v1/me/defaults", GenerationDefaults))

    def set_defaults(self, **fields: Any) -> GenerationDefaults:
        """Replace the caller's generation defaults (``steps``, ``guidance_scale``, ``model``, ``batch_size``,
        ``visibility``); a field left out is cleared."""
        return self._send(Call("PUT", "/v1/me/defaults", GenerationDefaults, body=dropped_nones(fields)))

    def generations(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        tags: list[str] | None = None,
        model: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> GenerationPage:
        params = {"status": status, "kind": kind, "tags": tags, "model": model, "limit": limit, "cursor": cursor}
        return self._send(Call("GET", "/v1/generations", GenerationPage, params=params))

    def generation(self, generation_id: uuid.UUID | str) -> Generation:
        return self._send(Call("GET", f"/v1/generations/{generation_id}", Generation))

    def audio(self, generation_id: uuid.UUID | str) -> bytes:
        return self._send(Call("GET", f"/v1/generations/{generation_id}/audio", bytes))

    def latent(self, generation_id: uuid.UUID | str) -> Latent:
        return self._send(Call("GET", f"/v1/generations/{generation_id}/latent", Latent))

    def cancel(self, generation_id: uuid.UUID | str) -> Generation:
        return self._send(Call("POST", f"/v1/generations/{generation_id}/cancel", Generation))

    def set_visibility(self, generation_id: uuid.UUID | str, visibility: str) -> Generation:
        """Make one of the caller's items ``public`` or ``private`` (an admin: anyone's)."""
        body = {"visibility": visibility}
        return self._send(Call("PATCH", f"/v1/generations/{generation_id}", Generation, body=body))

    def delete(self, generation_id: uuid.UUID | str) -> None:
        return self._send(Call("DELETE", f"/v1/generations/{generation_id}"))

    def import_audio(
        self, file: Upload, *, tags: Iterable[str] = (), model: str | None = None, visibility: str = "private"
    ) -> Generation:
        form = dropped_nones({"tags": ", ".join(tags) or None, "model": model, "visibility": visibility})
        return self._send(Call("POST", "/v1/imports", Generation, files={"file": upload(file)}, form=form))

    def search(self, **query: Any) -> SearchResult:
        """``POST /v1/search`` with the JSON body's fields as keywords (generation_id, vector, positive, ...)."""
        return self._send(Call("POST", "/v1/search", SearchResult, body=_jsonable(query)))

    def search_audio(self, file: Upload, **query: Any) -> SearchResult:
        """Sounds like an uploaded clip; the keywords are the rest of the search body (limit, filter, ...)."""
        form = {"query": json.dumps(_jsonable(query))} if query else None
        return self._send(Call("POST", "/v1/search", SearchResult, files={"file": upload(file)}, form=form))

    def neighbours(self, generation_id: uuid.UUID | str, limit: int = 10) -> SearchResult:
        """The nearest public clips of a clip you can see (served from the read cache; no cursor)."""
        path = f"/v1/generations/{generation_id}/neighbours"
        return self._send(Call("GET", path, SearchResult, params={"limit": limit}))

    def path(self, start: uuid.UUID | str, end: uuid.UUID | str, steps: int = 10) -> SongPath:
        return self._send(
            Call("GET", "/v1/path", SongPath, params={"from": str(start), "to": str(end), "steps": steps})
        )

    def style_transfer(self, generation_id: uuid.UUID | str, **options: Any) -> Generation:
        """Restyle after a neighbour: neighbor_id or neighbor_rank, strength, seed, steps, filter, visibility."""
        path = f"/v1/generations/{generation_id}/style-transfer"
        return self._send(Call("POST", path, Generation, body=_jsonable(options)))

    def variants(self, **request: Any) -> Batch:
        """Variants as one batch: ids, search or cluster_id, n_per_source, variance, seed, steps, visibility."""
        return self._send(Call("POST", "/v1/variants", Batch, body=_jsonable(request)))

    def batch(self, batch_id: uuid.UUID | str) -> Batch:
        return self._send(Call("GET", f"/v1/batches/{batch_id}", Batch))

    def cancel_batch(self, batch_id: uuid.UUID | str) -> Batch:
        return self._send(Call("POST", f"/v1/batches/{batch_id}/cancel", Batch))

    def lineage(self, generation_id: uuid.UUID | str) -> Lineage:
        return self._send(Call("GET", f"/v1/generations/{generation_id}/lineage", Lineage))

    def clusters(self, model: str, run: int | None = None) -> dict[str, Any]:
        return self._send(Call("GET", "/v1/clusters", dict, params={"model": model, "run": run}))

    def cluster(self, cluster_id: int, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        return self._send(Call("GET", f"/v1/clusters/{cluster_id}", dict, params={"limit": limit, "cursor": cursor}))

    def map(self, model: str, limit: int = 1000, cursor: str | None = None) -> dict[str, Any]:
        return self._send(Call("GET", "/v1/map", dict, params={"model": model, "limit": limit, "cursor": cursor}))

    def models(self) -> list[dict[str, Any]]:
        return self._send(Call("GET", "/v1/models", list))

    def create_webhook(
        self, url: str, events: list[str] | None = None, description: str | None = None
    ) -> WebhookCreated:
        body = dropped_nones({"url": url, "events": events, "description": description})
        return self._send(Call("POST", "/v1/webhooks", WebhookCreated, body=body))

    def webhooks(self) -> list[Webhook]:
        return self._send(Call("GET", "/v1/webhooks", list[Webhook]))

    def delete_webhook(self, webhook_id: uuid.UUID | str) -> None:
        return self._send(Call("DELETE", f"/v1/webhooks/{webhook_id}"))

    def test_webhook(self, webhook_id: uuid.UUID | str) -> Delivery:
        return self._send(Call("POST", f"/v1/webhooks/{webhook_id}/test", Delivery))

    def rotate_webhook_secret(self, webhook_id: uuid.UUID | str, grace_seconds: int | None = None) -> WebhookCreated:
        """A new signing secret; the replaced one keeps signing for ``grace_seconds`` (the server default: 24 h)."""
        body = dropped_nones({"grace_seconds": grace_seconds})
        return self._send(Call("POST", f"/v1/webhooks/{webhook_id}/rotate-secret", WebhookCreated, body=body))

    def deliveries(self, webhook_id: uuid.UUID | str, limit: int = 20, before: int | None = None) -> DeliveryPage:
        params = {"limit": limit, "before": before}
        return self._send(Call("GET", f"/v1/webhooks/{webhook_id}/deliveries", DeliveryPage, params=params))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ---- Server-Sent Events and waiting ------------------------------------------------------------------------


@dataclass
class SseParser:
    """Lines of a ``text/event-stream`` in, whole events out (comments and keep-alives are dropped)."""

    event: str = "message"
    id: str | None = None
    data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Event | None:
        if line == "":
            found = Event(self.event, int(self.id or 0), json.loads("\n".join(self.data))) if self.data else None
            self.event, self.data = "message", []
            return found
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id":
            self.id = value
        return None


@dataclass
class Waiter:
    """Which awaited items are not finished yet, fed by statuses read once and then by events."""

    pending: set[str]

    def saw(self, item_id: Any, status: str) -> bool:
        """Record a status; True once nothing awaited is unfinished."""
        if status in FINISHED:
            self.pending.discard(str(item_id))
        return not self.pending


class Client(Endpoints):
    """The synchronous client. ``wait``/``wait_batch`` follow ``GET /v1/events``."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0, **httpx_options: Any) -> None:
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, **httpx_options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: Call) -> Any:
        return call.decode(self.http.send(call.request(self.http)))

    def save_audio(self, generation_id: uuid.UUID | str, path: str | Path) -> Path:
        target = Path(path)
        target.write_bytes(self.audio(generation_id))
        return target

    def events(self, after: int | None = None, read_timeout: float = 120.0) -> Iterator[Event]:
        """The caller's events as they happen: first ``ready``, then ``generation`` and ``batch`` events."""
        params = {"after": after} if after is not None else None
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        with self.http.stream("GET", "/v1/events", params=params, timeout=timeout) as response:
            if not response.is_success:
                response.read()
                raise_for_problem(response)
            parser = SseParser()
            for line in response.iter_lines():
                if (event := parser.feed(line)) is not None:
                    yield event

    def wait(self, ids: Iterable[uuid.UUID | str], timeout: float = 300.0) -> list[Generation]:
        """The generations once every one has finished (succeeded, failed or cancelled), in the order given."""
        ids = [str(i) for i in ids]
        waiter = Waiter(set(ids))
        stream = self.events(read_timeout=timeout)
        next(stream)  # ready: from here on no change is missed
        done = any([waiter.saw(i, self.generation(i).status) for i in ids])  # the states before the stream
        for event in stream if not done else ():
            if event.type == "generation" and waiter.saw(event.data["id"], event.data["status"]):
                break
        stream.close()
        return [self.generation(i) for i in ids]

    def wait_batch(self, batch_id: uuid.UUID | str, timeout: float = 600.0) -> Batch:
        """The batch once it has finished (succeeded, partial, failed or cancelled)."""
        waiter = Waiter({str(batch_id)})
        stream = self.events(read_timeout=timeout)
        next(stream)
        if not waiter.saw(batch_id, self.batch(batch_id).status):
            for event in stream:
                if event.type == "batch" and waiter.saw(event.data["id"], event.data["status"]):
                    break
        stream.close()
        return self.batch(batch_id)


class AsyncClient(Endpoints):
    """The asynchronous client: the same methods, awaited."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0, **httpx_options: Any) -> None:
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, **httpx_options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def _send(self, call: Call) -> Any:
        return call.decode(await self.http.send(call.request(self.http)))

    async def events(self, after: int | None = None, read_timeout: float = 120.0) -> AsyncIterator[Event]:
        params = {"after": after} if after is not None else None
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        async with self.http.stream("GET", "/v1/events", params=params, timeout=timeout) as response:
            if not response.is_success:
                await response.aread()
                raise_for_problem(response)
            parser = SseParser()
            async for line in response.aiter_lines():
                if (event := parser.feed(line)) is not None:
                    yield event

    async def wait(self, ids: Iterable[uuid.UUID | str], timeout: float = 300.0) -> list[Generation]:
        ids = [str(i) for i in ids]
        waiter = Waiter(set(ids))
        stream = self.events(read_timeout=timeout)
        await anext(stream)
        done = any([waiter.saw(i, (await self.generation(i)).status) for i in ids])
        if not done:
            async for event in stream:
                if event.type == "generation" and waiter.saw(event.data["id"], event.data["status"]):
                    break
        await stream.aclose()
        return [await self.generation(i) for i in ids]

    async def wait_batch(self, batch_id: uuid.UUID | str, timeout: float = 600.0) -> Batch:
        waiter = Waiter({str(batch_id)})
        stream = self.events(read_timeout=timeout)
        await anext(stream)
        if not waiter.saw(batch_id, (await self.batch(batch_id)).status):
            async for event in stream:
                if event.type == "batch" and waiter.saw(event.data["id"], event.data["status"]):
                    break
        await stream.aclose()
        return await self.batch(batch_id)
