"""Other sessions on a database: who they are, ending them within a bound, and naming the one that blocks.

Every wait dbsnap has on the server is bounded (:class:`~dbsnap.settings.Bounds`); when a bound runs out, the
error names the sessions in the way (pid, user, application, when their query started), so the user knows whom
to stop instead of watching a silent hang.
"""

from __future__ import annotations

from datetime import timezone

import psycopg

from ...errors import ExternalError
from ...settings import Bounds

# Lock modes that conflict with the ACCESS SHARE lock a dump (pg_dump, count(*)) takes on every table.
DUMP_CONFLICTS = ("AccessExclusiveLock",)


def ms(seconds: float) -> int:
    """A bound in whole milliseconds for the server (at least 1: 0 would mean "wait forever" there)."""
    return max(1, int(seconds * 1000))


def connect_options(bounds: Bounds) -> str:
    """libpq ``options`` that bound every statement of dbsnap's own connections and every lock it waits for."""
    return f"-c lock_timeout={ms(bounds.db_lock_timeout)} -c statement_timeout={ms(bounds.statement_timeout)}"


def describe(conn: psycopg.Connection, pids: list[int]) -> list[str]:
    """``pid N (user U, application A, query started T, state S)`` for each of ``pids`` still there."""
    if not pids:
        return []
    rows = conn.execute(
        "SELECT pid, usename, application_name, query_start, state FROM pg_stat_activity "
        "WHERE pid = ANY(%s) ORDER BY pid",
        (list(pids),),
    ).fetchall()
    out = []
    for pid, user, app, started, state in rows:
        # Another role's query start and state are hidden from a role without pg_read_all_stats: say so.
        when = (
            f"query started {started.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}, {state}"
            if started
            else "query start not visible to this role"
        )
        out.append(f"pid {pid} (user {user}, application {app or '-'}, {when})")
    return out


def lock_holders(conn: psycopg.Connection, dbname: str, modes: tuple[str, ...] | None = None) -> list[int]:
    """Other sessions holding granted locks in database ``dbname`` (only ``modes`` if given), strongest first."""
    rows = conn.execute(
        "SELECT l.pid, max(CASE l.mode WHEN 'AccessExclusiveLock' THEN 2 WHEN 'ExclusiveLock' THEN 1 ELSE 0 END) "
        "FROM pg_locks l WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation' "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = %s) "
        "AND (%s::text[] IS NULL OR l.mode = ANY(%s::text[])) "
        "GROUP BY l.pid ORDER BY 2 DESC, 1",
        (dbname, list(modes) if modes else None, list(modes) if modes else None),
    ).fetchall()
    return [r[0] for r in rows]


def blocked_message(conn: psycopg.Connection, dbname: str, what: str, bound: str, seconds: float, modes=None) -> str:
    """One line: ``what`` gave up after the bound, naming the sessions holding locks in ``dbname``."""
    holders = describe(conn, lock_holders(conn, dbname, modes))
    who = "; ".join(holders) if holders else "the blocking session has ended since"
    return f"{what} gave up after {seconds:g} s ({bound}): blocked by {who}"


def is_wait_timeout(e: BaseException) -> bool:
    """A lock_timeout or statement_timeout cancel (as psycopg raises it, or as a tool printed it)."""
    if isinstance(e, (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)):
        return True
    text = str(getattr(e, "message", e))
    return "could not obtain lock" in text or "lock timeout" in text or "statement timeout" in text


class SessionsMixin:
    """Session handling of :class:`~dbsnap.engines.postgresql.engine.PostgreSQLEngine`."""

    def blocked_error(self, what: str, e: BaseException, modes: tuple[str, ...] | None = None) -> ExternalError:
        """The ExternalError (exit 5) for a bounded wait on ``self.db.name`` that ran out, naming the blocker."""
        lock = isinstance(e, psycopg.errors.LockNotAvailable) or "lock" in str(getattr(e, "message", e))
        bound, secs = (
            ("db-lock-timeout", self.bounds.db_lock_timeout)
            if lock
            else ("statement-timeout", self.bounds.statement_timeout)
        )
        try:
            with self.maintenance() as conn:
                msg = blocked_message(conn, self.db.name, what, bound, secs, modes)
        except (psycopg.Error, ExternalError):
            msg = f"{what} gave up after {secs:g} s ({bound}); the blocking session could not be looked up"
        return ExternalError(
            msg + "; nothing was changed",
            hint=f"end that session or wait for it (a migration in progress?), or raise DBSNAP_{bound.upper()}".replace(
                "-", "_"
            ),
        )

    def end_sessions(self, keep_idle: bool = False) -> list[str]:
        """End the other sessions on the live database within ``bounds.terminate_timeout``; return those ended.

        ``keep_idle``: sessions that could not be ended are tolerated when they hold no lock in the database
        (an in-transaction restore or a drop only needs the locks). ExternalError (exit 5), naming them, for
        the others: before the safety snapshot, so nothing has changed."""
        with self.maintenance() as conn:
            before = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (self.db.name,)
            ).fetchall()
            shown = describe(conn, [r[0] for r in before])
            left = self._terminate_others(conn, self.db.name, self.bounds.terminate_timeout)
            blocking = [p for p in left if p in set(lock_holders(conn, self.db.name))] if keep_idle else left
            if blocking:
                names = describe(conn, blocking)
                raise ExternalError(
                    f"{len(names)} other session(s) on {self.db.name!r} could not be ended within "
                    f"{self.bounds.terminate_timeout:g} s (terminate-timeout): {'; '.join(names)}; nothing was changed",
                    hint="stop that client, or run dbsnap as the database owner or a role with pg_signal_backend",
                )
        gone = {f"pid {p} " for p in left}
        return [s for s in shown if not any(s.startswith(g) for g in gone)]
