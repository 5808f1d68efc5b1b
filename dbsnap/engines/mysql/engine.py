"""MySQL 8 and MariaDB 10.6+: ``mysqldump --single-transaction`` through zstd; restore into a scratch schema, swap
every table in one ``RENAME TABLE`` (:mod:`.restore`).

The facts recorded with the dump (row counts, ``django_migrations`` rows) are read from the dump stream itself
while it passes (:mod:`.dumpscan`): exactly what a restore holds, with no second pass over the server. The start
is bounded: dbsnap holds ``LOCK TABLES ... READ`` on the live tables until the dump tool has started its
consistent snapshot (its first ``CREATE TABLE`` on the pipe), so a session holding a write lock or running DDL is
named after db-lock-timeout instead of leaving the tool waiting; writers wait for those few milliseconds.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import threading
import time
from pathlib import Path

import MySQLdb

from ... import faults, procs
from ...errors import ExternalError, IntegrityError
from ...report import human_bytes
from ...store.archive import PayloadInfo, compress_chunks, read_chunks
from ..base import BackgroundCompress, DumpResult, Engine, Progress, feed, set_total, stderr_file
from . import plain, programs
from .connection import (
    DATA_TYPES,
    ER_LOCK_WAIT_TIMEOUT,
    ER_STATEMENT_TIMEOUT,
    MOVED_TYPES,
    ConnectionMixin,
    error_code,
    error_text,
    qi,
)
from .describe import SchemaMixin
from .dumpscan import DumpScanner
from .events import DisabledEvents
from .grants import GrantsMixin
from .restore import RestoreMixin
from .sessions import SessionsMixin


class MySQLEngine(ConnectionMixin, GrantsMixin, SchemaMixin, RestoreMixin, SessionsMixin, Engine):
    kind = "mysql"
    payload_suffix = ".sql.zst"
    plain_format = "plain SQL (the mysql client loads it: mysql DBNAME < FILE)"

    @classmethod
    def recognizes(cls, head: bytes) -> bool:
        return plain.recognizes(head)

    @classmethod
    def import_plain(cls, src, dest: Path, progress: Progress | None = None) -> PayloadInfo:
        """The payload of a plain dump, without the statements that would choose another schema than the one it
        is restored into (``mysqldump --databases``); UsageError for dumps of several schemas (:mod:`.plain`)."""
        neutral = plain.SchemaNeutral(Path(getattr(src, "name", "the dump")).name)
        return compress_chunks(neutral.chunks(read_chunks(src)), dest, progress)

    # -- facts ----------------------------------------------------------------------------------------------

    def preflight(self, for_restore: bool = False) -> dict:
        _, server = self.server_version()
        tools = ("client",) if for_restore else ("dump",)
        versions = {self.tool(t)[0][-1].rsplit("/", 1)[-1]: self.tool(t)[1] for t in tools}
        if for_restore:
            # Refused here, before the safety snapshot: the swap restore has no fallback on MySQL.
            scratch = self.privilege_facts()["scratch"]
            if not {"CREATE", "ALL PRIVILEGES"} & scratch:
                raise ExternalError(
                    f"role {self.db.user or '(default user)'} may not create dbsnap's scratch schemas beside "
                    f"{self.db.name!r} (the swap restore needs them); nothing was changed",
                    hint=self.grant_hint(),
                )
        return {"server_version": server, "client_version": versions}

    def tables(self, conn: MySQLdb.Connection, schema: str, types: tuple[str, ...] = DATA_TYPES) -> list[str]:
        marks = ", ".join(["%s"] * len(types))
        return [
            r[0]
            for r in self.q(
                conn,
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                f"AND TABLE_TYPE IN ({marks}) ORDER BY TABLE_NAME",
                (schema, *types),
            )
        ]

    def _migration_rows(self, conn: MySQLdb.Connection, schema: str) -> list[list[str]]:
        if "django_migrations" not in self.tables(conn, schema):
            return []
        return [list(r) for r in self.q(conn, f"SELECT app, name FROM {qi(schema)}.django_migrations ORDER BY id")]

    def _table_counts(self, conn: MySQLdb.Connection, schema: str) -> dict[str, int]:
        return {
            t: int(self.q(conn, f"SELECT COUNT(*) FROM {qi(schema)}.{qi(t)}")[0][0]) for t in self.tables(conn, schema)
        }

    def migration_rows(self) -> list[list[str]]:
        conn = self.connect()
        try:
            return self._migration_rows(conn, self.db.name)
        finally:
            conn.close()

    # -- dump -----------------------------------------------------------------------------------------------

    def dump_argv(self, opt: Path, schema: str) -> list[str]:
        """The dump tool's arguments: consistent, every object kind, binary-safe, no tablespaces, no GTIDs."""
        cmd, _ = self.tool("dump")
        argv = [*cmd, f"--defaults-extra-file={opt}", "--single-transaction", "--routines", "--triggers"]
        argv += ["--events", "--hex-blob", "--no-tablespaces", "--default-character-set=utf8mb4", "--skip-dump-date"]
        argv += ["--max-allowed-packet=1G", "--quick"]
        if not self.client_is_mariadb("dump"):
            # MySQL's tool: no SET @@GLOBAL.GTID_PURGED in the dump (a restore must not touch the server's GTID
            # state); against MariaDB it must not ask for MySQL 8's column statistics.
            argv.append("--set-gtid-purged=OFF")
            if self.is_mariadb():
                argv.append("--column-statistics=0")
        return [*argv, schema]

    def _dump_estimate(self, conn, schema: str) -> tuple[int, str]:
        """information_schema's data size of the schema's tables (what mysqldump writes, about) and a note with
        data and indexes together (the database's size)."""
        row = self.q(
            conn,
            "SELECT COALESCE(SUM(data_length), 0), COALESCE(SUM(data_length + index_length), 0) "
            "FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        )[0]
        return int(row[0]), f"{human_bytes(int(row[1]))} database"

    def dump(self, dest: Path, progress: Progress | None = None, dbname: str | None = None) -> DumpResult:
        schema = dbname or self.db.name
        lock_conn = self.connect(schema)
        scanner = DumpScanner()
        try:
            with self.option_file() as opt, stderr_file() as err:
                argv = self.dump_argv(opt, schema)
                tables = self.tables(lock_conn, schema)
                if progress is not None:
                    set_total(progress, *self._dump_estimate(lock_conn, schema))
                try:
                    if tables:
                        self.q(lock_conn, "LOCK TABLES " + ", ".join(f"{qi(t)} READ" for t in tables))
                except MySQLdb.Error as e:
                    if error_code(e) == ER_LOCK_WAIT_TIMEOUT:
                        raise self.blocked_error(f"reading {schema!r}", e) from e
                    raise ExternalError(
                        f"reading {schema!r} failed: LOCK TABLES (that bounds the dump's start) was "
                        f"refused: {error_text(e)}",
                        hint=f"GRANT LOCK TABLES ON {qi(schema)}.* TO the role dbsnap connects as",
                    ) from e
                started = threading.Event()
                proc = procs.spawn(argv, stdout=subprocess.PIPE, stderr=err, env=self.env)

                def chunks():
                    assert proc.stdout is not None
                    seen = b""
                    for chunk in read_chunks(proc.stdout):
                        if not started.is_set():
                            # Written only after the tool's START TRANSACTION WITH CONSISTENT SNAPSHOT.
                            seen = seen[-16:] + chunk
                            if b"CREATE TABLE" in seen:
                                started.set()
                        scanner.feed(chunk)
                        yield chunk
                    scanner.close()
                    started.set()

                compress = BackgroundCompress(proc, chunks(), dest, progress, on_error=started.set)
                try:
                    # Writers wait while the lock is held: bounded like dbsnap's own statements.
                    deadline = time.monotonic() + max(1.0, self.bounds.db_lock_timeout)
                    while not started.wait(0.05):
                        if proc.poll() is not None:
                            break
                        if time.monotonic() > deadline:
                            raise ExternalError(
                                f"reading {schema!r}: the dump tool did not start within "
                                f"{self.bounds.db_lock_timeout:g} s (db-lock-timeout); nothing was saved"
                            )
                    with contextlib.suppress(MySQLdb.Error):
                        self.q(lock_conn, "UNLOCK TABLES")
                    faults.point("mysql.dump-unlocked")
                except BaseException:
                    proc.kill()
                    raise
                finally:
                    compress.join()
                payload = compress.result(f"dump of {schema!r}", err)
        except MySQLdb.Error as e:
            if error_code(e) == ER_LOCK_WAIT_TIMEOUT or error_code(e) in ER_STATEMENT_TIMEOUT:
                raise self.blocked_error(f"reading {schema!r}", e) from e
            raise ExternalError(f"reading {schema!r} at {self.where()} failed: {error_text(e)}") from e
        finally:
            with contextlib.suppress(MySQLdb.Error):
                lock_conn.close()
        return DumpResult(payload=payload, migrations=scanner.migrations(), tables=scanner.tables())

    # -- restore helpers -------------------------------------------------------------------------------------

    def create_schema_like(self, conn: MySQLdb.Connection, name: str) -> None:
        """Create schema ``name`` with the live schema's default character set and collation."""
        row = self.q(
            conn,
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = %s",
            (self.db.name,),
        )
        if not row:
            raise ExternalError(f"database {self.db.name!r} does not exist at {self.where()}")
        charset, collation = row[0]
        self.q(conn, f"CREATE DATABASE IF NOT EXISTS {qi(name)} CHARACTER SET {charset} COLLATE {collation}")

    def feed(self, schema: str, payload: Path, progress: Progress | None, what: str) -> list[str]:
        """Stream the decompressed payload into the client tool, into ``schema`` (one of dbsnap's own), its events
        created disabled; the names of those the dump had enabled. ExternalError if it fails."""
        cmd, _ = self.tool("client")
        events = DisabledEvents()
        with self.option_file() as opt:
            argv = [*cmd, f"--defaults-extra-file={opt}", "--default-character-set=utf8mb4", "--binary-mode"]
            feed([*argv, "--max-allowed-packet=1G", schema], payload, progress, self.env, what, through=events.chunks)
        return events.enabled

    def drop_schema(self, name: str) -> None:
        """DROP DATABASE IF EXISTS for a schema dbsnap made (never the live one)."""
        if name == self.db.name:
            raise AssertionError(f"refusing to drop the live database {name!r}")
        conn = self.connect(None)
        try:
            self._kill_on(conn, name)
            self.q(conn, f"DROP DATABASE IF EXISTS {qi(name)}")
        finally:
            conn.close()

    def restored_facts(self, payload: Path) -> dict:
        """Restore into ``<live>_dbsnap_verify_<hex>``, read the facts, drop it (in ``finally``: also on Ctrl-C)."""
        name = f"{self.db.name[:40]}_dbsnap_verify_{secrets.token_hex(4)}"
        conn = self.connect(None)
        try:
            try:
                self.create_schema_like(conn, name)
            except MySQLdb.Error as e:
                raise ExternalError(f"--deep needs a scratch database: {error_text(e)}") from e
            try:
                try:
                    self.feed(name, payload, None, f"restore of {payload.name}")
                except ExternalError as e:
                    raise IntegrityError(f"{payload.name}: does not restore: {e.message}") from e
                faults.point("verify.after-restore")
                return {"tables": self._table_counts(conn, name), "migrations": self._migration_rows(conn, name)}
            finally:
                conn.close()
        finally:
            self.drop_schema(name)

    # -- reset ------------------------------------------------------------------------------------------------

    def drop_everything(self) -> None:
        """Remove every table, sequence, view, trigger, routine and event of the live schema (foreign keys
        ignored while dropping); the schema, its character set and its grants stay."""
        self.end_sessions()
        conn = self.connect()
        try:
            programs.drop_all(conn, self.db.name)
            self.q(conn, "SET SESSION FOREIGN_KEY_CHECKS = 0")
            tables = self.tables(conn, self.db.name, MOVED_TYPES)
            if tables:
                self.q(conn, "DROP TABLE IF EXISTS " + ", ".join(f"{qi(self.db.name)}.{qi(t)}" for t in tables))
            left = self.tables(conn, self.db.name, MOVED_TYPES)
            if left:
                raise ExternalError(f"dropping the objects of {self.db.name!r} left tables: {', '.join(left)}")
        except MySQLdb.Error as e:
            if error_code(e) == ER_LOCK_WAIT_TIMEOUT:
                raise self.blocked_error(f"dropping the objects of {self.db.name!r}", e) from e
            raise ExternalError(f"dropping the objects of {self.db.name!r} failed: {error_text(e)}") from e
        finally:
            conn.close()

    def replace_migration_rows(self, apps: list[str], rows: list[tuple[str, str]]) -> None:
        """Delete the ``django_migrations`` rows of ``apps`` and insert ``rows`` (applied now, UTC) in one InnoDB
        transaction: all or nothing."""
        conn = self.connect(autocommit=False)
        try:
            cur = conn.cursor()
            if apps:
                marks = ", ".join(["%s"] * len(apps))
                cur.execute(f"DELETE FROM django_migrations WHERE app IN ({marks})", tuple(apps))
            if rows:
                cur.executemany(
                    "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, UTC_TIMESTAMP(6))",
                    [(a, n) for a, n in rows],
                )
            faults.point("mysql.before-migration-rows-commit")
            conn.commit()
        except MySQLdb.Error as e:
            with contextlib.suppress(MySQLdb.Error):
                conn.rollback()
            raise ExternalError(f"rewriting django_migrations of {self.db.name!r} failed: {error_text(e)}") from e
        finally:
            conn.close()
