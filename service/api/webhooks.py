"""/v1/webhooks: register URLs for the caller's events, test-fire them, read their delivery log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import Meta

from service.api.auth import requires_role
from service.api.deps import CallerDep, SessionDep
from service.api.problems import Problem
from service.db.schema.models import Webhook as WebhookRow
from service.db.schema.models import WebhookDelivery
from service.domain.notify import webhooks

EventType = Literal["generation", "batch"]
WebhookId = FromPath[uuid.UUID]
NOT_FOUND = ResponseSpec(Problem, description="Unknown, deleted, or another owner's webhook")


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[str, Meta(min_length=1, description="Where to POST the events (http or https)")]
    events: Annotated[list[EventType], Meta(description="Which events to send")] = msgspec.field(
        default_factory=lambda: ["generation", "batch"]
    )
    description: Annotated[str, Meta(max_length=200)] | None = None


class SecretRotation(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    grace_seconds: Annotated[
        int,
        Meta(
            ge=0,
            le=webhooks.MAX_GRACE_SECONDS,
            description="How long the replaced secret keeps signing beside the new one (0: it stops at once)",
        ),
    ] = webhooks.DEFAULT_GRACE_SECONDS


class Webhook(msgspec.Struct):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    deliveries_url: str
    previous_secret_expires_at: datetime | None  # after a rotation: until then the replaced secret signs too


class WebhookCreated(Webhook):
    secret: str  # shown only in the answer to POST: keep it to verify the signatures


class Delivery(msgspec.Struct):
    id: int
    webhook_id: uuid.UUID
    event_id: int | None
    type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    payload: dict[str, Any]


class DeliveryPage(msgspec.Struct):
    items: list[Delivery]
    next_before: int | None


def to_webhook(row: WebhookRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "events": list(row.event_types),
        "description": row.description,
        "created_at": row.created_at,
        "deliveries_url": f"/v1/webhooks/{row.id}/deliveries",
        "previous_secret_expires_at": row.previous_secret_expires_at if row.previous_secret else None,
    }


def to_delivery(row: WebhookDelivery) -> Delivery:
    fields = {name: getattr(row, name) for name in Delivery.__struct_fields__}
    return Delivery(**fields)


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    guards = [requires_role("creator")]

    @post(
        status_code=201,
        summary="Register a URL for the caller's generation and batch events (signed with the returned secret)",
        responses={
            422: ResponseSpec(
                Problem, description="Not an http(s) URL, a host that is not public, unknown event types, too many"
            )
        },
    )
    async def create(
        self, data: JSONBody[WebhookCreate], caller: CallerDep, db_session: SessionDep, state: State
    ) -> WebhookCreated:
        request = webhooks.NewWebhook(url=data.url, events=tuple(data.events), description=data.description)
        row = await webhooks.create(db_session, caller, request, state.settings.jobs.webhook_allow_private_hosts)
        return WebhookCreated(**to_webhook(row), secret=row.secret)

    @get(summary="The caller's webhooks")
    async def list_webhooks(self, caller: CallerDep, db_session: SessionDep) -> list[Webhook]:
        return [Webhook(**to_webhook(row)) for row in await webhooks.list_webhooks(db_session, caller)]

    @get("/{webhook_id:uuid}", summary="One webhook", responses={404: NOT_FOUND})
    async def get_webhook(self, webhook_id: WebhookId, caller: CallerDep, db_session: SessionDep) -> Webhook:
        return Webhook(**to_webhook(await webhooks.get(db_session, caller, webhook_id)))

    @delete(
        "/{webhook_id:uuid}",
        summary="Remove a webhook; its pending deliveries are cancelled",
        responses={404: NOT_FOUND},
    )
    async def delete_webhook(self, webhook_id: WebhookId, caller: CallerDep, db_session: SessionDep) -> None:
        await webhooks.delete(db_session, caller, webhook_id)

    @post(
        "/{webhook_id:uuid}/rotate-secret",
        status_code=200,
        summary="A new signing secret; the replaced one keeps signing beside it for grace_seconds",
        responses={404: NOT_FOUND},
    )
    async def rotate_secret(
        self,
        webhook_id: WebhookId,
        caller: CallerDep,
        db_session: SessionDep,
        data: JSONBody[SecretRotation | None] = None,
    ) -> WebhookCreated:
        grace = (data or SecretRotation()).grace_seconds
        row = await webhooks.rotate_secret(db_session, caller, webhook_id, grace)
        return WebhookCreated(**to_webhook(row), secret=row.secret)

    @post(
        "/{webhook_id:uuid}/test", status_code=202, summary="Queue a signed test delivery", responses={404: NOT_FOUND}
    )
    async def test_fire(self, webhook_id: WebhookId, caller: CallerDep, db_session: SessionDep) -> Delivery:
        return to_delivery(await webhooks.test_fire(db_session, caller, webhook_id))

    @get("/{webhook_id:uuid}/deliveries", summary="The delivery log, newest first", responses={404: NOT_FOUND})
    async def list_deliveries(
        self,
        webhook_id: WebhookId,
        caller: CallerDep,
        db_session: SessionDep,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        before: Annotated[int | None, QueryParameter(ge=1, description="next_before of the previous page")] = None,
    ) -> DeliveryPage:
        rows = await webhooks.deliveries(db_session, caller, webhook_id, limit, before)
        return DeliveryPage(
            items=[to_delivery(r) for r in rows], next_before=rows[-1].id if len(rows) == limit else None
        )
