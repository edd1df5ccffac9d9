"""The batch indexer: a FAISS mirror of ``latent_embeddings`` per model, kept in step through a change log
written by triggers, verified against the database, and offline clustering written back (docs/indexing.md).

Modules, one concern each:

- ``changes``: the change log, snapshot watermarks, pruning
- ``source``: model lookup and bounded-memory batch reads of latents (binary ``COPY``)
- ``manifest``: the manifest of a mirror and its checksum
- ``mirror``: mirror files (atomic write, locks, load with checksum check)
- ``sync``: full and incremental sync (``sync_all`` for the periodic job)
- ``verify``: mirror versus database
- ``clustering``: spherical k-means, PCA map, the run written back in one transaction
- ``duplicates``: near-duplicate pairs by range search
- ``demo``: synthetic clustered latents, bulk-loaded for development, notebooks and benchmarks
- ``explore``: helpers the notebook calls
- ``cli``: ``soundalike index ...``
"""
