"""Webhooks: an owner's URLs, signed deliveries of its events, retried with backoff, and their log.

Deliveries are rows of ``webhook_deliveries``, added by a trigger for every event of the owner (migration
0009_webhooks) and queued as jobs in the same transaction; the job (``service.jobs.webhooks``) calls
``deliver``. A delivery only ever goes to the URL of the webhook row it belongs to, and a webhook only ever
gets its own owner's events.

Signature (as Stripe's): header ``Soundalike-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
``f"{t}.{body}"`` with the webhook's secret; a receiver recomputes it and refuses old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import EVENT_TYPES, Webhook, WebhookDelivery
from service.domain.api_keys import Caller
from service.domain.errors import InvalidInput, NotFound

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Soundalike-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
MAX_URL_LENGTH = 2000
MAX_WEBHOOKS_PER_OWNER = 20


@dataclass(frozen=True)
class NewWebhook:
    url: str
    events: tuple[str, ...] = EVENT_TYPES
    description: str | None = None


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host and no credentials in it."""
    parts = urlsplit(url)
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput("url", f"url must be at most {MAX_URL_LENGTH} characters")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url", f"url must be an absolute http:// or https:// URL; got {url!r}")
    if parts.username or parts.password:
        raise InvalidInput("url", "url must not carry a user name or password; authenticate with the signature")
    return url


def check_events(events: tuple[str, ...] | list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if not events or unknown:
        raise InvalidInput("events", f"events must be a non-empty subset of {list(EVENT_TYPES)}; got {list(events)}")
    return sorted(set(events))


async def create(session: AsyncSession, caller: Caller, request: NewWebhook) -> Webhook:
    row = Webhook(
        owner=caller.owner,
        url=check_url(request.url),
        event_types=check_events(request.events),
        description=request.description,
        secret=SECRET_PREFIX + secrets.token_urlsafe(32),
    )
    if len(await list_webhooks(session, caller)) >= MAX_WEBHOOKS_PER_OWNER:
        raise InvalidInput("url", f"an owner may register at most {MAX_WEBHOOKS_PER_OWNER} webhooks")
    session.add(row)
    await session.commit()
    return row


async def list_webhooks(session: AsyncSession, caller: Caller) -> list[Webhook]:
    query = select(Webhook).where(Webhook.owner == caller.owner, Webhook.deleted_at.is_(None))
    return list(await session.scalars(query.order_by(Webhook.created_at.desc())))


async def get(session: AsyncSession, caller: Caller, webhook_id: uuid.UUID) -> Webhook:
    """The caller's own live webhook (another owner's answers 404, as any invisible item)."""
    row = await session.scalar(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.owner == caller.owner, Webhook.deleted_at.is_(None))
    )
    if row is None:
        raise NotFound(f"no webhook {webhook_id}")
    return row


async def delete(session: AsyncSession, caller: Caller, webhook_id: uuid.UUID) -> None:
    """Stop deliveries: the webhook gets no new ones and its pending ones are cancelled (kept in the log)."""
    row = await get(session, caller, webhook_id)
    row.deleted_at = datetime.now(UTC)
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == row.id, WebhookDelivery.status == "pending")
        .values(status="cancelled")
    )
    await session.commit()


async def test_fire(session: AsyncSession, caller: Caller, webhook_id: uuid.UUID) -> WebhookDelivery:
    """Queue a ``ping`` delivery to the webhook (signed and retried like any other)."""
    row = await get(session, caller, webhook_id)
    delivery = WebhookDelivery(
        webhook_id=row.id, type="ping", payload={"webhook_id": str(row.id), "message": "a test delivery"}
    )
    session.add(delivery)
    await session.commit()
    await session.refresh(delivery)
    return delivery


async def deliveries(
    session: AsyncSession, caller: Caller, webhook_id: uuid.UUID, limit: int, before: int | None
) -> list[WebhookDelivery]:
    """The webhook's delivery log, newest first; ``before`` pages on (a delivery id)."""
    row = await get(session, caller, webhook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == row.id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(await session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within the tolerance."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp = fields.get("t", "")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, body, int(timestamp)), f"t={timestamp},v1={fields.get('v1', '')}")


def body_of(delivery: WebhookDelivery) -> bytes:
    document: dict[str, Any] = {
        "delivery_id": delivery.id,
        "type": delivery.type,
        "event_id": delivery.event_id,
        "data": delivery.payload,
    }
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Attempt:
    """How one try went: ``retry`` asks the job to run again later."""

    status: str
    retry: bool
    status_code: int | None = None
    error: str | None = None


async def deliver(
    sessions: async_sessionmaker[AsyncSession],
    delivery_id: int,
    attempt: int,
    max_attempts: int,
    timeout_seconds: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Attempt:
    """POST one delivery to its webhook's URL and record the try; a delivery no longer pending is skipped."""
    async with sessions() as session:
        found = (
            await session.execute(
                select(WebhookDelivery, Webhook).join(Webhook).where(WebhookDelivery.id == delivery_id)
            )
        ).first()
        if found is None or found[0].status != "pending" or found[1].deleted_at is not None:
            return Attempt(status=found[0].status if found else "missing", retry=False)
        delivery, webhook = found
        outcome = await _post(webhook, delivery, timeout_seconds, transport)
        final = outcome.status_code is not None and 200 <= outcome.status_code < 300
        status = "succeeded" if final else ("failed" if attempt >= max_attempts else "pending")
        now = datetime.now(UTC)
        delivery.status, delivery.attempts, delivery.last_attempt_at = status, attempt, now
        delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
        delivery.delivered_at = now if final else None
        await session.commit()
    return Attempt(status=status, retry=status == "pending", status_code=outcome.status_code, error=outcome.error)


async def _post(
    webhook: Webhook, delivery: WebhookDelivery, timeout_seconds: float, transport: httpx.AsyncBaseTransport | None
) -> Attempt:
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Soundalike-Webhooks/1",
        SIGNATURE_HEADER: sign(webhook.secret, body, int(time.time())),
        "Soundalike-Delivery-Id": str(delivery.id),
        "Soundalike-Event": delivery.type,
    }
    try:
        async with httpx.AsyncClient(timeout=timeout_seconds, transport=transport, follow_redirects=False) as client:
            response = await client.post(webhook.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Attempt(status="pending", retry=True, error=f"{type(exc).__name__}: {exc}"[:500])
    error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
    return Attempt(status="pending", retry=True, status_code=response.status_code, error=error)
