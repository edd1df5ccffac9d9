import pytest

from service.errors import ConfigError
from service.settings import DEFAULT_AUTH_SECRET, Settings


def test_groups_read_their_own_prefix(monkeypatch):
    monkeypatch.setenv("SOUNDALIKE_DATABASE_URL", "postgresql://u:p@db:5432/x")
    monkeypatch.setenv("SOUNDALIKE_DATABASE_POOL_SIZE", "12")
    monkeypatch.setenv("SOUNDALIKE_SERVER_PORT", "9001")
    settings = Settings()
    assert settings.database.url == "postgresql://u:p@db:5432/x"
    assert settings.database.pool_size == 12 and not settings.database.embedded
    assert settings.server.port == 9001


def test_defaults_are_the_embedded_dev_setup(monkeypatch):
    for name in ("SOUNDALIKE_DATABASE_URL", "SOUNDALIKE_ENV"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.env == "dev" and settings.database.embedded
    settings.check_profile()  # dev accepts the embedded server and the default secret


def test_prod_refuses_embedded_database(monkeypatch):
    monkeypatch.delenv("SOUNDALIKE_DATABASE_URL", raising=False)
    monkeypatch.setenv("SOUNDALIKE_ENV", "prod")
    with pytest.raises(ConfigError, match="needs an external database"):
        Settings().check_profile()


def test_prod_refuses_default_secret(monkeypatch):
    monkeypatch.setenv("SOUNDALIKE_ENV", "prod")
    monkeypatch.setenv("SOUNDALIKE_DATABASE_URL", "postgresql://u:p@db/x")
    monkeypatch.setenv("SOUNDALIKE_AUTH_SECRET", DEFAULT_AUTH_SECRET)
    with pytest.raises(ConfigError, match="SOUNDALIKE_AUTH_SECRET"):
        Settings().check_profile()
    monkeypatch.setenv("SOUNDALIKE_AUTH_SECRET", "a-real-secret-of-some-length")
    Settings().check_profile()


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("SOUNDALIKE_SERVER_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        Settings()


def test_the_default_variants_cap_fits_in_the_default_queue(monkeypatch):
    """A batch larger than the queue limit could never be queued: the defaults must agree."""
    for name in ("SOUNDALIKE_JOBS_QUEUE_LIMIT", "SOUNDALIKE_JOBS_MAX_VARIANTS_PER_BATCH"):
        monkeypatch.delenv(name, raising=False)
    jobs = Settings().jobs
    assert jobs.max_variants_per_batch <= jobs.queue_limit
