"""The read cache: values (bytes) by key in named spaces, each space with a TTL and a generation counter.

A read that misses notes the space's generation, computes the value from the database and stores it only if the
generation is unchanged: a write that commits and forgets (``forget`` bumps the generation) while a slower read
is still computing can never have its change overwritten by that read's stale value.

Backends: ``RedisBackend`` (one hash per space plus a generation key, each operation one round trip through a Lua
script; the hash expires ``ttl`` seconds after its first entry, so no entry outlives its TTL), ``LocalBackend``
(the same in a dict of this process) and ``OffBackend`` (nothing is kept: every read computes; benchmarks).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import msgspec
import redis.asyncio as redis

from service.domain.access.shared_state import shared_call

T = TypeVar("T")

# KEYS: the space's hash, its generation; ARGV: the entry's field. Returns {value or false, generation or false}.
LOOKUP_SCRIPT = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2])}
"""
# ARGV: field, value, ttl in ms, the generation the value was computed under ('' when the space had none)
STORE_SCRIPT = """
local now = redis.call('GET', KEYS[2]) or ''
if now ~= ARGV[4] then
    return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""
# ARGV: the fields to forget; none: the whole space
FORGET_SCRIPT = """
redis.call('INCR', KEYS[2])
if #ARGV == 0 then
    redis.call('DEL', KEYS[1])
else
    redis.call('HDEL', KEYS[1], unpack(ARGV))
end
return 1
"""


@dataclass(frozen=True)
class Space:
    """A family of cached values and how long one may live at most."""

    name: str
    ttl: float  # seconds


@dataclass(frozen=True)
class Lookup:
    value: bytes | None  # None: a miss
    generation: str  # the space's generation when it was read (store with it)


class Backend(Protocol):
    async def lookup(self, space: Space, key: str) -> Lookup: ...

    async def store(self, space: Space, key: str, value: bytes, generation: str) -> bool: ...

    async def forget(self, space: Space, keys: tuple[str, ...]) -> None: ...


class OffBackend:
    """Keeps nothing (the cache turned off)."""

    async def lookup(self, space: Space, key: str) -> Lookup:
        return Lookup(None, "")

    async def store(self, space: Space, key: str, value: bytes, generation: str) -> bool:
        return False

    async def forget(self, space: Space, keys: tuple[str, ...]) -> None:
        return None


class LocalBackend:
    """The spaces in this process: right for one API process; with several, each keeps its own (a write made
    through another process reaches this one's entries only when they expire)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000) -> None:
        self.clock, self.max_entries = clock, max_entries
        self._entries: dict[str, tuple[float, dict[str, bytes]]] = {}  # space -> (expires, entries)
        self._generations: dict[str, int] = {}

    async def lookup(self, space: Space, key: str) -> Lookup:
        return Lookup(self._live(space).get(key), str(self._generations.get(space.name, "")))

    async def store(self, space: Space, key: str, value: bytes, generation: str) -> bool:
        if str(self._generations.get(space.name, "")) != generation:
            return False
        entries = self._live(space)
        if not entries:
            self._entries[space.name] = (self.clock() + space.ttl, entries)
        if len(entries) >= self.max_entries:
            entries.clear()  # many distinct keys in one TTL: start afresh rather than track ages
        entries[key] = value
        return True

    async def forget(self, space: Space, keys: tuple[str, ...]) -> None:
        self._generations[space.name] = self._generations.get(space.name, 0) + 1
        entries = self._live(space)
        for key in keys or tuple(entries):
            entries.pop(key, None)

    def _live(self, space: Space) -> dict[str, bytes]:
        expires, entries = self._entries.get(space.name, (0.0, {}))
        if self.clock() >= expires:
            self._entries.pop(space.name, None)
            return {}
        return entries


class RedisBackend:
    """The spaces in the shared server (``SOUNDALIKE_CACHE_URL``): every API process reads the same entries and a
    write made through any of them forgets them for all. The keys of one space share a hash tag (``{name}``), so a
    Redis Cluster keeps them on one node as the scripts need."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._prefix = f"{prefix}cache:"
        self._lookup = client.register_script(LOOKUP_SCRIPT)
        self._store = client.register_script(STORE_SCRIPT)
        self._forget = client.register_script(FORGET_SCRIPT)

    def _keys(self, space: Space) -> list[str]:
        base = f"{self._prefix}{{{space.name}}}"
        return [base, f"{base}:generation"]

    async def lookup(self, space: Space, key: str) -> Lookup:
        value, generation = await shared_call(self._lookup(keys=self._keys(space), args=[key]))
        return Lookup(value or None, generation.decode() if generation else "")

    async def store(self, space: Space, key: str, value: bytes, generation: str) -> bool:
        ttl_ms = max(1, int(space.ttl * 1000))
        return bool(await shared_call(self._store(keys=self._keys(space), args=[key, value, ttl_ms, generation])))

    async def forget(self, space: Space, keys: tuple[str, ...]) -> None:
        await shared_call(self._forget(keys=self._keys(space), args=list(keys)))


class ReadCache:
    """Typed values (msgspec-encodable: structs, dataclasses, lists) in the spaces of one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @classmethod
    def create(cls, client: redis.Redis | None, prefix: str) -> ReadCache:
        """On the shared server of ``client`` (``SharedState.client``), else in this process."""
        return cls(LocalBackend() if client is None else RedisBackend(client, prefix))

    @classmethod
    def off(cls) -> ReadCache:
        return cls(OffBackend())

    async def fetch(
        self, space: Space, key: str, kind: type[T], compute: Callable[[], Awaitable[T | None]]
    ) -> T | None:
        """The cached value of ``key``, else ``compute()``'s, kept unless it is None (misses are not cached) or a
        write forgot the space meanwhile."""
        found = await self.backend.lookup(space, key)
        if found.value is not None:
            return msgspec.json.decode(found.value, type=kind)
        return await self.compute_and_store(space, key, found.generation, compute)

    async def compute_and_store(
        self, space: Space, key: str, generation: str, compute: Callable[[], Awaitable[T | None]]
    ) -> T | None:
        value = await compute()
        if value is not None:
            await self.backend.store(space, key, msgspec.json.encode(value), generation)
        return value

    async def forget(self, space: Space, *keys: str) -> None:
        """Drop ``keys`` of ``space`` (none: all of it) for every process sharing the backend; call after the
        write commits."""
        await self.backend.forget(space, keys)
