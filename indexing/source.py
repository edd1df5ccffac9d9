"""The source of truth: models by alias, and live latents read in bounded batches over binary ``COPY``.

A latent is *live* when its generation is neither soft-deleted (``deleted_at``) nor archived
(``archived_at``); only live latents belong in a mirror, a clustering run or a map.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import psycopg
from psycopg import sql

from indexing.errors import IndexingError

T = TypeVar("T")
LIVE = "g.deleted_at IS NULL AND g.archived_at IS NULL"
BATCH_ROWS = 16384
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


@dataclass(frozen=True)
class ModelRef:
    id: int
    alias: str
    latent_dim: int


def resolve_model(conn: psycopg.Connection, alias: str) -> ModelRef:
    """The model with this alias, or a clear error listing the known ones."""
    row = conn.execute("SELECT id, alias, latent_dim FROM models WHERE alias = %s", (alias,)).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("SELECT alias FROM models ORDER BY alias LIMIT 20").fetchall()]
        hint = f"known aliases: {', '.join(known)}" if known else "there are no models yet"
        raise IndexingError(f"unknown model alias {alias!r} ({hint})")
    return ModelRef(*row)


def models_with_latents(conn: psycopg.Connection) -> list[ModelRef]:
    """Every model that has (or had: the change log remembers it) latents, for ``sync_all``."""
    rows = conn.execute(
        "SELECT id, alias, latent_dim FROM models m WHERE EXISTS (SELECT 1 FROM latent_embeddings l "
        "WHERE l.model_id = m.id) OR EXISTS (SELECT 1 FROM latent_changes c WHERE c.model_id = m.id) ORDER BY id"
    ).fetchall()
    return [ModelRef(*r) for r in rows]


def count_live(conn: psycopg.Connection, model_id: int) -> int:
    return conn.execute(
        f"SELECT count(*) FROM latent_embeddings l JOIN generations g ON g.id = l.generation_id "
        f"WHERE l.model_id = %s AND {LIVE}",
        (model_id,),
    ).fetchone()[0]


def iter_live_latents(
    conn: psycopg.Connection,
    model_id: int,
    ids: Sequence[int] | None = None,
    batch_rows: int = BATCH_ROWS,
    part: tuple[int, int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(ids int64[n], vectors float32[n, d])`` batches of the model's live latents (all, or only ``ids``;
    ``part=(i, n)`` keeps the latents whose id is ``i`` modulo ``n``, for parallel readers).

    Reads ``COPY (SELECT ...) TO STDOUT (FORMAT BINARY)`` and decodes whole batches of fixed-width records
    with numpy, so memory stays at about ``batch_rows`` vectors whatever the catalogue size.
    """
    if ids is not None and len(ids) == 0:
        return
    query = sql.SQL(
        "COPY (SELECT l.id, l.embedding FROM latent_embeddings l JOIN generations g ON g.id = l.generation_id "
        "WHERE l.model_id = {model} AND " + LIVE + "{only}{part}) TO STDOUT (FORMAT BINARY)"
    ).format(
        model=sql.Literal(model_id),
        only=sql.SQL(" AND l.id = ANY({})").format(sql.Literal(list(ids))) if ids is not None else sql.SQL(""),
        part=sql.SQL(" AND l.id % {} = {}").format(sql.Literal(part[1]), sql.Literal(part[0])) if part else sql.SQL(""),
    )
    decoder = _CopyDecoder(batch_rows)
    with conn.cursor() as cur, cur.copy(query) as copy:
        for chunk in copy:
            yield from decoder.feed(chunk)
    yield from decoder.finish()


def prefetched(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``batches`` in a background thread, ``depth`` batches ahead (memory stays bounded).

    The database read (socket waits, numpy decoding) then overlaps with what the consumer does per batch
    (FAISS releases the GIL while it normalises and adds). The producer must not share its connection.
    """
    return merged([batches], depth)


def merged(sources: Sequence[Iterator[T]], depth: int = 2) -> Iterator[T]:
    """Items of several iterators, each drained by its own thread, in arrival order (``depth`` queued at most).

    An exception in any source is raised in the consumer; when the consumer stops, the threads stop too."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce(source: Iterator[T]) -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put(exc)

    workers = [threading.Thread(target=produce, args=(s,), name="latent-reader", daemon=True) for s in sources]
    for worker in workers:
        worker.start()
    try:
        remaining = len(workers)
        while remaining:
            item = slots.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        while any(w.is_alive() for w in workers):  # unblock producers waiting on a full queue
            with contextlib.suppress(queue.Empty):
                slots.get_nowait()
            for worker in workers:
                worker.join(timeout=0.05)


class _CopyDecoder:
    """Decodes PostgreSQL binary COPY rows of (bigint, vector) into numpy batches."""

    def __init__(self, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self.buffer = bytearray()
        self.header_done = False
        self.dtype: np.dtype | None = None

    def feed(self, chunk: bytes | memoryview) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.buffer += chunk
        if not self.header_done:
            if len(self.buffer) < 19:
                return
            if bytes(self.buffer[:11]) != COPY_SIGNATURE:
                raise IndexingError("unexpected COPY stream from the database (not PGCOPY binary)")
            extension = int.from_bytes(self.buffer[15:19], "big")
            del self.buffer[: 19 + extension]
            self.header_done = True
        if self.dtype is None and len(self.buffer) >= 20:
            self.dtype = _row_dtype(int.from_bytes(self.buffer[18:20], "big"))
        if self.dtype is not None and len(self.buffer) >= self.batch_rows * self.dtype.itemsize:
            yield self._take(len(self.buffer) // self.dtype.itemsize)

    def finish(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.buffer[-2:] == b"\xff\xff":  # trailer
            del self.buffer[-2:]
        if self.dtype is not None and self.buffer:
            if len(self.buffer) % self.dtype.itemsize:
                raise IndexingError("truncated COPY stream from the database")
            yield self._take(len(self.buffer) // self.dtype.itemsize)

    def _take(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        size = rows * self.dtype.itemsize
        records = np.frombuffer(bytes(self.buffer[:size]), dtype=self.dtype)
        del self.buffer[:size]
        if (records["fields"] != 2).any():
            raise IndexingError("unexpected COPY row shape from the database")
        return records["id"].astype(np.int64), records["vector"].astype(np.float32)


def _row_dtype(dim: int) -> np.dtype:
    """One binary COPY row: field count, (len, int8 id), (len, vector header, dim big-endian float32)."""
    return np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i8"),
            ("vec_len", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("vector", ">f4", (dim,)),
        ]
    )
