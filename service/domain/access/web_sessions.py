"""Browser sessions: an API key exchanged once for a signed, expiring token kept in an HttpOnly cookie.

The token is ``<key id>.<expiry unix time>.<HMAC-SHA256>`` under the server's auth secret; it holds no key and
no secret. Every use re-checks that the key it was made from is not revoked (through the key cache, which a
revocation empties at once). The key itself is only ever sent in a POST body, never in a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.schema.models import ApiKey
from service.domain.access.api_keys import Caller, CallerCache, authenticate, live_caller, session_cache_key

COOKIE_NAME = "soundalike_session"
SESSION_SECONDS = 12 * 3600


def _signature(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), f"session:{payload}".encode(), hashlib.sha256).hexdigest()


def issue_token(secret: str, caller: Caller, now: float | None = None, lifetime: float = SESSION_SECONDS) -> str:
    payload = f"{caller.key_id}.{int((now or time.time()) + lifetime)}"
    return f"{payload}.{_signature(secret, payload)}"


def token_key_id(secret: str, token: str, now: float | None = None) -> int | None:
    """The key id a token was issued for, or None when it is malformed, forged or expired."""
    key_id, _, rest = token.partition(".")
    expires, _, signature = rest.partition(".")
    if not (key_id.isdigit() and expires.isdigit()):
        return None
    if not hmac.compare_digest(signature, _signature(secret, f"{key_id}.{expires}")):
        return None
    return int(key_id) if int(expires) > (now or time.time()) else None


async def sign_in(
    sessions: async_sessionmaker[AsyncSession], secret: str, key: str, cache: CallerCache
) -> tuple[Caller, str] | None:
    """The caller and a session token for a valid API key; None for an unknown or revoked one."""
    caller = await authenticate(sessions, secret, key.strip(), cache)
    return (caller, issue_token(secret, caller)) if caller else None


async def caller_for_token(
    sessions: async_sessionmaker[AsyncSession], secret: str, token: str, cache: CallerCache
) -> Caller | None:
    """The caller behind a session cookie, or None (bad token, expired, or the key was revoked)."""
    key_id = token_key_id(secret, token)
    if key_id is None:
        return None
    return await live_caller(sessions, cache, session_cache_key(key_id), ApiKey.id == key_id)
