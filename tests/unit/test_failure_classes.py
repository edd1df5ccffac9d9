"""How an exception that ended a generation job is classified."""

import errno

import psycopg
import pytest
import sqlalchemy.exc

from service.domain.errors import InvalidInput
from service.domain.generation.failures import classify, mark_model_stage
from service.domain.models.model_cache import ModelLoadError


def from_model(exc: BaseException) -> BaseException:
    mark_model_stage(exc)
    return exc


def wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as cause:
            raise outer from cause
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("the source generations ['x'] have no latent any more"), "bad_input"),
        (InvalidInput("seed", "too big"), "bad_input"),
        (from_model(ModelLoadError("model 'x' cannot be loaded: no file")), "model_error"),
        (from_model(ValueError("model returned latents of shape (1, 3)")), "model_error"),
        (from_model(RuntimeError("shape mismatch")), "model_error"),
        (from_model(MemoryError()), "resource_exhaustion"),
        (from_model(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")), "resource_exhaustion"),
        (OSError(errno.ENOSPC, "No space left on device"), "resource_exhaustion"),
        (sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached"), "resource_exhaustion"),
        (
            wrapped(psycopg.errors.DiskFull("could not extend file"), RuntimeError("commit failed")),
            "resource_exhaustion",
        ),
        (psycopg.errors.TooManyConnections("too many clients"), "resource_exhaustion"),
        (from_model(psycopg.OperationalError("server closed the connection")), "infrastructure"),
        (wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), RuntimeError("x")), "infrastructure"),
        (OSError(errno.EIO, "Input/output error"), "infrastructure"),
        (KeyError("surprise"), "infrastructure"),
    ],
)
def test_classify(exc, expected):
    assert classify(exc) == expected
