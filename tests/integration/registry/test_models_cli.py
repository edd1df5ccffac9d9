"""``soundalike models ...`` end to end, in a subprocess against the real database."""

from pathlib import Path

import pytest

from service.domain.models import registry
from tests.integration.test_cli import assert_one_line_error, external, soundalike

pytestmark = pytest.mark.slow  # a subprocess per command (about 2 s each)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "legacy_models" / "model.list"


@pytest.fixture
def cli(database, empty_tables, tmp_path):
    env = external(database) | {"SOUNDALIKE_STORAGE_BACKUP_DIR": str(tmp_path / "backups")}

    def run(*args: str):
        return soundalike("models", *args, env=env)

    return run


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_registry_commands(cli, real_checkpoint, checkpoint):
    assert "no models registered" in ok(cli("list"))
    added = ok(cli("add", str(real_checkpoint("a.pt")), "--alias", "a", "--version", "v1", "--sample-rate", "16000"))
    assert "as 'a' (the default model)" in added
    ok(cli("add", str(real_checkpoint("b.pt")), "--alias", "b"))
    listing = ok(cli("list")).splitlines()
    header = ["id", "alias", "version", "source", "status", "generations", "calls", "p95-ms", "rss-MB", "dim", "file"]
    assert listing[0].split() == header
    assert listing[2].split()[:6] == ["1", "*", "a", "v1", "local", "READY"]
    assert listing[3].split()[:5] == ["2", "b", listing[3].split()[2], "local", "READY"]

    assert "model 2 is now 'bee'" in ok(cli("alias", "b", "bee"))
    assert "default model: 'bee'" in ok(cli("set-default", "bee"))
    assert "model 'a' archived" in ok(cli("archive", "a"))
    shown = ok(cli("show", "a"))
    assert "status:       ARCHIVED" in shown and "sample rate:  16000" in shown and "version:      v1" in shown
    assert "ARCHIVED" in ok(cli("list")) and "ARCHIVED" not in ok(cli("list", "--active"))
    assert_one_line_error(cli("set-default", "a"), "model 'a' is archived")
    assert_one_line_error(
        cli("archive", "bee"), "'bee' is the default and cannot be archived: make another model the default first"
    )
    assert_one_line_error(cli("delete", "bee"), "is the default and cannot be deleted")
    assert_one_line_error(cli("alias", "a", "bee"), "'bee' is already the alias of model 2")
    assert_one_line_error(cli("show", "nope"), "no model 'nope'")
    assert_one_line_error(cli("add", str(checkpoint("c.pt")), "--alias", "bad alias"), "alias: 'bad alias'")
    assert "READY again" in ok(cli("unarchive", "a"))
    assert "deleted" in ok(cli("delete", "a"))


def test_verify_reports_and_fails_on_a_tampered_checkpoint(cli, real_checkpoint):
    path = real_checkpoint("a.pt")
    ok(cli("add", str(path), "--alias", "a"))
    assert "ok" in ok(cli("verify"))
    path.write_bytes(b"tampered")
    result = cli("verify")
    assert_one_line_error(result, "1 of 1 checkpoints failed verification")
    assert "failed" in result.stdout and "sha256 mismatch" in result.stdout
    assert "FAILED" in ok(cli("list"))


def test_garbage_is_refused_by_add_and_failed_by_verify(cli, checkpoint, owner_conn):
    garbage = checkpoint("notes.pt", b"not a checkpoint\n" * 100)
    refused = cli("add", str(garbage), "--alias", "notes")
    assert_one_line_error(refused, "checkpoint_path: notes.pt is not a PyTorch checkpoint")
    assert owner_conn.execute("SELECT count(*) FROM models").fetchone()[0] == 0
    # a garbage row registered before checkpoints were checked: its hash matches, but it is no model
    owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version, checkpoint_path, checkpoint_sha256, is_default) "
        "VALUES ('local:x', 'notes', 'local', 'v1', %s, %s, true)",
        (str(garbage), registry.sha256_file(garbage)),
    )
    result = cli("verify")
    assert_one_line_error(result, "1 of 1 checkpoints failed verification")
    assert "is not a PyTorch checkpoint" in result.stdout
    assert owner_conn.execute("SELECT status FROM models").fetchone()[0] == "FAILED"


def test_import_list_refuses_then_dry_runs_then_imports_once(cli, tmp_path):
    refused = cli("import-list", str(FIXTURE))
    assert_one_line_error(refused, "10 invalid lines: nothing was imported")
    assert "line 11: expected 6 fields" in refused.stdout
    assert "line 19: mixed line endings: this line ends with CRLF" in refused.stdout
    assert "no models registered" in ok(cli("list"))

    dry = ok(cli("import-list", str(FIXTURE), "--dry-run", "--skip-invalid"))
    assert "dry run: would import 9 models; nothing written" in dry and "local:piano/v2" in dry
    assert "no models registered" in ok(cli("list"))

    imported = ok(cli("import-list", str(FIXTURE), "--skip-invalid"))
    assert "Result: imported 9 models in one transaction (backup taken before: " in imported
    assert "RUNNING -> READY" in imported and "import (alias 'lofi' is the alias of line 4)" in imported
    assert len(list((tmp_path / "backups").glob("before-import-list-*.dump"))) == 1
    listing = ok(cli("list"))
    assert all(alias in listing for alias in ("* small", "lofi-ft", "piano-ema:v2", "local:piano/v2"))

    again = ok(cli("import-list", str(FIXTURE), "--skip-invalid"))
    assert "nothing to import: 9 models in the file already registered; no changes made" in again
    assert len(list((tmp_path / "backups").glob("*.dump"))) == 1


def test_import_list_of_a_missing_or_binary_file(cli, tmp_path):
    assert_one_line_error(cli("import-list", str(tmp_path / "nope.list")), "no legacy model list at")
    binary = tmp_path / "model.list"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = cli("import-list", str(binary))
    assert_one_line_error(result, "1 invalid line")
    assert "binary file (NUL byte at offset 8)" in result.stdout
