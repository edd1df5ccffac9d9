"""Errors of the domain layer, free of HTTP; the API maps each to a problem-details status."""

from __future__ import annotations


class DomainError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """Unknown, deleted, or not visible to the caller (the same answer for all three)."""

    status = 404


class Forbidden(DomainError):
    """The caller's role does not allow this option (e.g. an admin-only evaluation scan)."""

    status = 403


class Conflict(DomainError):
    """The item is in a state that forbids the operation (e.g. cancelling a finished generation)."""

    status = 409


class InvalidInput(DomainError):
    """A request value is wrong; ``field`` names it."""

    status = 422

    def __init__(self, field: str, message: str, source: str = "body") -> None:
        super().__init__(message)
        self.field = field
        self.source = source


class MissingInput(InvalidInput):
    """A required value is absent (and nothing could fill it in); 400 like any body without a required field."""

    status = 400


class QueueFull(DomainError):
    status = 429

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
