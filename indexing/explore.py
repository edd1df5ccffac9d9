"""Helpers for ``notebooks/explore_latents.ipynb`` (the notebook only calls these; no logic lives in cells).

Reads as an operator: the whole catalogue of a model, not one caller's view.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.source import ModelRef, resolve_model
from indexing.sync import connect, read_mirror
from service.domain.discovery.clusters import never_clustered


@dataclass(frozen=True)
class Catalogue:
    url: str  # application-role URL
    index_dir: Path
    blob_dir: Path


@dataclass(frozen=True)
class RunView:
    model: ModelRef
    run_id: int
    k: int
    n_points: int
    inertia: float
    created_at: object
    latent_ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    xy: np.ndarray

    def summary(self) -> str:
        sizes = np.bincount(self.labels, minlength=self.k)
        return (
            f"model {self.model.alias}: run {self.run_id} ({self.created_at:%Y-%m-%d %H:%M}), k={self.k}, "
            f"{self.n_points} latents, inertia {self.inertia:.2f}, cluster sizes {sizes.min()}..{sizes.max()}"
        )


def catalogue_from_environment() -> Catalogue:
    """The database and directories the settings name (``make notebooks`` sets them for a throw-away server)."""
    from service.settings import Settings

    settings = Settings()
    if settings.database.url is None:
        raise RuntimeError("set SOUNDALIKE_DATABASE_URL (or run the notebook with `make notebooks`)")
    return Catalogue(settings.database.url, settings.storage.index_dir, settings.storage.blob_dir)


def notebook_model() -> str:
    return os.environ.get("SOUNDALIKE_NOTEBOOK_MODEL", "demo")


def load_run(catalogue: Catalogue, alias: str) -> RunView:
    """The active clustering run of a model with every live latent's cluster and map position."""
    with connect(catalogue.url) as conn:
        model = resolve_model(conn, alias)
        run = conn.execute(
            "SELECT id, k, n_points, inertia, created_at FROM cluster_runs WHERE model_id = %s "
            "ORDER BY id DESC LIMIT 1",
            (model.id,),
        ).fetchone()
        if run is None:
            raise LookupError(never_clustered(alias))
        rows = conn.execute(
            "SELECT a.latent_id, c.label, a.score, a.x, a.y FROM cluster_assignments a "
            "JOIN clusters c ON c.id = a.cluster_id JOIN latent_embeddings l ON l.id = a.latent_id "
            "JOIN generations g ON g.id = l.generation_id "
            "WHERE a.run_id = %s AND g.deleted_at IS NULL AND g.archived_at IS NULL ORDER BY a.latent_id",
            (run[0],),
        ).fetchall()
    data = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return RunView(
        model,
        run[0],
        run[1],
        run[2],
        run[3],
        run[4],
        data[:, 0].astype(np.int64),
        data[:, 1].astype(np.int64),
        data[:, 2],
        data[:, 3:5],
    )


def plot_map(run: RunView, ax=None, point_size: float = 4.0):
    """The music map: every latent at its PCA position, coloured by cluster, each cluster labelled at its mean."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 6.5))
    ax.scatter(run.xy[:, 0], run.xy[:, 1], c=run.labels, cmap="tab20", s=point_size, alpha=0.7, linewidths=0)
    for label in np.unique(run.labels):
        cx, cy = run.xy[run.labels == label].mean(axis=0)
        ax.annotate(str(label), (cx, cy), ha="center", va="center", fontsize=9, weight="bold")
    ax.set_title(f"{run.model.alias}: run {run.run_id}, k={run.k}, {len(run.latent_ids)} latents (PCA)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    return ax


def example_items(run: RunView, count: int = 3) -> list[int]:
    """The medoids (member closest to the centroid) of the ``count`` largest clusters."""
    sizes = np.bincount(run.labels, minlength=run.k)
    picks = []
    for label in np.argsort(-sizes)[:count]:
        members = np.flatnonzero(run.labels == label)
        picks.append(int(run.latent_ids[members[np.argmax(run.scores[members])]]))
    return picks


@dataclass(frozen=True)
class Neighbour:
    latent_id: int
    similarity: float
    generation_id: str
    cluster: int | None
    audio: Path | None  # the audio file when the generation has one in the blob store


def neighbours(catalogue: Catalogue, run: RunView, latent_id: int, k: int = 5) -> list[Neighbour]:
    """The ``k`` nearest latents (cosine, exact, from the FAISS mirror) of one latent, itself first."""
    current = read_mirror(catalogue.url, catalogue.index_dir, run.model, sync_first=False)
    query = current.index.reconstruct(int(latent_id)).reshape(1, -1)
    sims, ids = current.index.search(query, k + 1)
    ids, sims = ids[0][ids[0] >= 0], sims[0][ids[0] >= 0]
    labels = dict(zip(run.latent_ids.tolist(), run.labels.tolist(), strict=True))
    with connect(catalogue.url) as conn:
        rows = conn.execute(
            "SELECT l.id, l.generation_id::text, a.uri FROM latent_embeddings l "
            "LEFT JOIN audio_assets a ON a.generation_id = l.generation_id WHERE l.id = ANY(%s)",
            (ids.tolist(),),
        ).fetchall()
    info = {r[0]: (r[1], _audio_path(catalogue.blob_dir, r[2])) for r in rows}
    return [
        Neighbour(
            int(i), float(s), info.get(int(i), ("?", None))[0], labels.get(int(i)), info.get(int(i), ("?", None))[1]
        )
        for i, s in zip(ids, sims, strict=True)
    ]


def _audio_path(blob_dir: Path, uri: str | None) -> Path | None:
    if not uri:
        return None
    path = Path(uri.removeprefix("file://"))
    path = path if path.is_absolute() else Path(blob_dir) / path
    return path if path.is_file() else None


def show_neighbours(catalogue: Catalogue, run: RunView, latent_ids: list[int], k: int = 5) -> None:
    """Display, for each item, a table of its neighbours and an audio player per clip that has audio."""
    from IPython.display import Audio, Markdown, display

    any_audio = False
    for latent_id in latent_ids:
        found = neighbours(catalogue, run, latent_id, k)
        lines = [
            f"**Neighbours of latent {latent_id}**",
            "",
            "| latent | similarity | cluster | generation | audio |",
            "|---:|---:|---:|---|---|",
        ]
        for n in found:
            lines.append(
                f"| {n.latent_id} | {n.similarity:.3f} | {n.cluster} | `{n.generation_id}` | "
                f"{'yes' if n.audio else '—'} |"
            )
        display(Markdown("\n".join(lines)))
        for n in found:
            if n.audio is not None:
                any_audio = True
                display(Audio(filename=str(n.audio)))
    if not any_audio:
        display(
            Markdown(
                "_No audio for these items: they are synthetic latents (`soundalike index demo-data`) or "
                "their clips are not in the blob store. Generated clips get a player here._"
            )
        )
