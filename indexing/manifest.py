"""The manifest of one model's mirror: which index file is current and what it must contain.

The manifest is the commit point of a sync: a new index file is written under a fresh name first, and the
mirror switches to it only when the manifest naming it has been renamed into place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from indexing.errors import MirrorCorrupt

FORMAT_VERSION = 1
CHECKSUM_ALGORITHM = "sha256"


@dataclass(frozen=True)
class Manifest:
    model_id: int
    model_alias: str
    index_file: str  # file name inside the index directory
    count: int  # vectors in the index
    dim: int
    watermark: int  # xmin of the snapshot the mirror reflects: every change below it is applied
    checksum: str  # "sha256:<hex>" of the index file
    bytes: int
    built_at: str  # last full build (ISO 8601, UTC)
    synced_at: str  # last sync of any kind
    index_type: str = "IDMap2,Flat(IP) over L2-normalised vectors"
    format: int = FORMAT_VERSION
    # Incremental syncs write a small delta instead of the whole index: the vectors upserted since the base
    # file was written, and the ids removed from the base (every delta id is removed from the base too).
    delta_file: str | None = None
    delta_checksum: str | None = None
    delta_bytes: int = 0
    tombstones: tuple[int, ...] = ()

    def files(self) -> set[str]:
        return {self.index_file} | ({self.delta_file} if self.delta_file else set())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT_VERSION:
                raise MirrorCorrupt(f"{where} has format {data.get('format')!r}, expected {FORMAT_VERSION}")
            data["tombstones"] = tuple(data.get("tombstones", ()))
            return cls(**data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise MirrorCorrupt(f"{where} is unreadable ({exc}): run `soundalike index rebuild`") from None

    def advanced(self, watermark: int, now: datetime | None = None) -> Manifest:
        """The same index file, known to be current up to a later watermark."""
        return replace(self, watermark=watermark, synced_at=timestamp(now))


def should_compact(delta_entries: int, count: int, fraction: float = 0.1, minimum: int = 4096) -> bool:
    """Rewrite the whole index once the delta (upserts + tombstones) outgrows ``fraction`` of the mirror."""
    return delta_entries > max(minimum, fraction * count)


def checksum(data: bytes | memoryview) -> str:
    return f"{CHECKSUM_ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="seconds")
