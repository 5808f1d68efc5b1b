"""The on-disk format: snapshot folders and their manifest, the journal, the store lock, the zstd payloads and
the migration archive, and the file-system primitives (atomic writes, durable renames) they are written with.

Nothing here knows about Django or a database server; everything above writes to the store through it.
"""
