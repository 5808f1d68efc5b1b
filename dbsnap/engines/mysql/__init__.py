"""MySQL and MariaDB: the engine (connections, tools, dump, drop), its swap restore and its schema description.

``engine.MySQLEngine`` is the class; ``connection`` (driver, option file, tools), ``programs`` (views, triggers,
routines, events), ``restore``, ``describe`` and ``sessions`` are its parts. The driver (mysqlclient, ``MySQLdb``)
is imported only in this package.
"""
