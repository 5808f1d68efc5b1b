"""PostgreSQL: ``pg_dump -Fc -Z0`` through multi-threaded zstd; restore into a scratch database, swap by rename.

The dump runs inside a snapshot exported by dbsnap's own REPEATABLE READ transaction (``pg_dump --snapshot``), so
the row counts and ``django_migrations`` rows recorded in the manifest describe exactly the data in the dump.

Restore, all or nothing, is in :mod:`.restore` (swap) and :mod:`.restore_tx` (one transaction).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from ... import procs
from ...errors import ExternalError
from ...report import human_bytes as human_size
from ...store.archive import read_chunks
from ..base import (
    BackgroundCompress,
    DumpResult,
    Engine,
    Progress,
    first_line,
    run,
    set_total,
    stderr_file,
    tool_command,
)
from .clone import CloneMixin
from .describe import SchemaMixin
from .plain_sql import PlainSQLMixin, is_plain_sql
from .restore import RestoreMixin
from .restore_tx import TransactionRestoreMixin
from .sessions import DUMP_CONFLICTS, SessionsMixin, connect_options, is_wait_timeout, ms
from .statements import DROP_ALL_SQL

# libpq settings that Django passes through OPTIONS and the command-line tools read from the environment.
_OPTION_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


def _major(version_num: int) -> int:
    return version_num // 10000 if version_num >= 100000 else version_num // 100


def _client_major(text: str) -> tuple[int, str]:
    m = re.search(r"(\d+)(?:\.(\d+))?", text)
    if not m:
        raise ExternalError(f"cannot read the version from {text.strip()!r}")
    return int(m.group(1)), m.group(0)


# The database's size, and its tables' (heap and TOAST, no indexes): about what ``pg_dump -Z0`` writes.
DUMP_SIZE_SQL = (
    "SELECT pg_database_size(current_database()), coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'"
)


class PostgreSQLEngine(
    CloneMixin, SchemaMixin, PlainSQLMixin, RestoreMixin, TransactionRestoreMixin, SessionsMixin, Engine
):
    kind = "postgresql"
    payload_suffix = ".dump.zst"
    plain_format = "pg_dump custom format (pg_restore reads it)"

    @classmethod
    def recognizes(cls, head: bytes) -> bool:
        return head.startswith(b"PGDMP")

    @classmethod
    def recognizes_sql(cls, head: bytes) -> bool:
        return is_plain_sql(head)

    parallel_restore = True

    # -- connections and tools --------------------------------------------------------------------------

    def where(self) -> str:
        via = ""
        if self.routed():
            via = f" (compose service {self.compose.db!r})"  # type: ignore[union-attr]
        return f"{self.db.host or 'local socket'}:{self.db.port or 5432}{via} as {self.db.user or '(default user)'}"

    def tools_in_container(self) -> bool:
        """Whether pg_dump/pg_restore/psql run inside the compose db service (no DBSNAP_PG_* override)."""
        return self.compose is not None and self.compose.db is not None

    def routed(self) -> bool:
        """Whether the settings' HOST is the compose db service, which this host cannot resolve: dbsnap's own
        connections then go to the container's address (see project/compose.py for why)."""
        if "routed" not in self._cache:
            if self.compose is not None and self.compose.db is not None:
                self.compose.container(self.compose.db)  # one line when the engine or the service is not there
            self._cache["routed"] = self.compose is not None and self.compose.routes(self.db.host or "")
        return self._cache["routed"]

    def address(self) -> tuple[str | None, str | None]:
        """(host, port) for dbsnap's own connections."""
        if self.routed():
            assert self.compose is not None
            return self.compose.db_address(), str(self.db.port or 5432)
        return self.db.host or None, (str(self.db.port) if self.db.port else None)

    def connect(self, dbname: str | None = None, autocommit: bool = True) -> psycopg.Connection:
        """A connection to ``dbname`` (default: the live database); ExternalError naming host, port and user.

        Every statement on it is bounded: lock_timeout and statement_timeout (``self.bounds``)."""
        kwargs = {k: v for k, v in self.db.options.items() if k in _OPTION_ENV or k == "connect_timeout"}
        kwargs.setdefault("connect_timeout", 10)
        kwargs["options"] = connect_options(self.bounds)
        host, port = self.address()
        try:
            return psycopg.connect(
                host=host,
                port=port,
                user=self.db.user or None,
                password=self.db.password or None,
                dbname=dbname or self.db.name,
                application_name="dbsnap",
                autocommit=autocommit,
                **kwargs,
            )
        except psycopg.Error as e:
            # All of libpq's lines, joined: the cause ("Connection refused") is on the first, not the last.
            first = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip()) or type(e).__name__
            raise ExternalError(
                f"cannot connect to PostgreSQL database {dbname or self.db.name!r} at {self.where()}: {first}",
                hint="check the server is running and the credentials in your settings or .env",
            ) from e

    def maintenance(self) -> psycopg.Connection:
        """A connection to a database other than the live one, for CREATE/RENAME/DROP DATABASE; the error keeps
        the cause of the first failure (a refused connection, a password, a missing database)."""
        first: ExternalError | None = None
        for name in ("postgres", "template1"):
            if name == self.db.name:
                continue
            try:
                return self.connect(name)
            except ExternalError as e:
                first = first or e
                continue
        cause = first.message.split(": ", 1)[-1] if first else "no database to connect to"
        raise ExternalError(
            f"cannot connect to a maintenance database (postgres or template1) at {self.where()}: {cause}",
            hint=first.hint if first else None,
        )

    def tool_env(self, dbname: str | None = None) -> dict[str, str]:
        """Environment for pg_dump/pg_restore/psql: connection settings and the password, never argv.

        The user's own PG* variables (PGPASSFILE, PGSSLMODE...) stay, as libpq reads them for dbsnap's own
        connections too; what Django's settings say overrides them.
        """
        env = dict(self.env)
        for key, value in (
            ("PGHOST", self.db.host),
            ("PGPORT", self.db.port),
            ("PGUSER", self.db.user),
            ("PGPASSWORD", self.db.password),
            ("PGDATABASE", dbname or self.db.name),
        ):
            if value:
                env[key] = str(value)
        for opt, var in _OPTION_ENV.items():
            if opt in self.db.options:
                env[var] = str(self.db.options[opt])
        if self.tools_in_container() and not self.routed():
            # The tools run beside the server, inside the db service: a HOST that names the host's published
            # port means nothing there; the server is on the container's own loopback, on its default port.
            env["PGHOST"], env["PGPORT"] = "127.0.0.1", "5432"
        env["PGAPPNAME"] = "dbsnap"
        env["PGCONNECT_TIMEOUT"] = str(self.db.options.get("connect_timeout", 10))
        return env

    def server_major(self) -> int:
        return self.server_version()[0]

    def server_version(self) -> tuple[int, str]:
        if "server" not in self._cache:
            with self.connect() as conn:
                num = int(conn.execute("SHOW server_version_num").fetchone()[0])
                text = conn.execute("SHOW server_version").fetchone()[0].split()[0]
            self._cache["server"] = (_major(num), text)
        return self._cache["server"]

    def tool(self, name: str, server_major: int) -> tuple[list[str], str]:
        """The command for ``name`` and its version; ExternalError when it is missing or older than the server.

        Found once per engine (preflight, then dump or restore, ask again)."""
        key = ("tool", name, server_major)
        if key not in self._cache:
            self._cache[key] = self._find_tool(name, server_major)
        return self._cache[key]

    def _find_tool(self, name: str, server_major: int) -> tuple[list[str], str]:
        var = {"pg_dump": "DBSNAP_PG_DUMP", "pg_restore": "DBSNAP_PG_RESTORE", "psql": "DBSNAP_PSQL"}[name]
        candidates: list[list[str]] = []
        if self.tools_in_container() and not self.env.get(var):
            assert self.compose is not None and self.compose.db is not None
            from ...project.compose import PG_NAMES

            self.compose.container(self.compose.db)  # one line when the engine or the service is not there
            cmd = self.compose.exec_argv(self.compose.db, [name], PG_NAMES)
            major, ver = _client_major(run([*cmd, "--version"], self.env, f"{name} --version in the db service", 60))
            if major < server_major:
                raise ExternalError(
                    f"{name} {ver} in compose service {self.compose.db!r} is older than the server ({server_major})"
                )
            return cmd, ver
        bin_dir = self.env.get("DBSNAP_PG_BIN")
        with contextlib.suppress(ExternalError):
            candidates.append(tool_command(self.env, var, name, bin_dir))
        if not self.env.get(var):
            # Debian/Ubuntu install one client per major version side by side; use a new enough one.
            for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: -int(p.parent.name or 0)):
                if (d / name).exists():
                    candidates.append([str(d / name)])
            # There, the tool on PATH is pg_wrapper, a Perl script that picks one of those binaries: calling the
            # binary directly saves a Perl start (about 25 ms) per run, and pg_wrapper also picks the newest.
            if candidates and Path(candidates[0][0]).resolve().name == "pg_wrapper" and not bin_dir:
                candidates.append(candidates.pop(0))
        if not candidates:
            raise ExternalError(
                f"{name} not found on PATH",
                hint="install the PostgreSQL client tools (e.g. apt install postgresql-client) or set DBSNAP_PG_BIN",
            )
        best: tuple[list[str], int, str] | None = None
        first_error: ExternalError | None = None
        for cmd in candidates:
            try:
                major, ver = _client_major(run([*cmd, "--version"], self.env, f"{name} --version", timeout=30))
            except ExternalError as e:
                first_error = first_error or e
                continue
            if major >= server_major:
                return cmd, ver
            if best is None or major > best[1]:
                best = (cmd, major, ver)
        if best is None:
            reason = f": {first_error.message}" if first_error else ""
            raise ExternalError(f"{name} could not be run ({' '.join(candidates[0])}){reason}")
        raise ExternalError(
            f"{name} {best[2]} is older than the PostgreSQL server ({server_major}): it cannot handle this server",
            hint=f"install postgresql-client-{server_major} or point DBSNAP_PG_BIN at a {server_major}+ bin folder",
        )

    # -- facts --------------------------------------------------------------------------------------------

    def preflight(self, for_restore: bool = False) -> dict:
        server_major, server_text = self.server_version()
        names = ("pg_restore", "psql") if for_restore else ("pg_dump",)
        versions = {name: self.tool(name, server_major)[1] for name in names}
        return {"server_version": server_text, "client_version": versions}

    @staticmethod
    def _migration_rows(conn: psycopg.Connection) -> list[list[str]]:
        if conn.execute("SELECT to_regclass('django_migrations')").fetchone()[0] is None:
            return []
        return [list(r) for r in conn.execute("SELECT app, name FROM django_migrations ORDER BY id")]

    @staticmethod
    def _table_counts(conn: psycopg.Connection) -> dict[str, int]:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_%' AND NOT c.relispartition "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e') "
            "ORDER BY 1, 2"
        ).fetchall()
        counts = {}
        for schema, name in tables:
            key = name if schema == "public" else f"{schema}.{name}"
            q = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
            counts[key] = conn.execute(q).fetchone()[0]
        return counts

    def migration_rows(self) -> list[list[str]]:
        with self.connect() as conn:
            return self._migration_rows(conn)

    def other_sessions(self) -> list[str]:
        with self.maintenance() as conn:
            rows = conn.execute(
                "SELECT pid, usename, application_name, client_addr, state FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.db.name,),
            ).fetchall()
        return [f"pid {p} user {u} app {a or '-'} from {c or 'local'} ({s or 'idle'})" for p, u, a, c, s in rows]

    # -- dump ----------------------------------------------------------------------------------------------

    def dump(self, dest: Path, progress: Progress | None = None, dbname: str | None = None) -> DumpResult:
        """``dbname`` dumps another database of the same server (a fresh clone) instead of the live one."""
        server_major, _ = self.server_version()
        pg_dump, _ = self.tool("pg_dump", server_major)
        conn = self.connect(dbname)
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            if progress is not None:
                db_bytes, table_bytes = conn.execute(DUMP_SIZE_SQL).fetchone()
                # pg_dump writes the tables' rows and no index: their size is what the stream will come to.
                set_total(progress, int(table_bytes), f"{human_size(int(db_bytes))} database")
            with stderr_file() as err:
                proc = procs.spawn(
                    [
                        *pg_dump,
                        "-Fc",
                        "-Z0",
                        "--no-password",
                        f"--snapshot={snapshot}",
                        f"--lock-wait-timeout={ms(self.bounds.db_lock_timeout)}",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=self.tool_env(dbname),
                )
                assert proc.stdout is not None
                compress = BackgroundCompress(proc, read_chunks(proc.stdout), dest, progress)
                try:
                    # Same transaction snapshot as the dump: these facts describe exactly what is in it.
                    rows = self._migration_rows(conn)
                    tables = self._table_counts(conn)
                except BaseException:
                    proc.kill()  # e.g. a lock timeout here: pg_dump must not go on waiting for its own
                    raise
                finally:
                    compress.join()
                payload = compress.result(f"pg_dump of {self.db.name!r}", err)
        except BaseException as e:
            with contextlib.suppress(NameError, ProcessLookupError):
                procs.kill(proc)  # type: ignore[possibly-undefined]
            if isinstance(e, (psycopg.Error, ExternalError)) and is_wait_timeout(e):
                raise self.blocked_error(f"reading {self.db.name!r}", e, DUMP_CONFLICTS) from e
            if isinstance(e, psycopg.Error):
                raise ExternalError(f"reading {self.db.name!r} at {self.where()} failed: {first_line(e)}") from e
            raise
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            conn.close()
        return DumpResult(payload=payload, migrations=rows, tables=tables)

    # -- reset ----------------------------------------------------------------------------------------------

    def drop_everything(self) -> None:
        """Remove every object of the live database in one transaction; owner, settings and grants stay."""
        with self.maintenance() as conn:
            self._terminate_others(conn, self.db.name)
        with self.connect() as conn:
            try:
                with conn.transaction():
                    conn.execute(DROP_ALL_SQL)  # lock_timeout and statement_timeout: set on every connection
            except psycopg.Error as e:
                if is_wait_timeout(e):
                    raise self.blocked_error(f"dropping the objects of {self.db.name!r}", e) from e
                raise ExternalError(f"dropping the objects of {self.db.name!r} failed: {first_line(e)}") from e
