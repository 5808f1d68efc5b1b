"""PostgreSQL restore where the role may not create databases: every object dropped and the dump replayed inside
ONE transaction that dbsnap opens and commits itself, its id recorded first so that recovery can ask the server
(``txid_status``) whether it committed.

Once COMMIT is written, psql may still commit after dbsnap died. Recovery therefore never takes "in progress"
for "not committed": it waits (bounded) for the transaction to end, ends its session if it does not, and
only then knows; while the outcome is unknown the journal is kept."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from ... import faults, procs
from ...errors import ExternalError, RollbackError
from ...store.archive import decompressed_chunks, read_chunks
from ..base import read_tail, stderr_file
from .sessions import ms
from .statements import DROP_ALL_SQL


class TransactionRestoreMixin:
    """The in-transaction restore of :class:`~dbsnap.engines.postgresql.engine.PostgreSQLEngine` (``swap_in`` in
    transaction mode); connections, tools and session termination are the engine's."""

    def _restore_in_transaction(self, state: dict) -> dict:
        """Drop everything and replay the dump in ONE transaction: it commits whole or not at all.

        BEGIN and COMMIT are written by dbsnap itself (not ``psql --single-transaction``, which would COMMIT at
        end of input): if dbsnap dies mid-stream, psql sees EOF without COMMIT and the server rolls back.
        """
        server_major, _ = self.server_version()
        psql, _ = self.tool("psql", server_major)
        pg_restore, _ = self.tool("pg_restore", server_major)
        with self.maintenance() as conn:
            self._terminate_others(conn, state["live"])
        marker = f"dbsnap-xid-{secrets.token_hex(4)}:"
        head = (
            f"BEGIN;\nSET LOCAL lock_timeout = {ms(self.bounds.db_lock_timeout)};\n"
            f"SELECT '{marker}' || txid_current();\n{DROP_ALL_SQL}\n"
        )
        started: list[subprocess.Popen] = []
        with stderr_file() as err, stderr_file() as out:
            try:
                # pg_restore turns the archive into SQL; psql runs it after our prologue, in our transaction.
                dec = procs.spawn(
                    [*pg_restore, "--no-password", "-f", "-"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=self.tool_env(),
                )
                started.append(dec)
                # psql's output (the marker, setval results) goes to a file, not a pipe: were dbsnap killed after
                # sending COMMIT, a pipe would kill psql (SIGPIPE) on its next result line and turn a restore
                # that was meant to commit into a rolled-back one. With a file, COMMIT sent means it commits.
                # For the same reason psql is not killed with dbsnap (no parent-death signal): it ends by itself at
                # the end of its input, and recovery asks the server what became of the transaction.
                psql_proc = procs.spawn_outliving(
                    [*psql, "--no-password", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    env=self.tool_env(),
                )
                started.append(psql_proc)
                assert psql_proc.stdin is not None and dec.stdout is not None
                feeder = threading.Thread(target=self._pipe_payload, args=(dec, Path(state["payload"])), daemon=True)
                feeder.start()
                psql_proc.stdin.write(head.encode())
                psql_proc.stdin.flush()
                xid = self._read_marker(out, marker, psql_proc)
                if xid is None:
                    raise ExternalError(f"restore of {state['live']!r} could not start: {read_tail(err)}")
                # The journal records the transaction id before COMMIT can be sent, so recovery can ask the
                # server (txid_status) whether the restore committed.
                state["xid"] = xid
                self.checkpoint(state)
                faults.point("pg.transaction-before-commit")
                try:
                    for chunk in read_chunks(dec.stdout):
                        psql_proc.stdin.write(chunk)
                    if dec.wait() != 0:
                        raise ExternalError(f"pg_restore could not read the snapshot: {read_tail(err)}")
                    faults.point("pg.transaction-before-commit-write")
                    psql_proc.stdin.write(b"\nCOMMIT;\n")
                    psql_proc.stdin.close()
                    # From here psql may commit even if dbsnap dies: recovery asks the server (transaction_outcome).
                    faults.point("pg.transaction-commit-sent")
                except BrokenPipeError:
                    pass  # psql stopped (ON_ERROR_STOP): its exit code says so
                rc = psql_proc.wait()
                feeder.join()
                if rc != 0:
                    raise ExternalError(f"restore of {state['live']!r} failed and was rolled back: {read_tail(err)}")
            except BaseException:
                for p in started:
                    procs.kill(p)
                raise
        return state

    @staticmethod
    def _read_marker(out, marker: str, proc: subprocess.Popen, wait: float = 60.0) -> str | None:
        """The transaction id psql printed after ``marker`` into the file ``out``; None if psql ended (or
        ``wait`` passed) first."""
        deadline = time.monotonic() + wait
        while True:
            out.seek(0)
            for raw in out.read().decode(errors="replace").splitlines():
                if raw.strip().startswith(marker):
                    return raw.strip()[len(marker) :]
            if proc.poll() is not None or time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def transaction_outcome(self, state: dict, notify: Callable[[str], None] | None = None) -> str:
        """ "committed" or "aborted": whether the in-transaction restore of ``state`` committed, as the server
        says once that transaction has ended (recorded in ``state`` and checkpointed, so it is asked once).

        "in progress" is never taken for either: wait ``bounds.terminate_timeout`` for it to end, then terminate
        its session (which aborts it, unless its COMMIT got in first) and wait again. RollbackError, with the
        journal kept, when the server still cannot say."""
        if state.get("outcome") in ("committed", "aborted"):
            return state["outcome"]
        if not state.get("xid"):
            return "aborted"  # the id is journaled before COMMIT can be sent: without it nothing could commit
        xid, bound = int(state["xid"]), self.bounds.terminate_timeout
        status = self._wait_for_transaction(xid, 0)
        if status == "in progress":
            if notify:
                notify(f"waiting up to {bound:g} s for the restore of {state['live']!r} (transaction {xid}) to end")
            status = self._wait_for_transaction(xid, bound)
        if status == "in progress":
            with self.maintenance() as conn:
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND backend_xid::text::bigint = %s",
                    (xid % (1 << 32),),
                ).fetchall():
                    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            status = self._wait_for_transaction(xid, bound)
        if status not in ("committed", "aborted"):
            raise RollbackError(
                f"cannot tell yet whether the restore of {state['live']!r} committed: its transaction {xid} is "
                f"{status or 'unknown to the server'} after {2 * bound:g} s",
                hint="the journal is kept; any dbsnap command asks again (end that session to decide it)",
            )
        state["outcome"] = status
        self.checkpoint(state)
        return status

    def _wait_for_transaction(self, xid: int, seconds: float) -> str | None:
        """``txid_status`` of ``xid`` as soon as it is no longer "in progress", or after ``seconds``."""
        deadline = time.monotonic() + seconds
        with self.maintenance() as conn:
            while True:
                status = conn.execute("SELECT txid_status(%s::bigint)", (xid,)).fetchone()[0]
                if status != "in progress" or time.monotonic() >= deadline:
                    return status
                time.sleep(0.05)

    @staticmethod
    def _pipe_payload(proc: subprocess.Popen, payload: Path) -> None:
        assert proc.stdin is not None
        try:
            for chunk in decompressed_chunks(payload):
                proc.stdin.write(chunk)
        except (BrokenPipeError, Exception):
            procs.kill_group(proc)
        finally:
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()
