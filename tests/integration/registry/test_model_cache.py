"""The worker's model cache with real checkpoint files, a real loader and the real registry."""

import asyncio
import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from service.db.engine import connect_sync
from service.db.schema.models import Model
from service.domain.models import registry
from service.domain.models.inference_thread import THREAD_NAME
from service.domain.models.model_cache import ModelCache, ModelLoadError


class JsonLoader:
    """A real loader: parses the checkpoint file, counts builds, notes the thread and the model's status."""

    def __init__(self, migration_url: str | None = None):
        self.loads: Counter[str] = Counter()
        self.threads: set[int] = set()
        self.status_while_loading: list[str] = []
        self.migration_url = migration_url
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, path: Path) -> dict:
        self.loads[path.name] += 1
        self.threads.add(threading.get_ident())
        if self.migration_url:
            with connect_sync(self.migration_url) as conn:
                status = conn.execute("SELECT status FROM models WHERE checkpoint_path = %s", (str(path),)).fetchone()
                self.status_while_loading.append(status[0])
        self.started.set()
        assert self.release.wait(timeout=30), "test never released the loader"
        return json.loads(path.read_text())


@pytest.fixture
def json_checkpoint(checkpoint):
    def make(name: str) -> Path:
        return checkpoint(name, json.dumps({"name": name, "weights": list(range(64))}).encode())

    return make


async def add(sessions, path: Path, alias: str) -> int:
    async with sessions() as session:
        row = await registry.add_model(session, path, alias)
        await session.commit()
        return row.id


async def status_of(sessions, model_id: int) -> tuple[str, str | None]:
    async with sessions() as session:
        row = await session.get(Model, model_id)
        return row.status, row.status_reason


async def test_loads_lazily_off_the_loop_and_marks_loading_then_ready(sessions, json_checkpoint, database):
    model_id = await add(sessions, json_checkpoint("a.pt"), "a")
    loader = JsonLoader(database.migration_url)
    cache = ModelCache(sessions, size=2, loader=loader)
    assert cache.loaded_ids == [] and loader.loads == Counter()
    model = await cache.get(model_id)
    assert model["name"] == "a.pt"
    assert loader.status_while_loading == ["LOADING"]
    assert await status_of(sessions, model_id) == ("READY", None)
    assert threading.get_ident() not in loader.threads
    inference_thread = await cache.run(model_id, lambda m: (threading.get_ident(), sum(m["weights"])))
    assert inference_thread[0] != threading.get_ident() and inference_thread[1] == sum(range(64))
    await cache.get(model_id)
    assert loader.loads == Counter({"a.pt": 1})
    # One long-lived inference thread: the load and every call (also concurrent ones) run on it.
    calls = await asyncio.gather(*(cache.run(model_id, lambda m: threading.get_ident()) for _ in range(4)))
    assert loader.threads == set(calls) == {inference_thread[0], cache.inference.ident}


async def test_closing_the_cache_stops_its_inference_thread(sessions, json_checkpoint):
    model_id = await add(sessions, json_checkpoint("a.pt"), "a")
    cache = ModelCache(sessions, size=1, loader=JsonLoader())
    name = await cache.run(model_id, lambda m: threading.current_thread().name)
    assert name.startswith(THREAD_NAME)
    thread = next(t for t in threading.enumerate() if t.ident == cache.inference.ident)
    cache.close()
    thread.join(timeout=30)
    assert not thread.is_alive() and cache.loaded_ids == []


async def test_concurrent_requests_build_a_model_once(sessions, json_checkpoint):
    model_id = await add(sessions, json_checkpoint("a.pt"), "a")
    loader = JsonLoader()
    loader.release.clear()
    cache = ModelCache(sessions, size=2, loader=loader)
    tasks = [asyncio.create_task(cache.get(model_id)) for _ in range(6)]
    await asyncio.to_thread(loader.started.wait, 30)  # the first build is under way; the others are queued
    for _ in range(10):
        await asyncio.sleep(0)
    loader.release.set()
    models = await asyncio.gather(*tasks)
    assert loader.loads == Counter({"a.pt": 1})
    assert all(m is models[0] for m in models)


async def test_least_recently_used_model_is_evicted(sessions, json_checkpoint):
    ids = {name: await add(sessions, json_checkpoint(f"{name}.pt"), name) for name in ("a", "b", "c")}
    loader = JsonLoader()
    cache = ModelCache(sessions, size=2, loader=loader)
    await cache.get(ids["a"])
    await cache.get(ids["b"])
    await cache.get(ids["a"])  # a is now the most recently used
    await cache.get(ids["c"])  # evicts b
    assert cache.loaded_ids == [ids["a"], ids["c"]]
    await cache.get(ids["b"])  # evicts a
    assert cache.loaded_ids == [ids["c"], ids["b"]]
    assert loader.loads == Counter({"a.pt": 1, "b.pt": 2, "c.pt": 1})


async def test_checksum_mismatch_fails_the_model_without_loading(sessions, json_checkpoint):
    path = json_checkpoint("a.pt")
    model_id = await add(sessions, path, "a")
    path.write_text(json.dumps({"name": "swapped"}))
    loader = JsonLoader()
    cache = ModelCache(sessions, size=2, loader=loader)
    with pytest.raises(ModelLoadError, match="model 'a' cannot be loaded: checkpoint sha256 mismatch"):
        await cache.get(model_id)
    assert loader.loads == Counter() and cache.loaded_ids == []
    status, reason = await status_of(sessions, model_id)
    assert status == "FAILED" and "sha256 mismatch" in reason
    with pytest.raises(registry.ModelUnavailable, match="failed"):
        await cache.get(model_id)


async def test_a_failing_loader_marks_the_model_failed_with_the_reason(sessions, checkpoint):
    model_id = await add(sessions, checkpoint("broken.pt", b"not json at all"), "broken")
    cache = ModelCache(sessions, size=1, loader=JsonLoader())
    with pytest.raises(ModelLoadError, match="JSONDecodeError"):
        await cache.get(model_id)
    status, reason = await status_of(sessions, model_id)
    assert status == "FAILED" and reason.startswith("loading ") and "JSONDecodeError" in reason


async def test_archived_and_unknown_models_are_refused(sessions, json_checkpoint):
    await add(sessions, json_checkpoint("a.pt"), "a")
    b = await add(sessions, json_checkpoint("b.pt"), "b")
    async with sessions() as session:
        await registry.archive(session, "b")
        await session.commit()
    loader = JsonLoader()
    cache = ModelCache(sessions, size=1, loader=loader)
    with pytest.raises(registry.ModelUnavailable, match="archived"):
        await cache.get(b)
    with pytest.raises(registry.ModelNotFound):
        await cache.get(987_654)
    assert loader.loads == Counter()


def test_cache_size_comes_from_settings(monkeypatch):
    from service.settings import get_settings

    monkeypatch.setenv("SOUNDALIKE_MODEL_CACHE_SIZE", "3")
    get_settings.cache_clear()
    try:
        assert ModelCache(sessions=None)._size == 3
    finally:
        get_settings.cache_clear()
    with pytest.raises(ValueError):
        ModelCache(sessions=None, size=0)
