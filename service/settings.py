"""Settings, grouped by concern (database, server, storage, auth, model, jobs, cache, ...), read once from the
environment (``SOUNDALIKE_`` prefix) and ``.env``.

Each group has its own prefix, so ``SOUNDALIKE_DATABASE_URL`` sets ``settings.database.url``.
Profiles (``SOUNDALIKE_ENV``): ``dev`` (default), ``test`` and ``prod``; ``prod`` refuses unsafe defaults.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.errors import ConfigError

DEFAULT_AUTH_SECRET = "dev-insecure-secret-change-me"


def _group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"SOUNDALIKE_{prefix}_", env_file=".env", extra="ignore")


class DatabaseSettings(BaseSettings):
    model_config = _group("DATABASE")

    url: str | None = Field(None, description="Application-role URL; unset means the embedded server")
    migration_url: str | None = Field(None, description="Owner-role URL for migrations, backup, restore")
    embedded_dir: Path = Path("var/pg")
    name: str = "soundalike"
    owner_role: str = "soundalike_owner"
    app_role: str = "soundalike_app"
    pool_size: int = Field(5, ge=1)
    max_overflow: int = Field(5, ge=0)
    pool_timeout: float = Field(10.0, gt=0)
    connect_timeout: int = Field(5, ge=1)
    read_urls: str = Field("", description="Comma-separated application-role URLs of read replicas")
    replica_max_lag_seconds: float = Field(5.0, ge=0, description="A replica lagging more is skipped for reads")
    replica_poll_seconds: float = Field(1.0, gt=0, description="How often each process checks its replicas")
    wal_archiving: bool = Field(True, description="Embedded server: archive its WAL (point-in-time recovery)")
    slow_query_ms: int = Field(
        250, ge=-1, description="Embedded server: log statements slower than this (log_min_duration_statement; -1 off)"
    )

    @property
    def embedded(self) -> bool:
        return self.url is None

    @property
    def read_url_list(self) -> list[str]:
        return [url.strip() for url in self.read_urls.split(",") if url.strip()]


class ServerSettings(BaseSettings):
    model_config = _group("SERVER")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    debug: bool = False
    rate_limit_per_minute: int = Field(600, ge=1, description="Requests per API key per minute")


class StorageSettings(BaseSettings):
    model_config = _group("STORAGE")

    blob_dir: Path = Path("var/blobs")
    archive_dir: Path = Path("var/archive")
    backup_dir: Path = Path("var/backups")
    max_upload_bytes: int = Field(25_000_000, ge=1, description="Largest accepted audio upload")
    max_upload_seconds: float = Field(600.0, gt=0, description="Longest accepted audio upload")
    orphan_grace_seconds: float = Field(3600.0, ge=0, description="Files younger than this are never swept")
    retention_days: float = Field(180.0, gt=0, description="Generations older than this are archived")
    wal_dir: Path | None = None  # the embedded server's WAL archive; unset: beside its data dir (var/pg-wal)
    index_dir: Path = Path("var/index")  # FAISS mirrors of latent_embeddings, one per model (indexing/)


class JobsSettings(BaseSettings):
    model_config = _group("JOBS")

    concurrency: int = Field(1, ge=1, description="Jobs one worker process runs at once")
    in_process_worker: bool = Field(True, description="`serve` runs a worker beside the API")
    queue_limit: int = Field(200, ge=1, description="Pending generations beyond which POST answers 429")
    heartbeat_seconds: float = Field(10.0, gt=0)
    stalled_after_seconds: float = Field(30.0, gt=0, description="No heartbeat for this long: the job is retried")
    max_attempts: int = Field(3, ge=1, description="Runs of one job before its generations are marked failed")
    max_variants_per_batch: int = Field(
        200, ge=1, description="Most variants one POST /v1/variants may ask for (queue_limit caps it too)"
    )
    variant_chunk_size: int = Field(16, ge=1, le=256, description="Variants produced per job (one batched call)")
    reencode_chunk_size: int = Field(64, ge=1, le=1024, description="Items re-encoded per job (batched encode + COPY)")
    sweep_cron: str = Field("* * * * *", description="When the stalled-job / undeferred sweep runs")
    lifecycle_cron: str = Field("17 3 * * *", description="When archival, purge and the orphan sweep run")
    index_sync_cron: str = Field("*/10 * * * *", description="When the FAISS mirrors are brought up to date")
    webhook_attempts: int = Field(6, ge=1, description="Tries of one webhook delivery before it is marked failed")
    webhook_backoff_seconds: int = Field(4, ge=1, description="Retry n of a delivery waits this ** n seconds")
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="How long a receiver may take to answer")
    webhook_allow_private_hosts: bool = Field(
        False, description="Webhooks may go to loopback, private, link-local and multicast addresses (tests, a LAN)"
    )


class AuthSettings(BaseSettings):
    model_config = _group("AUTH")

    secret: str = Field(DEFAULT_AUTH_SECRET, description="Pepper for hashing API keys")
    key_cache_seconds: float = Field(
        5.0, ge=0, description="How long a serving process trusts a key it checked; a revocation takes this long"
    )


class CacheSettings(BaseSettings):
    model_config = _group("CACHE")

    url: str | None = Field(
        None, description="redis:// URL of a Redis-compatible server shared by the API processes; unset: in-process"
    )
    prefix: str = Field("soundalike:", description="Prefix of every key this deployment writes to that server")


class EventsSettings(BaseSettings):
    model_config = _group("EVENTS")

    keepalive_seconds: float = Field(15.0, gt=0, description="Silence after which GET /v1/events sends a comment")
    retention_days: float = Field(7.0, gt=0, description="Events older than this are pruned (a resume can't reach)")


class ModelSettings(BaseSettings):
    model_config = _group("MODEL")

    default_alias: str = "default"
    cache_size: int = Field(2, ge=1, description="Models kept loaded per worker (LRU)")
    threads: int | None = Field(
        None, ge=1, description="Torch threads per model call; unset: OMP_NUM_THREADS, else every CPU of the process"
    )


class MetricsSettings(BaseSettings):
    model_config = _group("METRICS")

    worker_port: int | None = Field(None, ge=1, le=65535, description="`soundalike worker` serves /metrics here")
    worker_host: str = Field("127.0.0.1", description="Address the worker's metrics port binds to")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOUNDALIKE_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)

    def check_profile(self) -> None:
        """Refuse configurations that are unsafe for the chosen profile."""
        if self.env != "prod":
            return
        if self.database.embedded:
            raise ConfigError(
                "SOUNDALIKE_ENV=prod needs an external database: set SOUNDALIKE_DATABASE_URL "
                "(the embedded server is for development only)"
            )
        if self.auth.secret == DEFAULT_AUTH_SECRET:
            raise ConfigError(
                "SOUNDALIKE_ENV=prod refuses the default SOUNDALIKE_AUTH_SECRET: set it to a long random value"
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
