"""PostgreSQL restore where the role may not create databases: every object dropped and the dump replayed inside
ONE transaction that dbsnap opens and commits itself, its id recorded first so that recovery can ask the server
(``txid_status``) whether it committed."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import threading
from pathlib import Path

from ... import faults
from ...errors import ExternalError
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
        procs: list[subprocess.Popen] = []
        with stderr_file() as err:
            try:
                # pg_restore turns the archive into SQL; psql runs it after our prologue, in our transaction.
                dec = subprocess.Popen(
                    [*pg_restore, "--no-password", "-f", "-"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=self.tool_env(),
                )
                procs.append(dec)
                psql_proc = subprocess.Popen(
                    [*psql, "--no-password", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=self.tool_env(),
                )
                procs.append(psql_proc)
                assert psql_proc.stdin is not None and psql_proc.stdout is not None and dec.stdout is not None
                xid: dict = {}
                got = threading.Event()

                def drain() -> None:
                    # psql prints query results (e.g. of setval); read them all so its stdout never blocks.
                    for raw in psql_proc.stdout:  # type: ignore[union-attr]
                        line = raw.decode(errors="replace").strip()
                        if line.startswith(marker):
                            xid["xid"] = line[len(marker) :]
                            got.set()
                    got.set()

                threading.Thread(target=drain, daemon=True).start()
                feeder = threading.Thread(target=self._pipe_payload, args=(dec, Path(state["payload"])), daemon=True)
                feeder.start()
                psql_proc.stdin.write(head.encode())
                psql_proc.stdin.flush()
                got.wait(60)
                if "xid" not in xid:
                    raise ExternalError(f"restore of {state['live']!r} could not start: {read_tail(err)}")
                # The journal records the transaction id before COMMIT can be sent, so recovery can ask the
                # server (txid_status) whether the restore committed.
                state["xid"] = xid["xid"]
                self.checkpoint(state)
                faults.point("pg.transaction-before-commit")
                try:
                    for chunk in read_chunks(dec.stdout):
                        psql_proc.stdin.write(chunk)
                    if dec.wait() != 0:
                        raise ExternalError(f"pg_restore could not read the snapshot: {read_tail(err)}")
                    psql_proc.stdin.write(b"\nCOMMIT;\n")
                    psql_proc.stdin.close()
                except BrokenPipeError:
                    pass  # psql stopped (ON_ERROR_STOP): its exit code says so
                rc = psql_proc.wait()
                feeder.join()
                if rc != 0:
                    raise ExternalError(f"restore of {state['live']!r} failed and was rolled back: {read_tail(err)}")
            except BaseException:
                for p in procs:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    p.wait()
                raise
        return state

    @staticmethod
    def _pipe_payload(proc: subprocess.Popen, payload: Path) -> None:
        assert proc.stdin is not None
        try:
            for chunk in decompressed_chunks(payload):
                proc.stdin.write(chunk)
        except (BrokenPipeError, Exception):
            proc.kill()
        finally:
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()
