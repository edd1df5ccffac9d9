"""Errors that carry a one-line, actionable message for operators (the CLI prints them without a traceback)."""


class SoundalikeError(Exception):
    """Base class: the message says what is wrong and what to do."""


class ConfigError(SoundalikeError):
    """The configuration cannot work (bad URL, unsafe prod settings, port in use...)."""


class DatabaseError(SoundalikeError):
    """The database is unreachable, lacks pgvector, or its schema is not at the code's head."""
