"""The model registry: versions, checkpoints, loading, lookup, re-encoding and archiving spaces."""
