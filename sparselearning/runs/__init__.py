"""A run on disk: its identity, its directory (layout, ownership, lock) and safe reads and writes of its files."""
