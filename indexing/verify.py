"""Verify: does a model's mirror match the database (the source of truth)?

Reads the mirror (checksum-checked) and, in one snapshot, every live latent of the model. Latents logged at
or above the mirror's watermark are *pending* (the next sync applies them) and are not drift; every other
latent must be in the mirror with the same unit vector, and the mirror must hold nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from indexing import changes, mirror
from indexing.errors import MirrorCorrupt
from indexing.source import ModelRef, iter_live_latents
from indexing.sync import connect

VECTOR_TOLERANCE = 1e-5  # max |difference| per component between the mirror and the normalised DB vector
SAMPLE = 10  # ids quoted per kind of drift


@dataclass
class VerifyReport:
    model: str
    status: str  # "clean", "drift", "corrupt" or "missing"
    db_count: int = 0
    mirror_count: int = 0
    pending: int = 0
    missing: list[int] = field(default_factory=list)  # live in the DB, absent from the mirror (sample)
    extra: list[int] = field(default_factory=list)  # in the mirror, not live in the DB (sample)
    mismatched: list[int] = field(default_factory=list)  # vector differs (sample)
    missing_count: int = 0
    extra_count: int = 0
    mismatched_count: int = 0
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "clean"

    def summary(self) -> str:
        if self.status in ("corrupt", "missing"):
            return f"{self.model}: {self.status.upper()}: {self.message}"
        line = (
            f"{self.model}: {self.status.upper()}: db {self.db_count}, mirror {self.mirror_count}, "
            f"pending {self.pending}, missing {self.missing_count}, extra {self.extra_count}, "
            f"mismatched {self.mismatched_count}"
        )
        for kind in ("missing", "extra", "mismatched"):
            ids = getattr(self, kind)
            if ids:
                line += f"\n  {kind} ids (first {len(ids)}): {', '.join(map(str, ids))}"
        return line


def verify_model(url: str, index_dir: Path, model: ModelRef, progress=None) -> VerifyReport:
    started = time.perf_counter()
    report = VerifyReport(model=model.alias, status="clean")
    with mirror.locked(index_dir, model.id, exclusive=False):
        try:
            current = mirror.load(index_dir, model.id)
        except MirrorCorrupt as exc:
            report.status, report.message = "corrupt", str(exc)
            return report
        if current is None:
            report.status = "missing"
            report.message = "no mirror yet: run `soundalike index sync`"
            return report
        report.mirror_count = current.index.ntotal
        mirror_ids = current.ids()
        with connect(url) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            pending = np.asarray(changes.changed_latent_ids(conn, model.id, current.manifest.watermark), dtype=np.int64)
            report.pending = len(pending)
            seen = _compare(conn, model, current, mirror_ids, pending, report, progress)
            conn.rollback()
    extra = mirror_ids[~np.isin(mirror_ids, seen) & ~np.isin(mirror_ids, pending)]
    report.extra_count, report.extra = len(extra), sorted(extra.tolist())[:SAMPLE]
    if report.missing_count or report.extra_count or report.mismatched_count:
        report.status = "drift"
    report.seconds = time.perf_counter() - started
    return report


def _compare(conn, model, current, mirror_ids, pending, report, progress) -> np.ndarray:
    """Check every live DB latent against the mirror, batch by batch; returns the ids seen in the DB."""
    tick = progress(report.mirror_count) if progress else None
    seen = []
    for ids, vectors in iter_live_latents(conn, model.id):
        report.db_count += len(ids)
        seen.append(ids)
        settled = ~np.isin(ids, pending)
        ids, vectors = ids[settled], vectors[settled]
        present = np.isin(ids, mirror_ids)
        _note(report, "missing", ids[~present])
        ids, vectors = ids[present], vectors[present]
        if len(ids):
            faiss.normalize_L2(vectors)
            stored = current.index.reconstruct_batch(ids)
            bad = np.abs(stored - vectors).max(axis=1) > VECTOR_TOLERANCE
            _note(report, "mismatched", ids[bad])
        if tick:
            tick(int(settled.sum()))
    return np.concatenate(seen) if seen else np.empty(0, dtype=np.int64)


def _note(report: VerifyReport, kind: str, ids: np.ndarray) -> None:
    if not len(ids):
        return
    setattr(report, f"{kind}_count", getattr(report, f"{kind}_count") + len(ids))
    sample = getattr(report, kind)
    sample.extend(ids[: SAMPLE - len(sample)].tolist())
