"""Errors as RFC 9457 problem details (``application/problem+json``); validation errors name the field."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from service.domain.errors import DomainError, InvalidInput, QueueFull
from service.errors import DatabaseError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`(?: - at `\$\.([^`]+)`)?")
AT_PATH = re.compile(r"at `\$\.([^`]+)`")


class FieldError(msgspec.Struct):
    field: str | None
    message: str | None
    source: str | None = None


class Problem(msgspec.Struct):
    """RFC 9457 problem details, as every error response is shaped."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem(
    status: int,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_in_message(message: str) -> str | None:
    """The body field a msgspec validation message is about: an unknown field by its own (dotted) name, else
    the ``$.path`` it points at."""
    unknown = UNKNOWN_FIELD.search(message)
    if unknown:
        name, parent = unknown.groups()
        return f"{parent}.{name}" if parent else name
    at = AT_PATH.search(message)
    return at.group(1) if at else None


def _field_errors(extra: Any) -> list[dict[str, Any]] | None:
    if not isinstance(extra, list):
        return None
    errors = []
    for item in extra:
        if isinstance(item, dict):
            field, message = item.get("key"), item.get("message")
            if field in (None, "data") and isinstance(message, str):  # "data": the whole body, say which field
                field = field_in_message(message) or field
            errors.append({"field": field, "message": message, "source": item.get("source")})
    return errors or None


def http_exception_handler(request: Request, exc: HTTPException) -> Response:
    detail = exc.detail
    headers = exc.headers
    if exc.status_code == 413:
        limit = request.app.state.settings.storage.max_upload_bytes
        detail = f"the request body is over the upload limit of {limit} bytes (SOUNDALIKE_STORAGE_MAX_UPLOAD_BYTES)"
    if exc.status_code == 429:
        detail, headers = _rate_limited(request, headers or {})
    return problem(exc.status_code, detail, _field_errors(exc.extra), headers=headers)


def _rate_limited(request: Request, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Which limit was hit and when to retry (the rate limiter sends only the RateLimit-* draft headers)."""
    limit = request.app.state.settings.server.rate_limit_per_minute
    retry_after = max(int(headers.get("RateLimit-Reset", "60")), 1)
    detail = (
        f"rate limit of {limit} requests per minute per API key exceeded (SOUNDALIKE_SERVER_RATE_LIMIT_PER_MINUTE); "
        f"retry in {retry_after} s"
    )
    return detail, {**headers, "Retry-After": str(retry_after)}


def domain_error_handler(request: Request, exc: DomainError) -> Response:
    errors = (
        [{"field": exc.field, "message": exc.message, "source": exc.source}] if isinstance(exc, InvalidInput) else None
    )
    headers = {"Retry-After": str(exc.retry_after_seconds)} if isinstance(exc, QueueFull) else None
    return problem(exc.status, exc.message, errors, headers=headers)


def model_input_error_handler(request: Request, exc: ValueError) -> Response:
    """The model's own input checks (audio, prompt, ranges) name the field and the allowed range."""
    field = getattr(exc, "field", None)
    return problem(422, str(exc), [{"field": field, "message": str(exc), "source": "body"}] if field else None)


def registry_error_handler(request: Request, exc: Exception) -> Response:
    """Registry refusals reaching the API from shared domain code (the registry's own routes map them too)."""
    from service.domain.models import registry
    from service.domain.models.model_cache import ModelLoadError

    if isinstance(exc, registry.InvalidModelInput):
        return problem(400, str(exc), [{"field": exc.field, "message": exc.reason, "source": "body"}])
    if isinstance(exc, ModelLoadError):
        return problem(503, str(exc))
    status = 404 if isinstance(exc, registry.ModelNotFound) else 409
    return problem(status, str(exc))


def database_error_handler(request: Request, exc: DatabaseError) -> Response:
    return problem(503, str(exc))


def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal error; the server log has the details")


def _model_input_error() -> type[ValueError]:
    from service.ml.errors import ModelInputError

    return ModelInputError


def _registry_errors() -> tuple[type[Exception], ...]:
    from service.domain.models.model_cache import ModelLoadError
    from service.domain.models.registry import RegistryError

    return RegistryError, ModelLoadError


EXCEPTION_HANDLERS = {
    HTTPException: http_exception_handler,
    **{error: registry_error_handler for error in _registry_errors()},
    DomainError: domain_error_handler,
    _model_input_error(): model_input_error_handler,
    DatabaseError: database_error_handler,
    Exception: unexpected_error_handler,
}
