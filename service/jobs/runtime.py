"""What a worker's tasks share: database sessions, the blob store, loaded models, settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db.engine import create_engine, session_factory
from service.domain.models.inference_thread import InferenceThread
from service.domain.models.main_thread_inference import MainThreadInference
from service.domain.models.model_cache import ModelCache
from service.settings import Settings
from service.storage import BlobStore


@dataclass
class Runtime:
    database_url: str
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: BlobStore
    models: ModelCache

    @classmethod
    def create(cls, database_url: str, settings: Settings, inference: MainThreadInference | None = None) -> Runtime:
        """``inference``: where model calls run (the default: the process's inference thread, with
        ``settings.model.threads`` torch threads)."""
        engine = create_engine(database_url, settings.database)
        sessions = session_factory(engine)
        return cls(
            database_url=database_url,
            settings=settings,
            engine=engine,
            sessions=sessions,
            store=BlobStore(settings.storage.blob_dir, settings.storage.archive_dir),
            models=ModelCache(
                sessions, settings.model.cache_size, inference=inference or InferenceThread(settings.model.threads)
            ),
        )

    async def close(self) -> None:
        await self.models.flush_stats()  # what ran since the last job's flush (API imports, a stopping worker)
        self.models.close()  # the inference thread, or the main thread's host stops taking calls
        await self.engine.dispose()
