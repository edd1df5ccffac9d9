"""Importing the legacy model.list fixture into a real database: refusal, dry run, import, idempotency,
conflicts, and the backup that is restored when the import fails half-way."""

import shutil
from pathlib import Path

import pytest

from service.db.engine import connect_sync, create_engine, session_factory
from service.db.schema import migrate
from service.domain.models import legacy_model_list as legacy
from service.domain.models import registry
from service.settings import DatabaseSettings

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "legacy_models"
EXPECTED_ALIASES = {
    "musicgen-small": "small",
    "musicgen-medium": "medium",
    "stable-audio-open": "sao",
    "lofi-ft-2023": "lofi",
    "lofi-ft-2024": "lofi-ft",
    "piano-v2": "local:piano/v2",
    "piano-v2-ema": "piano-ema:v2",
    "drums-v2": "v2",
    "piano-v2-old": "piano:v2",
}


@pytest.fixture(scope="module")
def import_db(make_database):
    """A database of its own: a failed import restores a whole backup into it."""
    handle, settings = make_database("registry_import")
    migrate.upgrade(handle.migration_url, settings.app_role)
    return handle


@pytest.fixture
def owner(import_db):
    with connect_sync(import_db.migration_url, autocommit=True) as conn:
        conn.execute("TRUNCATE models, generations, latent_embeddings, audio_assets, api_keys RESTART IDENTITY CASCADE")
        yield conn


@pytest.fixture
async def sessions(import_db, owner):
    engine = create_engine(import_db.app_url, DatabaseSettings())
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def legacy_dir(tmp_path) -> Path:
    """A copy of the fixture (tests may edit it)."""
    return Path(shutil.copytree(FIXTURE_DIR, tmp_path / "legacy"))


async def run_import(sessions, import_db, path: Path, backup_dir: Path, **options) -> legacy.ImportReport:
    parsed = legacy.read_legacy_list(path)
    async with sessions() as session:
        return await legacy.import_legacy_list(
            session, parsed, migration_url=import_db.migration_url, backup_dir=backup_dir, **options
        )


def registry_rows(owner) -> dict[str, tuple]:
    rows = owner.execute("SELECT source_id, alias, source_type, author_repo, version, status, is_default FROM models")
    return {row[0]: row[1:] for row in rows.fetchall()}


async def test_invalid_lines_refuse_the_whole_import(sessions, import_db, owner, legacy_dir, tmp_path):
    report = await run_import(sessions, import_db, legacy_dir / "model.list", tmp_path / "backups")
    assert report.outcome == "refused" and not report.ok
    assert [e.line for e in report.errors] == list(range(11, 21))
    assert "10 invalid lines: nothing was imported" in report.message
    assert registry_rows(owner) == {}
    assert not (tmp_path / "backups").exists()
    text = legacy.format_report(report)
    assert "line 15: alias 'musicgen-medium' is the model_id of line 2" in text and "Mapping:" not in text


async def test_dry_run_shows_the_mapping_and_writes_nothing(sessions, import_db, owner, legacy_dir, tmp_path):
    report = await run_import(
        sessions, import_db, legacy_dir / "model.list", tmp_path / "backups", dry_run=True, skip_invalid=True
    )
    assert report.outcome == "dry-run" and report.ok
    assert {p.entry.model_id: p.alias for p in report.planned} == EXPECTED_ALIASES
    assert registry_rows(owner) == {} and not (tmp_path / "backups").exists()
    assert "would become the default" in legacy.format_report(report)


async def test_import_skipping_invalid_lines_then_again_changes_nothing(
    sessions, import_db, owner, legacy_dir, tmp_path
):
    backups = tmp_path / "backups"
    report = await run_import(sessions, import_db, legacy_dir / "model.list", backups, skip_invalid=True)
    assert report.outcome == "imported", report.message
    assert report.backup is not None and report.backup.parent == backups and report.backup.stat().st_size > 0
    rows = registry_rows(owner)
    assert {source_id: row[0] for source_id, row in rows.items()} == EXPECTED_ALIASES
    assert rows["musicgen-small"][-1] is True  # no default yet: the first imported model becomes it
    assert rows["musicgen-medium"] == ("medium", "remote", "facebook/musicgen-medium", "main", "READY", False)
    assert rows["lofi-ft-2024"] == ("lofi-ft", "imported", None, "imported", "READY", False)
    assert sum(row[-1] for row in rows.values()) == 1
    metadata, config = owner.execute(
        "SELECT metadata, config_path FROM models WHERE source_id = 'musicgen-medium'"
    ).fetchone()
    assert metadata["legacy"]["status"] == "RUNNING" and metadata["legacy"]["line"] == 2
    assert config == str(legacy_dir / "configs/facebook/musicgen-medium/config.yaml")

    again = await run_import(sessions, import_db, legacy_dir / "model.list", backups, skip_invalid=True)
    assert again.outcome == "unchanged" and again.ok
    assert "nothing to import: 9 models in the file already registered; no changes made" in again.message
    assert registry_rows(owner) == rows
    assert list(backups.iterdir()) == [report.backup]  # no second backup for a run that writes nothing


