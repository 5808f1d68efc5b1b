"""Other sessions on a MySQL/MariaDB schema: listed from the process list, ended with ``KILL`` within a bound, and
named when one blocks dbsnap (the session holding a lock dbsnap waited for until db-lock-timeout).

A role without the PROCESS privilege sees only its own sessions, and one without CONNECTION ADMIN/SUPER may kill
only its own: the errors say so, like the PostgreSQL engine's.
"""

from __future__ import annotations

import time

import MySQLdb

from ...errors import ExternalError
from .connection import ER_KILL_DENIED, ER_NO_SUCH_THREAD, error_code


def describe_rows(rows: list[tuple]) -> list[str]:
    return [
        f"id {i} (user {u}, host {h or '-'}, {c.lower()} for {t} s{', ' + s if s else ''})" for i, u, h, c, t, s in rows
    ]


class SessionsMixin:
    """Session handling of :class:`~dbsnap.engines.mysql.engine.MySQLEngine`."""

    def _sessions(self, conn: MySQLdb.Connection, schema: str, ids: list[int] | None = None) -> list[tuple]:
        rows = self.q(
            conn,
            "SELECT ID, USER, HOST, COMMAND, TIME, STATE FROM information_schema.PROCESSLIST "
            "WHERE DB = %s AND ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump') ORDER BY ID",
            (schema,),
        )
        return [r for r in rows if ids is None or r[0] in ids]

    def other_sessions(self) -> list[str]:
        conn = self.connect(None)
        try:
            return describe_rows(self._sessions(conn, self.db.name))
        finally:
            conn.close()

    def _kill_on(self, conn: MySQLdb.Connection, schema: str, wait: float | None = None) -> list[int]:
        """KILL the other sessions whose default schema is ``schema``, and wait (bounded) until they are gone.
        Returns the ids still there (not ours to kill, or not gone in time)."""
        deadline = time.monotonic() + (self.bounds.terminate_timeout if wait is None else wait)
        denied: set[int] = set()
        while True:
            ids = [r[0] for r in self._sessions(conn, schema)]
            for i in ids:
                if i in denied:
                    continue
                try:
                    self.q(conn, f"KILL CONNECTION {int(i)}")
                except MySQLdb.Error as e:
                    if error_code(e) == ER_KILL_DENIED:
                        denied.add(i)
                    elif error_code(e) != ER_NO_SUCH_THREAD:
                        raise
            if not ids or set(ids) <= denied or time.monotonic() > deadline:
                return ids
            time.sleep(0.05)

    def end_sessions(self, keep_idle: bool = False) -> list[str]:
        """End the other sessions on the live schema within ``bounds.terminate_timeout``; return those ended.
        ExternalError (exit 5) naming those that stayed, before anything was changed."""
        conn = self.connect(None)
        try:
            before = self._sessions(conn, self.db.name)
            left = self._kill_on(conn, self.db.name, self.bounds.terminate_timeout)
            if left:
                names = describe_rows(self._sessions(conn, self.db.name, left)) or [f"id {i}" for i in left]
                raise ExternalError(
                    f"{len(names)} other session(s) on {self.db.name!r} could not be ended within "
                    f"{self.bounds.terminate_timeout:g} s (terminate-timeout): {'; '.join(names)}; nothing was changed",
                    hint="stop that client, or run dbsnap as a role with CONNECTION ADMIN (MySQL 8) or SUPER",
                )
        finally:
            conn.close()
        return describe_rows([r for r in before if r[0] not in left])

    def blocked_error(self, what: str, e: BaseException) -> ExternalError:
        """The ExternalError (exit 5) for a bounded wait that ran out, naming the other sessions on the schema
        (the server does not say which one holds a metadata lock without performance_schema)."""
        bound, secs = ("db-lock-timeout", self.bounds.db_lock_timeout)
        if error_code(e) in (1969, 3024):
            bound, secs = ("statement-timeout", self.bounds.statement_timeout)
        try:
            conn = self.connect(None)
            try:
                who = "; ".join(describe_rows(self._sessions(conn, self.db.name))) or "no other session now"
            finally:
                conn.close()
        except ExternalError:
            who = "the sessions could not be looked up"
        return ExternalError(
            f"{what} gave up after {secs:g} s ({bound}): other sessions on {self.db.name!r}: {who}; "
            "nothing was changed",
            hint=f"end that session or wait for it (a migration in progress?), or raise DBSNAP_{bound.upper()}".replace(
                "-", "_"
            ),
        )
