"""Models loaded once per process and run off the event loop."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from service.db.models import Model

T = TypeVar("T")


class LoadedModels:
    """An LRU of loaded pipelines keyed by model id; a model is loaded once even under concurrency."""

    def __init__(self, capacity: int, loader: Callable[[Path], object] | None = None) -> None:
        self.capacity = capacity
        self._loader = loader
        self._loaded: OrderedDict[int, object] = OrderedDict()
        self._lock = asyncio.Lock()

    async def run(self, model: Model, work: Callable[[object], T]) -> T:
        pipeline = await self.get(model)
        return await asyncio.to_thread(work, pipeline)

    async def get(self, model: Model) -> object:
        async with self._lock:
            if model.id in self._loaded:
                self._loaded.move_to_end(model.id)
                return self._loaded[model.id]
            pipeline = await asyncio.to_thread(self._load, Path(model.checkpoint_path))
            self._loaded[model.id] = pipeline
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
            return pipeline

    def _load(self, path: Path) -> object:
        if self._loader is None:
            from service.ml.pipeline import Pipeline

            self._loader = Pipeline.load
        return self._loader(path)
