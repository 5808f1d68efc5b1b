"""PostgreSQL: the engine (connections, tools, dump, drop), its all-or-nothing restore and server-side clones.

``engine.PostgreSQLEngine`` is the class; ``restore``, ``clone`` and ``statements`` are its parts. psycopg is
imported only in this package.
"""
