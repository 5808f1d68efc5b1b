"""Database engines: one class per engine kind, chosen by an explicit mapping."""

from __future__ import annotations

import contextlib
import importlib
import threading

from ..errors import ConfigError
from ..project.compose import Compose
from ..project.databases import Database
from .base import Engine


def engine_for(db: Database, env: dict[str, str], compose: Compose | None = None) -> Engine:
    """The Engine instance for a database (its tools run in the compose db service when ``compose`` says so);
    ConfigError for kinds not supported yet."""
    engine = _engine_for(db, env)
    engine.compose = compose
    return engine


def _engine_for(db: Database, env: dict[str, str]) -> Engine:
    if db.kind == "postgresql":
        from .postgresql.engine import PostgreSQLEngine

        return PostgreSQLEngine(db, env)
    if db.kind == "sqlite":
        from .sqlite import SQLiteEngine

        return SQLiteEngine(db, env)
    if db.kind == "mysql":
        try:
            from .mysql.engine import MySQLEngine
        except ImportError as e:  # the optional driver: a clear line, never a traceback
            raise ConfigError(
                f"database {db.alias!r}: the mysql engine needs the mysqlclient driver ({e})",
                hint="pip install 'dbsnap[mysql]' (building it needs: apt install libmariadb-dev pkg-config)",
            ) from e
        return MySQLEngine(db, env)
    raise ConfigError(
        f"database {db.alias!r}: the {db.kind} engine is not supported yet (PostgreSQL, MySQL and SQLite are)"
    )


def engine_class(kind: str) -> type[Engine]:
    """The Engine class of a kind (for what needs no database: exporting and recognizing plain dumps)."""
    if kind == "postgresql":
        from .postgresql.engine import PostgreSQLEngine

        return PostgreSQLEngine
    if kind == "sqlite":
        from .sqlite import SQLiteEngine

        return SQLiteEngine
    if kind == "mysql":
        try:
            from .mysql.engine import MySQLEngine
        except ImportError as e:
            raise ConfigError(
                f"the mysql engine needs the mysqlclient driver ({e})",
                hint="pip install 'dbsnap[mysql]' (building it needs: apt install libmariadb-dev pkg-config)",
            ) from e
        return MySQLEngine
    raise ConfigError(f"the {kind} engine is not supported yet (PostgreSQL, MySQL and SQLite are)")


KINDS = ("postgresql", "sqlite", "mysql")


def plain_kind(head: bytes) -> str | None:
    """The engine kind whose plain dump starts with ``head`` (a file's first 64 bytes), else None. Needs no
    database driver: a MySQL dump is recognized without mysqlclient (importing it then says what is missing)."""
    from .mysql.plain import recognizes

    if recognizes(head):
        return "mysql"
    for kind in ("postgresql", "sqlite"):
        if engine_class(kind).recognizes(head):
            return kind
    return None


def preload() -> None:
    """Import the PostgreSQL engine (psycopg, about 0.1 s) in a thread: started while the project's discovery
    child runs, during which this process would only wait. Best effort: an import error shows up on real use."""

    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module(".postgresql.engine", __name__)

    threading.Thread(target=load, name="dbsnap-preload").start()
