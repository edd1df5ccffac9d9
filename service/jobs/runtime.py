"""What a worker's tasks share: database sessions, the blob store, loaded models, settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db.engine import create_engine, session_factory
from service.jobs.model_runner import LoadedModels
from service.settings import Settings
from service.storage import BlobStore


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: BlobStore
    models: LoadedModels

    @classmethod
    def create(cls, database_url: str, settings: Settings, models: LoadedModels | None = None) -> Runtime:
        engine = create_engine(database_url, settings.database)
        return cls(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            store=BlobStore(settings.storage.blob_dir, settings.storage.archive_dir),
            models=models or LoadedModels(settings.model.cache_size),
        )

    async def close(self) -> None:
        await self.engine.dispose()
