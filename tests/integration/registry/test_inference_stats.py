"""Per-model inference statistics in the registry: tallied by the model cache, summed across processes by the
flush, shown by ``GET /v1/models/{ref}`` and ``soundalike models show``."""

import json

from service.domain.models import inference_stats, registry
from service.domain.models.inference_stats import InferenceStats, stats_of
from service.domain.models.model_cache import ModelCache
from tests.integration.registry.test_model_cache import JsonLoader, add


async def test_the_cache_tallies_loads_and_calls_and_flushes_them_into_the_registry(sessions, checkpoint):
    path = checkpoint("a.pt", json.dumps({"weights": list(range(64))}).encode())
    model_id = await add(sessions, path, "a")
    cache = ModelCache(sessions, size=1, loader=JsonLoader())
    for _ in range(3):
        assert await cache.run(model_id, lambda m: sum(m["weights"]), operation="generate", items=4) == 2016
    await cache.run(model_id, lambda m: len(m["weights"]), operation="encode")
    assert cache.stats.pending == 3  # load, generate, encode: nothing written yet
    async with sessions() as session:
        assert (await stats_of(session, [model_id]))[model_id] == []

    assert await cache.flush_stats() == 3
    async with sessions() as session:
        stats = {s.operation: s for s in (await stats_of(session, [model_id]))[model_id]}
    assert list(stats) == ["load", "generate", "encode"]
    generate = stats["generate"]
    assert (generate.calls, generate.items, generate.errors) == (3, 12, 0)
    assert 0 < generate.mean_seconds <= generate.max_seconds and generate.p95_seconds > 0
    assert stats["load"].calls == 1 and stats["load"].peak_rss_bytes > 0
    assert cache.stats.pending == 0 and await cache.flush_stats() == 0


async def test_flushes_of_several_processes_add_up_and_a_failed_call_counts_as_an_error(sessions, checkpoint):
    model_id = await add(sessions, checkpoint("a.pt"), "a")
    workers = [InferenceStats(), InferenceStats()]
    workers[0].record(model_id, "generate", 0.010, items=2)
    workers[0].record(model_id, "generate", 0.030, items=2, ok=False)
    workers[1].record(model_id, "generate", 2.0, items=8)
    for worker in workers:
        async with sessions() as session:
            assert await worker.flush(session) == 1
    async with sessions() as session:
        (generate,) = (await stats_of(session, [model_id]))[model_id]
    assert (generate.calls, generate.items, generate.errors) == (3, 12, 1)
    assert generate.max_seconds == 2.0 and abs(generate.mean_seconds - 2.04 / 3) < 1e-9
    assert generate.p50_seconds < 0.05 < 1.5 < generate.p95_seconds <= 2.0


async def test_a_model_deleted_before_the_flush_is_skipped(sessions, checkpoint):
    kept, doomed = await add(sessions, checkpoint("a.pt"), "a"), await add(sessions, checkpoint("b.pt"), "b")
    stats = InferenceStats()
    stats.record(kept, "encode", 0.5)
    stats.record(doomed, "encode", 0.5)
    async with sessions() as session:
        await registry.delete(session, "b")
        await session.commit()
    async with sessions() as session:
        await stats.flush(session)
        found = await stats_of(session, [kept, doomed])
    assert [s.calls for s in found[kept]] == [1] and found[doomed] == []


async def test_the_models_api_shows_the_statistics(database, settings, sessions, checkpoint, tmp_path):
    from tests.integration.api_helpers import api_client, bearer_for

    model_id = await add(sessions, checkpoint("a.pt"), "a")
    stats = InferenceStats()
    stats.record(model_id, inference_stats.GENERATE, 0.25, items=8)
    async with sessions() as session:
        await stats.flush(session)
    async with api_client(database, settings, worker=False) as client:
        admin = await bearer_for(client, "root", "admin")
        shown = (await client.get("/v1/models/a", headers=admin)).json()
        listed = (await client.get("/v1/models", headers=admin)).json()
    (generate,) = shown["inference"]
    assert generate["operation"] == "generate" and generate["calls"] == 1 and generate["items"] == 8
    assert generate["mean_seconds"] == 0.25 and generate["max_seconds"] == 0.25
    assert 0.2 < generate["p95_seconds"] <= 0.3
    assert listed[0]["inference"] == shown["inference"]
