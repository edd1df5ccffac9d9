import json

import click
import pytest
from click.testing import CliRunner

from service.ml.cli import register
from service.ml.instruments import FAMILY_NAMES, held_out_program


@pytest.fixture
def group():
    cli = click.Group()
    register(cli)
    return cli


def test_commands_are_registered(group):
    assert {"corpus", "train", "eval"} <= set(group.commands)


def test_corpus_command_writes_labels_and_wavs(group, tmp_path, ml_cache):
    result = CliRunner().invoke(
        group, ["corpus", "--preset", "tiny", "--split", "validation", "--out", str(tmp_path), "--wav", "2"]
    )
    assert result.exit_code == 0, result.output
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert labels and {"family", "program", "bpm", "mode", "key", "drums", "seed"} <= set(labels[0])
    assert len(list(tmp_path.glob("*.wav"))) == 2


def test_train_rejects_unknown_preset(group, tmp_path):
    result = CliRunner().invoke(group, ["train", "--preset", "huge", "--out", str(tmp_path / "m.pt")])
    assert result.exit_code != 0 and "huge" in result.output


@pytest.mark.slow
def test_eval_writes_json_and_markdown(group, tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(group, ["eval", str(tiny_checkpoint), "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert 0.0 <= report["retrieval"]["family_precision_at_10"] <= 1.0
    assert report["reconstruction"]["mean_spectrum_baseline_l1"] > 0
    assert {t["metric"] for t in report["targets"]} >= {
        "retrieval.family_precision_at_10",
        "variants.monotonic",
    }
    by_family = report["retrieval_by_family"]
    assert set(by_family) == set(FAMILY_NAMES)
    assert all(row["held_out_program"] == held_out_program(family) for family, row in by_family.items())
    markdown = (tmp_path / "report.md").read_text()
    assert "| metric | value | target | met |" in markdown and "| held-out GM program |" in markdown
    for plot in ("training-curve.png", "transfer-variants.png", "retrieval-by-family.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
