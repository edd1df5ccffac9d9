"""Errors raised by the model on bad input.

All are ``ValueError`` subclasses carrying ``field`` (the offending input's name)
so the API can turn them into 422 problem details without parsing messages.
"""

from __future__ import annotations


class ModelInputError(ValueError):
    """Base class: a value given to the model is unusable."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidAudioError(ModelInputError):
    """Audio that cannot be encoded: empty, too short, silent, NaN/inf, bad sample rate."""


class PromptError(ModelInputError):
    """A prompt with unknown or contradictory tags; ``suggestions`` lists close known tags."""

    def __init__(self, field: str, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(field, message)
        self.suggestions = suggestions or []


class ParameterRangeError(ModelInputError):
    """A numeric parameter (steps, guidance, strength, variance, ...) outside its range."""


def check_range(field: str, value: float, low: float, high: float) -> float:
    """Return ``value`` if ``low <= value <= high`` (and finite), else raise ParameterRangeError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterRangeError(field, f"{field}={value!r} is not a number; allowed range [{low}, {high}]") from None
    if not (low <= number <= high):  # also rejects NaN
        raise ParameterRangeError(field, f"{field}={value!r} is outside the allowed range [{low}, {high}]")
    return number
