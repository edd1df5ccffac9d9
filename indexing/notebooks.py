"""Run the exploration notebook headless (nbclient) against a throw-away embedded PostgreSQL with demo data.

``make notebooks`` and the slow test call this: start a server in a temp directory, migrate, bulk-load
synthetic clustered latents, sync and cluster, then execute the notebook with the settings pointing there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from indexing.clustering import cluster_model
from indexing.demo import load_demo
from indexing.scratch import scratch_database
from indexing.sync import connect, sync_model

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_latents.ipynb"
DEMO_ALIAS, DEMO_ROWS, DEMO_CLUSTERS = "demo", 3000, 12


def prepare_demo(url: str, index_dir: Path, alias: str = DEMO_ALIAS) -> None:
    """Demo latents (loaded once), a synced mirror and an active clustering run for ``alias``."""
    with connect(url) as conn:
        model = load_demo(conn, alias, DEMO_ROWS, DEMO_CLUSTERS, seed=0)
        conn.commit()
    sync_model(url, index_dir, model.model)
    cluster_model(url, index_dir, model.model, k=DEMO_CLUSTERS, nredo=3, sync_first=False)


def execute(env: dict[str, str], notebook: Path = NOTEBOOK, timeout: int = 300) -> nbformat.NotebookNode:
    """Execute ``notebook`` in a fresh kernel whose environment is ``env``; raises on any failing cell."""
    nb = nbformat.read(notebook, as_version=4)
    saved = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def notebook_env(app_url: str, migration_url: str, index_dir: Path, blob_dir: Path) -> dict[str, str]:
    return {
        "SOUNDALIKE_DATABASE_URL": app_url,
        "SOUNDALIKE_DATABASE_MIGRATION_URL": migration_url,
        "SOUNDALIKE_STORAGE_INDEX_DIR": str(index_dir),
        "SOUNDALIKE_STORAGE_BLOB_DIR": str(blob_dir),
        "SOUNDALIKE_NOTEBOOK_MODEL": DEMO_ALIAS,
        "MPLBACKEND": "Agg",
    }


def main(output: Path | None = None) -> Path:
    with scratch_database("notebooks") as db:
        prepare_demo(db.app_url, db.root / "index")
        nb = execute(notebook_env(db.app_url, db.migration_url, db.root / "index", db.root / "blobs"))
    output = output or Path("var/notebooks") / NOTEBOOK.name
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)
    return output


if __name__ == "__main__":
    path = main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(f"notebook executed; output with figures: {path}")
