"""Indexer errors: one-line operator messages (the CLI prints them as ``error: ...``)."""

from service.errors import SoundalikeError


class IndexingError(SoundalikeError):
    """Bad input or state the operator can fix (unknown model, k too large, empty model...)."""


class MirrorCorrupt(IndexingError):
    """A mirror file does not match its manifest (checksum, size, count)."""
