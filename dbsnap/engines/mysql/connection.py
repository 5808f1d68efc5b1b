"""Connections, the credentials option file and the client tools of the MySQL/MariaDB engine.

dbsnap's own connections use mysqlclient (``MySQLdb``), the driver Django's mysql backend supports, so a project
that runs on Django runs dbsnap too and one driver is installed. The tools (``mariadb-dump``/``mysqldump``,
``mariadb``/``mysql``) get the credentials in a 0600 option file passed with ``--defaults-extra-file``: never on
the command line (visible in ``ps``), never in the manifest.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import MySQLdb

from ...errors import ExternalError
from ..base import first_line, run, tool_command

# Error codes of the server and client library that the engine reacts to.
ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
ER_LOCK_WAIT_TIMEOUT = 1205
ER_KILL_DENIED = 1095
ER_NO_SUCH_THREAD = 1094
ER_LOCK_DEADLOCK = 1213
ER_STATEMENT_TIMEOUT = (1969, 3024)  # MariaDB max_statement_time, MySQL max_execution_time
CR_CONN_ERRORS = (2002, 2003, 2005, 2006, 2013)

# Table types that hold rows (MariaDB's system-versioned tables too); sequences move with them in a swap.
DATA_TYPES = ("BASE TABLE", "SYSTEM VERSIONED")
MOVED_TYPES = (*DATA_TYPES, "SEQUENCE")

# Django OPTIONS that mysqlclient understands and dbsnap passes on (charset is always utf8mb4 for dbsnap).
_CONNECT_OPTIONS = ("unix_socket", "read_default_file", "read_default_group", "ssl", "ssl_mode")

# The tools, by flavour: MariaDB's names first on a MariaDB server (MariaDB 11 drops the mysql* links).
TOOLS = {
    "dump": {"var": "DBSNAP_MYSQLDUMP", "mariadb": ("mariadb-dump", "mysqldump"), "mysql": ("mysqldump",)},
    "client": {"var": "DBSNAP_MYSQL", "mariadb": ("mariadb", "mysql"), "mysql": ("mysql",)},
}


def qi(name: str) -> str:
    """A backquoted MySQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def error_code(e: BaseException) -> int | None:
    args = getattr(e, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def error_text(e: BaseException) -> str:
    """The server's message of a driver error (without the code tuple), else the first line."""
    args = getattr(e, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return args[1].strip().splitlines()[0] if args[1].strip() else first_line(e)
    return first_line(e)


def _option_value(value: str) -> str:
    """A value for an option file: double-quoted, with the escapes the client library reads back."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class ConnectionMixin:
    """Connections and tools of :class:`~dbsnap.engines.mysql.engine.MySQLEngine`."""

    def where(self) -> str:
        host = self.db.host or "localhost"
        return f"{host}:{self.db.port or 3306} as {self.db.user or '(default user)'}"

    def connect(self, schema: str | None = "", autocommit: bool = True) -> MySQLdb.Connection:
        """A connection whose default schema is ``schema`` (default: the live database; None: none), every wait
        bounded (``self.bounds``); ExternalError naming host, port and user."""
        kwargs: dict = {k: self.db.options[k] for k in _CONNECT_OPTIONS if k in self.db.options}
        if self.db.host:
            kwargs["host"] = self.db.host
        if self.db.port:
            kwargs["port"] = int(self.db.port)
        if self.db.user:
            kwargs["user"] = self.db.user
        if self.db.password:
            kwargs["password"] = self.db.password
        name = self.db.name if schema == "" else schema
        if name:
            kwargs["database"] = name
        try:
            conn = MySQLdb.connect(
                charset="utf8mb4",
                connect_timeout=int(self.db.options.get("connect_timeout", 10)),
                autocommit=autocommit,
                **kwargs,
            )
        except MySQLdb.Error as e:
            raise ExternalError(
                f"cannot connect to MySQL database {name or '(none)'!r} at {self.where()}: {error_text(e)}",
                hint="check the server is running and the credentials in your settings or .env",
            ) from e
        self._bound(conn)
        return conn

    def _bound(self, conn: MySQLdb.Connection) -> None:
        """Every lock wait and statement of dbsnap's own session bounded (the server counts whole seconds)."""
        lock = max(1, round(self.bounds.db_lock_timeout))
        cur = conn.cursor()
        cur.execute(f"SET SESSION lock_wait_timeout = {lock}, innodb_lock_wait_timeout = {lock}")
        if self.is_mariadb(conn):
            cur.execute(f"SET SESSION max_statement_time = {float(self.bounds.statement_timeout):.3f}")
        else:
            cur.execute(f"SET SESSION max_execution_time = {max(1, int(self.bounds.statement_timeout * 1000))}")

    def is_mariadb(self, conn: MySQLdb.Connection | None = None) -> bool:
        if "mariadb" not in self._cache:
            assert conn is not None, "server_version() first"
            cur = conn.cursor()
            cur.execute("SELECT VERSION()")
            text = cur.fetchone()[0]
            self._cache["mariadb"] = "mariadb" in text.lower()
            self._cache["server_text"] = text
        return self._cache["mariadb"]

    def server_version(self) -> tuple[int, str]:
        """(major, "10.11.19-MariaDB...") of the server; connects once per command."""
        if "server_text" not in self._cache:
            self.connect(None).close()
        text = self._cache["server_text"]
        m = re.match(r"(\d+)\.(\d+)", text)
        flavour = "MariaDB" if self._cache["mariadb"] else "MySQL"
        short = text.split("-")[0]
        return (int(m.group(1)) if m else 0), f"{flavour} {short}"

    def q(self, conn: MySQLdb.Connection, sql: str, args: tuple | list | None = None) -> list[tuple]:
        cur = conn.cursor()
        cur.execute(sql, args)
        return list(cur.fetchall()) if cur.description else []

    # -- tools -------------------------------------------------------------------------------------------------

    def tool(self, which: str) -> tuple[list[str], str]:
        """The command for the dump tool (``which="dump"``) or the client (``"client"``) and its version line;
        ExternalError naming what to install when neither name is found."""
        key = ("tool", which)
        if key in self._cache:
            return self._cache[key]
        spec = TOOLS[which]
        self.server_version()
        names = spec["mariadb" if self._cache["mariadb"] else "mysql"]
        cmd = None
        for name in names:
            with contextlib.suppress(ExternalError):
                cmd = tool_command(self.env, spec["var"], name)
                break
        if cmd is None:
            raise ExternalError(
                f"{' or '.join(names)} not found on PATH",
                hint=f"install the client tools (apt install mariadb-client, or mysql-client) or set {spec['var']}",
            )
        version = run([*cmd, "--version"], self.env, f"{cmd[0]} --version", timeout=30).strip()
        self._cache[key] = (cmd, version)
        return cmd, version

    def client_is_mariadb(self, which: str) -> bool:
        return "mariadb" in self.tool(which)[1].lower()

    @contextlib.contextmanager
    def option_file(self) -> Iterator[Path]:
        """A private (0600) option file with the connection settings and password, removed afterwards; the
        project's own ``read_default_file`` is included, so what it sets applies to the tools too."""
        lines = ["[client]"]
        for key, value in (
            ("host", self.db.host),
            ("port", self.db.port),
            ("user", self.db.user),
            ("password", self.db.password),
            ("socket", self.db.options.get("unix_socket")),
        ):
            if value:
                lines.append(f"{key}={_option_value(str(value))}")
        # Only the client knows connect-timeout (the dump tool refuses it in [client]).
        lines += ["[mysql]", f"connect-timeout={int(self.db.options.get('connect_timeout', 10))}"]
        include = self.db.options.get("read_default_file")
        fd, path = tempfile.mkstemp(prefix="dbsnap-mysql-", suffix=".cnf")  # created 0600
        try:
            with os.fdopen(fd, "w") as f:
                if include:
                    f.write(f"!include {Path(str(include)).expanduser()}\n")
                f.write("\n".join(lines) + "\n")
            yield Path(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
