"""The items: audio in and out, imports, tracks and segments, tags, presets, lineage, archival."""
