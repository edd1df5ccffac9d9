"""docs/walkthrough.md is executed as written: its Python block runs against the real app (worker, tiny model)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.integration.live_server import app_with_tiny_model

pytestmark = pytest.mark.slow
WALKTHROUGH = Path(__file__).resolve().parents[2] / "docs" / "walkthrough.md"


def python_block(markdown: str) -> str:
    [block] = re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)
    return block


def test_the_walkthrough_runs_as_written(database, tmp_path, tiny_pipeline, tiny_checkpoint, monkeypatch):
    code = python_block(WALKTHROUGH.read_text())
    with app_with_tiny_model(database, tmp_path, tiny_pipeline, tiny_checkpoint) as site:
        monkeypatch.setenv("SOUNDALIKE_URL", site["url"])
        monkeypatch.setenv("SOUNDALIKE_KEY", site["key"])
        monkeypatch.chdir(tmp_path)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(WALKTHROUGH), "exec"), {"__name__": "walkthrough"})
    output = printed.getvalue()
    print(output)
    assert "signed in as alice" in output
    assert "1. 12 of 12 clips succeeded" in output and (tmp_path / "first.wav").stat().st_size > 0
    assert len(re.findall(r"^   0\.\d{3}  ", output, flags=re.MULTILINE)) == 5
    assert "3. restyled: succeeded" in output and "descendants: ['style_transfer']" in output
    assert "4. variants: succeeded, 6 of 6 done" in output
    assert "5. refused: {'steps': " in output
