"""Serving a stored clip: content negotiation (WAV / FLAC) and single HTTP byte ranges."""

from __future__ import annotations

import asyncio
import re

from litestar import Request, Response
from litestar.exceptions import HTTPException

from service.db.schema.models import AudioAsset
from service.domain.catalogue.audio import MEDIA_TYPES, wav_to_flac
from service.domain.errors import NotFound
from service.storage import BlobStore

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def audio_response(request: Request, store: BlobStore, asset: AudioAsset) -> Response[bytes]:
    """The clip (304 when the client's ``If-None-Match`` already names it), whole or one byte range."""
    path = store.path(asset.uri)
    if not path.exists():
        raise NotFound(f"the audio file of generation {asset.generation_id} is missing from the store")
    flac = "audio/flac" in request.headers.get("accept", "")
    media_type = MEDIA_TYPES["flac" if flac else "wav"]
    extension = media_type.split("/")[1]
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{asset.sha256}-{extension}"',
        "Content-Disposition": f'inline; filename="soundalike-{asset.generation_id}.{extension}"',
    }
    if _matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(b"", status_code=304, media_type=media_type, headers=headers)
    data = await asyncio.to_thread(path.read_bytes)
    if flac:
        data = await asyncio.to_thread(wav_to_flac, data)
    byte_range = request.headers.get("range")
    if byte_range is None:
        return Response(data, media_type=media_type, headers=headers)
    start, end = _parse_range(byte_range, len(data))
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(data[start : end + 1], status_code=206, media_type=media_type, headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names this ETag (or ``*``); weak tags compare by their value."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """Inclusive (start, end) of one ``bytes=`` range; 416 when it cannot be satisfied."""
    match = RANGE.match(header.strip())
    unsatisfiable = HTTPException(
        status_code=416,
        detail=f"range {header!r} is not satisfiable for {size} bytes (one bytes=start-end range)",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if not match or match.groups() == ("", ""):
        raise unsatisfiable
    first, last = match.groups()
    if first == "":
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start > end or start >= size:
        raise unsatisfiable
    return start, end
