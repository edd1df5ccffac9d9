"""Request checks every route shares, run before the handler: unknown query parameters and NUL characters.

Both answer 400 problem details naming the parameter or field. NUL (``\\x00``) is refused anywhere in the
query, the path, a JSON body or a form field because PostgreSQL text cannot hold it (it used to surface as a
500 from the database driver).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from litestar import Litestar, Request
from litestar.datastructures import UploadFile
from litestar.exceptions import ValidationException

from service.domain.pagination import MAX_BIGINT

NUL = "\x00"
JSON_NUL = b"\\u0000"  # how JSON writes a NUL inside a string
MAX_INT = 2**31 - 1  # ids in the database are bigint (MAX_BIGINT: clusters, latents) or integer (runs, models)
__all__ = ["MAX_BIGINT", "MAX_INT", "check_request", "query_parameter_names"]


def query_parameter_names(app: Litestar) -> dict[int, frozenset[str]]:
    """The query parameters each route handler declares (including its dependencies'), by handler id."""
    names: dict[int, frozenset[str]] = {}
    for route in app.routes:
        for handler, kwargs_model in getattr(route, "route_handler_map", {}).values():
            names[id(handler)] = frozenset(p.field_alias for p in kwargs_model.expected_query_params)
    return names


async def check_request(request: Request) -> None:
    """Refuse unknown query parameters and NUL characters, naming where they are (``before_request``)."""
    if request.method == "OPTIONS":
        return
    _check_query_names(request)
    for field, source, value in _texts(request):
        if NUL in value:
            raise _refusal(field, source, f"{field} contains a NUL (0x00) character, which text values cannot hold")
    for field, value in await _body_texts(request):
        if NUL in value:
            raise _refusal(field, "body", f"{field} contains a NUL (0x00) character, which text values cannot hold")


def _check_query_names(request: Request) -> None:
    known = request.app.state.query_parameter_names.get(id(request.route_handler))
    if known is None:
        return
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        names = ", ".join(unknown)
        raise _refusal(unknown[0], "query", f"unknown query parameter(s) {names}; this route takes {allowed}")


def _texts(request: Request) -> Iterator[tuple[str, str, str]]:
    for name, value in request.query_params.multi_items():
        yield name, "query", name + value
    for name, value in request.path_params.items():
        yield name, "path", str(value)


async def _body_texts(request: Request) -> list[tuple[str, str]]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await request.body()
        if JSON_NUL not in body:  # a JSON string can hold a NUL only as this escape: skip decoding the rest
            return []
        try:
            return list(_strings(json.loads(body), "body"))
        except ValueError:
            return []  # malformed JSON: the handler's own parsing names it
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        return [(name, name + value) for name, value in form.multi_items() if not isinstance(value, UploadFile)]
    return []


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a decoded JSON document (keys too), with a dotted path naming where it is."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", key
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _refusal(field: str, source: str, message: str) -> ValidationException:
    field = field.replace(NUL, "\\x00").removeprefix("body.")
    message = message.replace(NUL, "\\x00")
    return ValidationException(message, extra=[{"key": field, "message": message, "source": source}])
