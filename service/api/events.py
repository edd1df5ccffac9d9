"""GET /v1/events: the caller's generation and batch status changes as Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from service.api.deps import CallerDep
from service.api.problems import Problem
from service.domain.errors import InvalidInput
from service.domain.notify import events

KEEPALIVE_COMMENT = "keep-alive"


def parse_position(last_event_id: str | None, after: int | None) -> int | None:
    """Where a stream starts: after ``Last-Event-ID`` (a reconnecting EventSource sends it), else ``after``,
    else from now (None)."""
    if last_event_id is None:
        return after
    if not last_event_id.strip().isdigit():
        raise InvalidInput("Last-Event-ID", f"Last-Event-ID must be an event id; got {last_event_id!r}", "header")
    return int(last_event_id)


def to_message(item: events.StreamItem) -> ServerSentEventMessage:
    if isinstance(item, events.LiveEvent):
        payload = {**item.data, "event_id": item.id, "at": item.created_at.isoformat()}
        return ServerSentEventMessage(data=json.dumps(payload), event=item.type, id=str(item.id))
    if isinstance(item, events.Ready):
        return ServerSentEventMessage(data=json.dumps({"last_event_id": item.after}), event="ready", id=str(item.after))
    return ServerSentEventMessage(comment=KEEPALIVE_COMMENT)


async def messages(items: AsyncIterator[events.StreamItem]) -> AsyncIterator[ServerSentEventMessage]:
    async for item in items:
        yield to_message(item)


class EventsController(Controller):
    path = "/v1/events"
    tags = ["events"]

    @get(
        summary="Live status changes of the caller's generations and batches (Server-Sent Events)",
        description="First a `ready` event whose id is the starting position, then `generation` and `batch` "
        "events as their status changes commit, each with an `id:`; a `: keep-alive` comment after "
        "`SOUNDALIKE_EVENTS_KEEPALIVE_SECONDS` of silence. Resume with the `Last-Event-ID` header (an "
        "EventSource sends it when it reconnects) or `?after=ID`. Only the caller's own items.",
        responses={
            422: ResponseSpec(Problem, description="Last-Event-ID is not an event id"),
            503: ResponseSpec(Problem, description="The event listener cannot reach the database"),
        },
    )
    async def stream(
        self,
        caller: CallerDep,
        state: State,
        last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID", required=False)] = None,
        after: Annotated[int | None, QueryParameter(ge=0, description="Start after this event id")] = None,
    ) -> ServerSentEvent:
        position = parse_position(last_event_id, after)
        await state.event_hub.ensure_listening()  # a 503 now rather than a broken stream later
        items = events.stream(
            state.event_hub, state.sessionmaker, caller.owner, position, state.settings.events.keepalive_seconds
        )
        return ServerSentEvent(messages(items), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