async def test_existing_models_count_as_taken_and_conflicting_lines_are_reported(
    sessions, import_db, owner, legacy_dir, tmp_path, checkpoint
):
    async with sessions() as session:
        await registry.add_model(session, checkpoint("mine.pt"), "small")
        await session.commit()
    listing = legacy_dir / "model.list"
    report = await run_import(sessions, import_db, listing, tmp_path / "b", skip_invalid=True)
    assert report.outcome == "imported"
    assert registry_rows(owner)["musicgen-small"][0] == "config"  # 'small' was taken: the file stem
    assert report.new_default is None  # the registry already had its default

    moved = listing.read_text().replace("configs/local/drums/v2.yaml", "configs/local/piano/v2.yaml")
    listing.write_text(moved)
    report = await run_import(sessions, import_db, listing, tmp_path / "b")
    assert report.outcome == "refused"
    conflict = next(e for e in report.errors if e.line == 8)
    assert "model_id 'drums-v2' is already registered" in conflict.reason and "config path" in conflict.reason


async def test_failure_half_way_restores_the_backup(sessions, import_db, owner, legacy_dir, tmp_path, checkpoint):
    async with sessions() as session:
        await registry.add_model(session, checkpoint("keep.pt"), "keep")
        await session.commit()
    before = registry_rows(owner)

    def progress(done: int, total: int) -> None:
        if done == 3:
            # Something written after the backup, outside the import's transaction: only a restore removes it.
            owner.execute("INSERT INTO api_keys (key_hash, prefix, owner, role) VALUES ('h', 'sk_x', 'eve', 'admin')")
            raise OSError("disk full")

    report = await run_import(
        sessions, import_db, legacy_dir / "model.list", tmp_path / "backups", skip_invalid=True, progress=progress
    )
    assert report.outcome == "failed" and not report.ok
    assert "import failed at line 3 (disk full)" in report.message
    assert f"the database was restored from the backup {report.backup}" in report.message
    assert registry_rows(owner) == before
    assert owner.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 0

    async with sessions() as session:  # the restored database works as before
        assert (await registry.resolve_alias(session, None)).alias == "keep"
    retry = await run_import(sessions, import_db, legacy_dir / "model.list", tmp_path / "backups", skip_invalid=True)
    assert retry.outcome == "imported" and len(registry_rows(owner)) == 10


async def test_no_backup_no_import(sessions, import_db, owner, legacy_dir, tmp_path):
    not_a_dir = tmp_path / "backups"
    not_a_dir.write_text("a file where the backup directory should be")
    report = await run_import(sessions, import_db, legacy_dir / "model.list", not_a_dir, skip_invalid=True)
    assert report.outcome == "failed" and report.backup is None
    assert f"could not take the backup in {not_a_dir}" in report.message and "nothing was written" in report.message
    assert registry_rows(owner) == {}


async def test_a_model_id_equal_to_a_registered_alias_is_refused(
    sessions, import_db, owner, legacy_dir, tmp_path, checkpoint
):
    async with sessions() as session:
        await registry.add_model(session, checkpoint("x.pt"), "drums-v2")
        await session.commit()
    report = await run_import(sessions, import_db, legacy_dir / "model.list", tmp_path / "b", dry_run=True)
    line_8 = next(e for e in report.errors if e.line == 8)
    assert "model_id 'drums-v2' is the alias of a registered model" in line_8.reason
    assert report.outcome == "refused"


async def test_a_file_without_valid_lines_imports_nothing_even_skipping(sessions, import_db, owner, tmp_path):
    listing = tmp_path / "model.list"
    listing.write_bytes(b"only three fields\r\n")
    report = await run_import(sessions, import_db, listing, tmp_path / "b", skip_invalid=True)
    assert report.outcome == "refused" and "no valid model lines" in report.message
    assert registry_rows(owner) == {} and not (tmp_path / "b").exists()
