"""A throw-away embedded PostgreSQL, provisioned and migrated: for ``make notebooks`` and the benchmarks."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scratch:
    root: Path  # a temp directory (removed afterwards) for the server and any files
    app_url: str
    migration_url: str


@contextmanager
def scratch_database(name: str) -> Iterator[Scratch]:
    from service.db.schema import migrate
    from service.db.server.embedded import EmbeddedPostgres
    from service.db.server.provision import provision
    from service.settings import DatabaseSettings

    with tempfile.TemporaryDirectory(prefix=f"soundalike-{name}-") as tmp:
        root = Path(tmp)
        db = DatabaseSettings(name=name)
        server = EmbeddedPostgres(root / "pg")
        server.start()
        try:
            provision(server.url(driver=""), db)
            scratch = Scratch(root, server.url(db.app_role, db.name), server.url(db.owner_role, db.name))
            migrate.upgrade(scratch.migration_url, db.app_role)
            yield scratch
        finally:
            server.stop()
