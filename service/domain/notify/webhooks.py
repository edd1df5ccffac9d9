"""Webhooks: an owner's URLs, signed deliveries of its events, retried with backoff, and their log.

Deliveries are rows of ``webhook_deliveries``, added by a trigger for every event of the owner (migration
0009_webhooks) and queued as jobs in the same transaction; the job (``service.jobs.webhooks``) calls
``deliver``. A delivery only ever goes to the URL of the webhook row it belongs to, and a webhook only ever
gets its own owner's events.

Signature (as Stripe's): header ``Soundalike-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
``f"{t}.{body}"`` with the webhook's secret; a receiver recomputes it and refuses old timestamps. After a
rotation the previous secret signs too, as a second ``v1``, until its grace window ends.

Destinations: a URL whose host resolves to a loopback, private, link-local, multicast or otherwise non-public
address is refused at registration and again at each delivery (the delivery connects to the address it
checked, so a name that changes its answer in between gains nothing), unless
``SOUNDALIKE_JOBS_WEBHOOK_ALLOW_PRIVATE_HOSTS`` allows them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.schema.models import EVENT_TYPES, Webhook, WebhookDelivery
from service.domain.access.api_keys import Caller
from service.domain.errors import InvalidInput, NotFound

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Soundalike-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
MAX_URL_LENGTH = 2000
MAX_WEBHOOKS_PER_OWNER = 20
DEFAULT_GRACE_SECONDS = 24 * 3600
MAX_GRACE_SECONDS = 7 * 24 * 3600
# what makes an address no place for a webhook, checked in this order (127.0.0.1 is also "private")
REFUSED_KINDS = ("loopback", "link_local", "multicast", "unspecified", "private", "reserved")


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


def refused_address(address: str) -> str | None:
    """Why a webhook may not be delivered to this IP address (``None``: it may: a public address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in REFUSED_KINDS:
        if getattr(ip, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    return None if ip.is_global else f"{address} is not a public address"


async def resolve(parts: SplitResult) -> list[str]:
    """The addresses the URL's host resolves to, in the resolver's order (an IP literal: itself)."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def public_addresses(url: str) -> list[str]:
    """The addresses of the URL's host when every one is public, else ``InvalidInput`` naming ``url``."""
    parts = urlsplit(url)
    try:
        addresses = await resolve(parts)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput("url", f"the host {parts.hostname!r} does not resolve: {exc}") from None
    refused = [reason for reason in map(refused_address, addresses) if reason]
    if refused:
        raise InvalidInput(
            "url",
            f"webhooks go to public addresses only and {parts.hostname!r} resolves to {refused[0]} "
            "(SOUNDALIKE_JOBS_WEBHOOK_ALLOW_PRIVATE_HOSTS=true allows such hosts)",
        )
    return addresses


def check_events(events: tuple[str, ...] | list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if not events or unknown:
        raise InvalidInput("events", f"events must be a non-empty subset of {list(EVENT_TYPES)}; got {list(events)}")
    return sorted(set(events))


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def create(session: AsyncSession, caller: Caller, request: NewWebhook, allow_private_hosts: bool) -> Webhook:
    """Register a URL: an http(s) URL whose host resolves to public addresses only (unless allowed)."""
    row = Webhook(
        owner=caller.owner,
        url=check_url(request.url),
        event_types=check_events(request.events),
        description=request.description,
        secret=new_secret(),
    )
    if not allow_private_hosts:
        await public_addresses(row.url)
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


async def rotate_secret(
    session: AsyncSession, caller: Caller, webhook_id: uuid.UUID, grace_seconds: int = DEFAULT_GRACE_SECONDS
) -> Webhook:
    """A new signing secret; the current one keeps signing beside it for ``grace_seconds`` (0: stops now). A
    secret replaced earlier, still in its own grace window, stops at once: only two secrets ever sign."""
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise InvalidInput("grace_seconds", f"grace_seconds must be 0 ... {MAX_GRACE_SECONDS}; got {grace_seconds}")
    row = await get(session, caller, webhook_id)
    grace = timedelta(seconds=grace_seconds)
    row.previous_secret, row.previous_secret_expires_at = (
        (row.secret, datetime.now(UTC) + grace) if grace else (None, None)
    )
    row.secret = new_secret()
    await session.commit()
    return row


def signing_secrets(webhook: Webhook, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one until its window ends."""
    expires = webhook.previous_secret_expires_at
    previous = [webhook.previous_secret] if webhook.previous_secret and expires and expires > now else []
    return [webhook.secret, *previous]


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


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | list[str], body: bytes, timestamp: int) -> str:
    """``t=<timestamp>,v1=<hex>``, one ``v1`` per secret (a rotation's grace window has two)."""
    keys = [secret] if isinstance(secret, str) else secret
    return ",".join([f"t={timestamp}", *(f"v1={_digest(key, body, timestamp)}" for key in keys)])


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when one of the header's ``v1`` signatures signs ``body`` with ``secret`` and its timestamp is within
    the tolerance (during a rotation's grace window the header carries one ``v1`` per signing secret)."""
    pairs = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [value for key, value in pairs if key == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return False
    timestamp = int(timestamps[0])
    if abs((now or time.time()) - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, body, timestamp)
    return any(hmac.compare_digest(expected, value) for key, value in pairs if key == "v1")


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
    refused: bool = False  # the destination is not allowed: no further try


@dataclass(frozen=True)
class DeliverySettings:
    max_attempts: int
    timeout_seconds: float
    allow_private_hosts: bool = False


async def deliver(
    sessions: async_sessionmaker[AsyncSession],
    delivery_id: int,
    attempt: int,
    settings: DeliverySettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Attempt:
    """POST one delivery to its webhook's URL and record the try; a delivery no longer pending is skipped, one
    whose host now resolves to an address that is not allowed fails at once."""
    async with sessions() as session:
        found = (
            await session.execute(
                select(WebhookDelivery, Webhook).join(Webhook).where(WebhookDelivery.id == delivery_id)
            )
        ).first()
        if found is None or found[0].status != "pending" or found[1].deleted_at is not None:
            return Attempt(status=found[0].status if found else "missing", retry=False)
        delivery, webhook = found
        outcome = await _post(webhook, delivery, settings, transport)
        final = outcome.status_code is not None and 200 <= outcome.status_code < 300
        given_up = outcome.refused or attempt >= settings.max_attempts
        status = "succeeded" if final else ("failed" if given_up else "pending")
        now = datetime.now(UTC)
        delivery.status, delivery.attempts, delivery.last_attempt_at = status, attempt, now
        delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
        delivery.delivered_at = now if final else None
        await session.commit()
    return Attempt(
        status=status,
        retry=status == "pending",
        status_code=outcome.status_code,
        error=outcome.error,
        refused=outcome.refused,
    )


async def _post(
    webhook: Webhook,
    delivery: WebhookDelivery,
    settings: DeliverySettings,
    transport: httpx.AsyncBaseTransport | None,
) -> Attempt:
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Soundalike-Webhooks/1",
        SIGNATURE_HEADER: sign(signing_secrets(webhook, datetime.now(UTC)), body, int(time.time())),
        "Soundalike-Delivery-Id": str(delivery.id),
        "Soundalike-Event": delivery.type,
    }
    url, extensions = webhook.url, {}
    if not settings.allow_private_hosts:
        try:
            address = (await public_addresses(webhook.url))[0]
        except InvalidInput as refused:
            return Attempt(status="failed", retry=False, error=f"refused: {refused.message}"[:500], refused=True)
        url, pinned_headers, extensions = pinned(webhook.url, address)
        headers.update(pinned_headers)
    try:
        async with httpx.AsyncClient(
            timeout=settings.timeout_seconds, transport=transport, follow_redirects=False
        ) as client:
            response = await client.post(url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        return Attempt(status="pending", retry=True, error=f"{type(exc).__name__}: {exc}"[:500])
    error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
    return Attempt(status="pending", retry=True, status_code=response.status_code, error=error)


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL with its host replaced by the checked address, and the Host header and TLS server name that keep
    the request what it was (the certificate is still checked against the host name)."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), {"Host": host}, extensions
