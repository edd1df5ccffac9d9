"""The worker's model cache: models by registry id, loaded lazily, at most ``settings.model.cache_size`` kept (LRU).

Before a model is built its checkpoint is re-hashed against the registry; a mismatch (or a failed load) marks
the model FAILED with the reason and raises. Loading happens under a per-model lock, so concurrent requests for
a model build it once; hashing runs in a thread, loading and inference on the process's one inference thread
(``inference_thread``: the same long-lived thread for every call, torch's threads set on it), or on the main
thread of a standalone worker (``main_thread_inference``), never on the event loop.

    cache = ModelCache(sessionmaker)                # loader: service.ml.pipeline.Pipeline.load
    audio = await cache.run(model_id, lambda pipeline: pipeline.generate(...), operation="generate", items=8)
    await cache.flush_stats()                       # workers: at the end of each job
    cache.close()                                   # stops the inference thread (Runtime.close)

Every load and call is also tallied per model version and operation (``inference_stats``: calls, latency, memory)
and added to the registry's ``model_inference_stats`` by ``flush_stats``, or by ``run`` a minute after the last
flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.schema.models import Model
from service.domain.generation import failures
from service.domain.models import inference_stats, registry
from service.domain.models.checkpoints import load_failure
from service.domain.models.inference_thread import InferenceThread
from service.domain.models.main_thread_inference import MainThreadInference
from service.errors import SoundalikeError
from service.metrics import MODEL_INFERENCE, MODEL_LOAD, timed

log = logging.getLogger(__name__)
T = TypeVar("T")
Loader = Callable[[Path], Any]


class ModelLoadError(SoundalikeError):
    """The model could not be loaded (bad checksum, missing file, the loader failed); it is now FAILED."""


def pipeline_loader(path: Path) -> Any:
    """The default loader: the project's model pipeline (imported here so the cache stays light)."""
    from service.ml.pipeline import Pipeline

    return Pipeline.load(path)


class ModelCache:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        size: int | None = None,
        loader: Loader | None = None,
        inference: InferenceThread | MainThreadInference | None = None,
    ) -> None:
        if size is None:
            from service.settings import get_settings

            size = get_settings().model.cache_size
        if size < 1:
            raise ValueError("the model cache holds at least one model")
        self._sessions = sessions
        self._size = size
        self._loader = loader or pipeline_loader
        self._models: OrderedDict[int, Any] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}
        self._labels: dict[int, dict[str, str]] = {}  # metric labels: alias and version of each loaded model
        self.stats = inference_stats.InferenceStats()
        self.inference = inference or InferenceThread()  # where loads and calls run

    @property
    def loaded_ids(self) -> list[int]:
        """Loaded model ids, least recently used first."""
        return list(self._models)

    def close(self) -> None:
        """Stop the inference thread (a running call finishes); loaded models are dropped."""
        self.inference.close()
        self._models.clear()

    def evict(self, model_id: int) -> bool:
        return self._models.pop(model_id, None) is not None

    async def get(self, model_id: int) -> Any:
        """The loaded model, building it (once, however many ask at the same time) if needed."""
        if model_id in self._models:
            self._models.move_to_end(model_id)
            return self._models[model_id]
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            model = await self._load(model_id)
            self._models[model_id] = model
            while len(self._models) > self._size:
                evicted, _ = self._models.popitem(last=False)
                log.info("model cache: evicted model %s (cache size %s)", evicted, self._size)
            return model

    async def run(
        self, model_id: int, work: Callable[[Any], T], operation: str = inference_stats.INFERENCE, items: int = 1
    ) -> T:
        """Run ``work(model)`` on the inference thread (never on the event loop), timed per model version and
        tallied under ``operation`` (``generate``, ``encode``) for ``items`` clips. What goes wrong in here is
        the model's failure (``failures.mark_model_stage``)."""
        try:
            model = await self.get(model_id)
            rss_before, start, ok = self.stats.start(), time.perf_counter(), False
            try:
                with timed(MODEL_INFERENCE, **self._labels[model_id]):
                    result = await self.inference.call(work, model)
                ok = True
                return result
            finally:
                self.stats.record(model_id, operation, time.perf_counter() - start, items, ok, rss_before)
                if self.stats.due():
                    await self.flush_stats()
        except Exception as exc:
            failures.mark_model_stage(exc)
            raise

    async def flush_stats(self) -> int:
        """Add this process's tallies to the registry; a failure is logged (the tallies wait for the next
        flush), never raised: statistics never fail a job."""
        try:
            async with self._sessions() as session:
                return await self.stats.flush(session)
        except Exception as exc:
            log.warning("model statistics not written (kept for the next flush): %s", exc)
            return 0

    async def _load(self, model_id: int) -> Any:
        async with self._sessions() as session:
            row = await session.get(Model, model_id)
            if row is None:
                raise registry.ModelNotFound(f"no model with id {model_id}")
            registry.ensure_usable(row)
            alias, path, sha256 = row.alias, row.checkpoint_path, row.checkpoint_sha256
            labels = {"model": alias, "version": row.version}
            await registry.mark_loading(session, model_id)
            await session.commit()

        problem = await asyncio.to_thread(registry.checkpoint_problem, path, sha256)
        if problem is None and not sha256:
            problem = "no checkpoint sha256 is recorded for this model (re-register it with `soundalike models add`)"
        if problem:
            await self._fail(model_id, problem)
            raise ModelLoadError(f"model {alias!r} cannot be loaded: {problem}")
        rss_before, start = self.stats.start(), time.perf_counter()
        try:
            with timed(MODEL_LOAD, **labels):
                model = await self.inference.call(self._loader, Path(path))
        except Exception as exc:
            self.stats.record(model_id, inference_stats.LOAD, time.perf_counter() - start, ok=False)
            reason = f"loading {path} failed: {load_failure(exc)}"
            await self._fail(model_id, reason)
            raise ModelLoadError(f"model {alias!r} cannot be loaded: {reason}") from exc
        self.stats.record(model_id, inference_stats.LOAD, time.perf_counter() - start, rss_before=rss_before)

        async with self._sessions() as session:
            await registry.mark_ready(session, model_id)
            await session.commit()
        self._labels[model_id] = labels
        log.info("model cache: loaded model %s (%s)", model_id, alias)
        return model

    async def _fail(self, model_id: int, reason: str) -> None:
        async with self._sessions() as session:
            await registry.mark_failed(session, model_id, reason)
            await session.commit()
