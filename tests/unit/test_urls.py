import pytest

from service.db.server import urls
from service.errors import ConfigError


@pytest.mark.parametrize(
    "given",
    ["postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d", "postgres://u:p@h:5432/d"],
)
def test_any_postgres_spelling_becomes_psycopg(given):
    assert urls.sqlalchemy_url(given) == "postgresql+psycopg://u:p@h:5432/d"
    assert urls.libpq_url(given) == "postgresql://u:p@h:5432/d"


@pytest.mark.parametrize("given", ["mysql://u@h/d", "sqlite:///x.db", "not a url", "postgresql+asyncpg://u@h/d"])
def test_other_databases_are_refused(given):
    with pytest.raises(ConfigError, match="SOUNDALIKE_DATABASE_URL"):
        urls.sqlalchemy_url(given)


def test_describe_hides_the_password():
    assert urls.describe("postgresql://u:secret@h/d") == "u@h/d"
    assert "secret" not in urls.describe("postgresql://u:secret@/d?host=/tmp/sock")
