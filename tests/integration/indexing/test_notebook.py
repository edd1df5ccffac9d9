"""The exploration notebook runs headless against the real database, as `make notebooks` runs it."""

import pytest

from indexing.notebooks import execute, notebook_env, prepare_demo


@pytest.mark.slow
def test_explore_latents_notebook_executes(database, app_conn, tmp_path):
    prepare_demo(database.app_url, tmp_path / "index")
    nb = execute(notebook_env(database.app_url, database.migration_url, tmp_path / "index", tmp_path / "blobs"))
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the map
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "k=12, 3000 latents" in text and "Neighbours of latent" in text and "No audio for these items" in text
