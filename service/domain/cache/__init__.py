"""A read cache for hot reads (presets by id, an item's public neighbours), in front of the database.

``store.ReadCache`` keeps values in named spaces, each with a TTL (a safety net: every write that changes a
value forgets it explicitly). Its backend is the shared Redis-compatible server when ``SOUNDALIKE_CACHE_URL`` is
set (the client of ``access.shared_state``, so every API process reads and invalidates the same entries), else a
dict in the process. ``neighbours`` wraps the "sounds like this generation" read of ``discovery.search``.
"""
