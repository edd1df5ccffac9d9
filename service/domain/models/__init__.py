"""The model registry: versions, checkpoints, loading, lookup, re-encoding and archiving spaces."""

from service.domain.models import default_cache  # noqa: F401  (every process that changes models notifies its change)
