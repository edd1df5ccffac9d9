"""Search cursors: the position after a page's last hit, bound to the search that handed it out.

A cursor holds the last hit's cosine distance and latent id, and a fingerprint of its search: the searched
model, the query vector, the excluded ids, the filters, the score threshold and the scan kind. Presented with
another search it is refused: its position means nothing there, and following it would silently skip results.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from service.domain.errors import InvalidInput

NOT_OURS = "cursor is not one this API handed out; start again without it"
OTHER_SEARCH = (
    "cursor belongs to another search (a different query, model, filter or score_threshold); page with the same "
    "body that returned it, or start again without it"
)


def fingerprint(model_id: int, vector: np.ndarray, exclude: Iterable[Any], *scope: Any) -> str:
    """What a cursor is bound to; ``scope`` holds the search's other settings (filters, threshold...)."""
    digest = hashlib.sha256(np.ascontiguousarray(vector, dtype=np.float32).tobytes())
    digest.update(repr((model_id, sorted(map(str, exclude)), scope)).encode())
    return digest.hexdigest()[:16]


def encode(distance: float, latent_id: int, bound_to: str) -> str:
    raw = json.dumps([distance, latent_id, bound_to]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, bound_to: str) -> tuple[float, int]:
    """The (distance, latent id) to continue after; refused unless the cursor came from this very search."""
    try:
        distance, latent_id, fingerprint_ = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = float(distance), int(latent_id)
        if not math.isfinite(position[0]) or not isinstance(fingerprint_, str):
            raise ValueError(distance)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("cursor", NOT_OURS) from exc
    if fingerprint_ != bound_to:
        raise InvalidInput("cursor", OTHER_SEARCH)
    return position
