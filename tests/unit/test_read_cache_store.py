"""The in-process read cache backend: a space's entries live at most its TTL; forgetting bumps its generation."""

from __future__ import annotations

from service.domain.cache.store import LocalBackend, OffBackend, Space


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_with_their_space_ttl_counted_from_the_first_entry():
    clock = Clock()
    backend, space = LocalBackend(clock), Space("s", ttl=10)
    assert await backend.store(space, "a", b"1", "")
    clock.now = 6
    assert await backend.store(space, "b", b"2", "")  # the space keeps its expiry: b lives 4 s only
    assert (await backend.lookup(space, "a")).value == b"1"
    clock.now = 10
    assert (await backend.lookup(space, "a")).value is None and (await backend.lookup(space, "b")).value is None
    assert await backend.store(space, "a", b"3", "") and (await backend.lookup(space, "a")).value == b"3"


async def test_forgetting_keys_or_a_space_and_other_spaces_untouched():
    backend, one, two = LocalBackend(), Space("one", ttl=60), Space("two", ttl=60)
    for space in (one, two):
        for key in ("a", "b"):
            await backend.store(space, key, key.encode(), "")
    await backend.forget(one, ("a",))
    generation = (await backend.lookup(one, "b")).generation
    assert (await backend.lookup(one, "a")).value is None and (await backend.lookup(one, "b")).value == b"b"
    assert not await backend.store(one, "a", b"stale", "")  # computed before the forget
    assert await backend.store(one, "a", b"new", generation)
    await backend.forget(one, ())
    assert [(await backend.lookup(one, k)).value for k in ("a", "b")] == [None, None]
    assert (await backend.lookup(two, "a")).value == b"a"


async def test_a_full_space_starts_afresh_and_the_off_backend_keeps_nothing():
    backend, space = LocalBackend(max_entries=2), Space("s", ttl=60)
    for key in ("a", "b", "c"):
        await backend.store(space, key, b"x", "")
    assert [(await backend.lookup(space, k)).value for k in ("a", "b", "c")] == [None, None, b"x"]
    off = OffBackend()
    assert not await off.store(space, "a", b"x", "") and (await off.lookup(space, "a")).value is None
