"""State every API process must agree on: the API-key cache and the per-key rate limit.

With ``SOUNDALIKE_CACHE_URL`` (``redis://...``, any Redis-compatible server) both live in that server, so N API
processes on any number of hosts count one limit per key and a revoked key is dropped from the one cache all of
them read (``api_keys.revoke_key`` deletes it). Without it each process keeps its own (one process: the same
thing; several: each counts its own limit and trusts a key for ``auth.key_cache_seconds``).

The Redis limiter is a fixed window per key that starts with the key's first request: one Lua script does
``INCR`` and, on the window's first hit, ``PEXPIRE``, so concurrent requests of many processes each get a
distinct count and the window can never be left without an expiry.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from service.domain.access.api_keys import Caller, KeyCache
from service.domain.errors import DomainError

T = TypeVar("T")
HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


class CacheUnavailable(DomainError):
    """The shared cache server does not answer."""

    status = 503


@dataclass(frozen=True)
class Window:
    """One rate-limit window of one identifier after a request was counted in it."""

    count: int  # requests counted in this window, the current one included
    reset_seconds: int  # whole seconds (at least 1) until the window ends


class RateLimiter(Protocol):
    async def hit(self, identifier: str, window_seconds: int) -> Window: ...


class LocalRateLimiter:
    """Per-process fixed windows (the behaviour without a shared cache)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000) -> None:
        self.clock, self.max_entries = clock, max_entries
        self._windows: dict[str, tuple[int, float]] = {}

    async def hit(self, identifier: str, window_seconds: int) -> Window:
        now = self.clock()
        count, ends = self._windows.get(identifier, (0, now))
        if now >= ends:
            count, ends = 0, now + window_seconds
            if len(self._windows) >= self.max_entries:
                self._windows = {k: w for k, w in self._windows.items() if w[1] > now}
        self._windows[identifier] = (count + 1, ends)
        return Window(count + 1, max(1, math.ceil(ends - now)))


class RedisRateLimiter:
    """Fixed windows counted atomically in Redis (``HIT_SCRIPT``), shared by every process using ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._script = client.register_script(HIT_SCRIPT)
        self._prefix = f"{prefix}ratelimit:"

    async def hit(self, identifier: str, window_seconds: int) -> Window:
        count, ttl_ms = await shared_call(self._script(keys=[self._prefix + identifier], args=[window_seconds * 1000]))
        return Window(int(count), max(1, math.ceil(int(ttl_ms) / 1000)))


class RedisKeyCache:
    """The API-key cache of ``api_keys`` in Redis: an entry expires after ``ttl`` seconds, and ``forget`` (on
    revocation) removes it for every process at once."""

    def __init__(self, client: redis.Redis, prefix: str, ttl: float) -> None:
        self._client, self._prefix, self.ttl = client, f"{prefix}key:", ttl

    async def get(self, cache_key: str) -> Caller | None:
        raw = await shared_call(self._client.get(self._prefix + cache_key))
        return Caller(**json.loads(raw)) if raw else None

    async def put(self, cache_key: str, caller: Caller) -> None:
        if self.ttl <= 0:
            return
        value = json.dumps({"owner": caller.owner, "role": caller.role, "key_id": caller.key_id})
        await shared_call(self._client.set(self._prefix + cache_key, value, px=max(1, int(self.ttl * 1000))))

    async def forget(self, *cache_keys: str) -> None:
        if cache_keys:
            await shared_call(self._client.delete(*(self._prefix + key for key in cache_keys)))


@dataclass
class SharedState:
    """The key cache and rate limiter of one process, and the Redis client behind them (None: in-process)."""

    key_cache: KeyCache | RedisKeyCache
    rate_limiter: RateLimiter
    client: redis.Redis | None = None

    @classmethod
    def create(cls, url: str | None, prefix: str, key_cache_seconds: float) -> SharedState:
        """Redis-backed state for a ``redis://`` (or ``rediss://``, ``unix://``) URL, in-process for None.
        Connecting is lazy: nothing talks to the server before the first request."""
        if not url:
            return cls(KeyCache(key_cache_seconds), LocalRateLimiter())
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5, health_check_interval=30)
        return cls(RedisKeyCache(client, prefix, key_cache_seconds), RedisRateLimiter(client, prefix), client)

    @property
    def shared(self) -> bool:
        return self.client is not None

    async def ping(self) -> str:
        """``"redis"`` when the shared server answers, ``"in-process"`` without one; CacheUnavailable otherwise."""
        if self.client is None:
            return "in-process"
        await shared_call(self.client.ping())
        return "redis"

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


async def shared_call(call: Awaitable[T]) -> T:
    try:
        return await call
    except (RedisError, OSError) as exc:
        raise CacheUnavailable(f"the shared cache (SOUNDALIKE_CACHE_URL) does not answer: {exc}") from None
