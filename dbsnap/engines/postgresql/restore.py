"""PostgreSQL restore, all or nothing: a scratch database swapped in by rename, or one transaction.

Where the role may create databases and owns the live one, the dump is restored into a scratch database created
with the live one's owner, encoding, locale, settings, grants and comment (:mod:`.create`); both renames then
happen in one transaction, and the old database is kept until ``finish``. Where it may not, every object is
dropped and the dump replayed inside one transaction (:mod:`.restore_tx`).
"""

from __future__ import annotations

import errno
import re
import secrets
import shutil
import time
from pathlib import Path

import psycopg
from psycopg import sql

from ... import faults
from ...errors import ExternalError, IntegrityError, RollbackError
from ...store.archive import decompress_to
from ..base import Progress, feed, first_line, note_item, run_watched, set_phase
from .create import create_like, db_props
from .sessions import describe

# Free space kept beyond the spooled dump, so a parallel restore never fills the store's file system to the brim.
SPOOL_HEADROOM = 256 << 20


# pg_restore --verbose lines: "creating INDEX "public.x"", "processing data for table "public.t"", and with
# --jobs "launching item 1234 INDEX x" / "finished item 1234 INDEX x".
_VERBOSE = re.compile(
    r"^pg_restore: (?:(creating|processing data for table|executing|launching item \d+|finished item \d+)\s*(.*)"
    r"|connecting to database|implied data-only|entering |finished main|processing item|setting owner|transferring|"
    r"reducing dependencies|dropping |disabling triggers|enabling triggers)"
)
_POST_DATA = ("INDEX", "CONSTRAINT", "FK CONSTRAINT", "TRIGGER", "INDEX ATTACH", "RULE", "POLICY")


def restore_watcher(progress: Progress | None, streamed: bool = True):
    """A stderr watcher for ``pg_restore --verbose``: moves ``progress`` to the phase the lines say and counts
    the objects; True for the verbose lines (chatter), False for the rest (errors, warnings: kept for the error
    message). Phases only move forward: data, then indexes and constraints once the first post-data object
    starts; with ``--jobs`` (not ``streamed``) "data, indexes and constraints" while tables are still being
    loaded beside the first indexes. ``streamed``: the bytes fed measure the data phase."""
    order = ("", "data", "data, indexes and constraints", "indexes and constraints")
    state = {"phase": "", "loading": 0}

    def phase(name: str) -> None:
        if order.index(name) > order.index(state["phase"]):
            state["phase"] = name
            set_phase(progress, name, show_bytes=streamed and name == "data")

    def watch(line: str) -> bool:
        m = _VERBOSE.match(line)
        if m is None:
            return False
        verb, rest = m.group(1) or "", (m.group(2) or "").strip()
        post = any(f" {k} " in f" {rest} " for k in _POST_DATA)
        if verb.startswith("launching"):  # --jobs: an object started by one of the workers
            if "TABLE DATA" in rest:
                state["loading"] += 1
                phase("data")
            elif post:
                phase("data, indexes and constraints" if state["loading"] else "indexes and constraints")
            note_item(progress, rest, count=False)
        elif verb.startswith("finished item"):
            if "TABLE DATA" in rest:
                state["loading"] -= 1
                if not state["loading"] and state["phase"] == "data, indexes and constraints":
                    phase("indexes and constraints")
            note_item(progress, rest)
        elif verb == "processing data for table":
            phase("data")
            note_item(progress, rest.strip('"'))
        elif verb == "creating" and rest.split(' "')[0] in _POST_DATA:
            phase("indexes and constraints")
            note_item(progress, rest)
        return True

    return watch


class RestoreMixin:
    """The restore half of :class:`~dbsnap.engines.postgresql.engine.PostgreSQLEngine` (connections and tools there)."""

    # -- restore: facts about the live database ----------------------------------------------------------

    def can_swap(self, conn: psycopg.Connection, owner: str) -> bool:
        """Whether this role can create databases and rename the live one (else: in-transaction restore)."""
        return bool(
            conn.execute(
                "SELECT (r.rolsuper OR r.rolcreatedb) AND pg_has_role(current_user, %s, 'MEMBER') "
                "FROM pg_roles r WHERE r.rolname = current_user",
                (owner,),
            ).fetchone()[0]
        )

    def restore_mode(self) -> str:
        """The restore mode, swap or transaction; asked once per command, so the plan and the restore agree."""
        if "restore_mode" not in self._cache:
            with self.maintenance() as conn:
                props = db_props(conn, self.db.name)
                if props is None:
                    raise ExternalError(f"database {self.db.name!r} does not exist at {self.where()}")
                self._cache["restore_mode"] = "swap" if self.can_swap(conn, props["owner"]) else "transaction"
        return self._cache["restore_mode"]

    # -- restore: swap mode -----------------------------------------------------------------------------

    def new_restore_state(self, payload: Path | None, saved: dict | None = None, consume: bool = False) -> dict:
        """``payload`` None: a clone-only snapshot, restored from its clone or not at all (IntegrityError when the
        clone vanished). ``consume``: the clone itself is renamed into place (no copy)."""
        token = secrets.token_hex(3)
        base = self.db.name[:40]
        state = {
            "mode": self.restore_mode(),
            "live": self.db.name,
            "scratch": f"{base}_dbsnap_new_{token}",
            "old": f"{base}_dbsnap_old_{token}",
            "payload": str(payload) if payload is not None else None,
        }
        clone = (saved or {}).get("clone")
        if payload is None:
            if state["mode"] != "swap":
                raise RollbackError(
                    f"snapshot of {self.db.name!r} is clone-only and this role cannot create databases "
                    "(a clone is copied into a new database); nothing was changed"
                )
            if not self.clone_ok(clone):
                raise IntegrityError(f"clone {(clone or {}).get('name')} of a clone-only snapshot vanished")
        if clone and state["mode"] == "swap":
            if self.clone_ok(clone):
                state["clone"] = clone["name"]
                if consume:
                    state["consume"] = True
                    state["scratch"] = clone["name"]  # renamed into place itself: nothing is copied
            else:
                state["warning"] = f"clone {clone['name']} is missing or was replaced: restoring from the dump"
        return state

    def prepare_restore(self, state: dict, progress: Progress | None = None) -> dict:
        server_major, _ = self.server_version()
        if state["mode"] == "transaction":
            self.tool("pg_restore", server_major)
            self.tool("psql", server_major)
            return state  # everything happens in swap_in, inside one transaction
        if state.get("consume"):
            return state  # the clone is the prepared database; swap_in renames it
        pg_restore = self.tool("pg_restore", server_major)[0] if state.get("payload") else []
        with self.maintenance() as conn:
            conn.execute("SET statement_timeout = 0")  # copying a clone is work, not a wait (locks stay bounded)
            props = db_props(conn, self.db.name)
            if props is None:
                raise ExternalError(f"database {self.db.name!r} does not exist at {self.where()}")
            if state.get("clone"):
                try:
                    create_like(
                        conn, props, state["scratch"], template=state["clone"], server_major=self.server_major()
                    )
                except psycopg.Error as e:
                    if not state.get("payload"):
                        raise ExternalError(f"copying clone {state['clone']} failed: {first_line(e)}") from e
                    state.pop("clone")
                    state["warning"] = f"copying the clone failed ({first_line(e)}): restoring from the dump"
                    self.checkpoint(state)
            if not state.get("clone"):
                create_like(conn, props, state["scratch"], server_major=self.server_major())
        try:
            faults.point("pg.after-create-scratch")
            if not state.get("clone"):
                self._pg_restore(pg_restore, state, state["scratch"], progress)
        except BaseException:
            self.discard(state)
            raise
        return state

    def restored_facts(self, payload: Path) -> dict:
        """Restore into ``dbsnap_verify_<hex>`` (no owners or grants: only the data is compared), read the
        facts, drop it: in ``finally``, so also after an error or Ctrl-C."""
        server_major, _ = self.server_version()
        pg_restore, _ = self.tool("pg_restore", server_major)
        name = f"dbsnap_verify_{secrets.token_hex(4)}"
        with self.maintenance() as conn:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
            except psycopg.Error as e:
                raise ExternalError(f"--deep needs a scratch database: {first_line(e)}") from e
        try:
            argv = [*pg_restore, "--no-password", "--exit-on-error", "--single-transaction", "--no-owner"]
            argv += ["--no-privileges", "-d", name]
            try:
                self._feed(argv, payload, None, env=self.tool_env(name), what=f"pg_restore of {payload.name}")
            except ExternalError as e:
                raise IntegrityError(f"{payload.name}: does not restore: {e.message}") from e
            faults.point("verify.after-restore")
            with self.connect(name) as conn:
                return {"tables": self._table_counts(conn), "migrations": self._migration_rows(conn)}
        finally:
            self._drop(name)

    def _pg_restore(self, pg_restore: list[str], state: dict, dbname: str, progress: Progress | None) -> None:
        """Restore the payload into the (scratch) database ``dbname``: streamed through one pg_restore, or, with
        ``state["jobs"]`` > 1, from a spooled copy by ``pg_restore --jobs`` (tables, indexes and constraints in
        parallel). A failure leaves only the scratch database, which the caller drops."""
        payload = Path(state["payload"])
        # --verbose: pg_restore names each object as it starts it, which tells the progress line the phase
        # (data, then indexes and constraints); those lines are kept out of the error message.
        argv = [*pg_restore, "--no-password", "--exit-on-error", "--verbose", "-d", dbname]
        env, what = self.tool_env(dbname), f"pg_restore into {dbname!r}"
        jobs = int(state.get("jobs") or 1)
        if getattr(self, "tools_in_container", lambda: False)():
            jobs = 1  # a spooled file on the host is not there for a pg_restore inside a container: stream it
        if jobs > 1:
            set_phase(progress, "decompressing")
        spool = self._spool(payload, state, progress) if jobs > 1 else None
        watch = restore_watcher(progress, streamed=spool is None)
        if spool is None:
            set_phase(progress, "schema")
            feed([*argv, "--single-transaction"], payload, progress, env, what, watch=watch)
            set_phase(progress, "commit", show_bytes=False)
            return
        try:
            faults.point("pg.after-spool")
            set_phase(progress, "schema", show_bytes=False)
            run_watched([*argv, f"--jobs={jobs}", str(spool)], env, what, watch)
        finally:
            spool.unlink(missing_ok=True)

    @staticmethod
    def spool_shortfall(state: dict) -> str | None:
        """Why a parallel restore cannot spool its dump under ``state["spool_dir"]`` (too little room), or None."""
        folder = Path(state["spool_dir"])
        need = int(state.get("raw_bytes") or 0)
        free = shutil.disk_usage(folder).free
        if need and free < need + SPOOL_HEADROOM:
            return f"{folder} has {free >> 20} MiB free, a parallel restore needs {need >> 20} MiB there: streaming"
        return None

    def _spool(self, payload: Path, state: dict, progress: Progress | None) -> Path | None:
        """Decompress the payload into a private file under ``state["spool_dir"]`` (the store's ``.tmp``, cleaned
        by the next locked run if this one is killed): ``pg_restore --jobs`` must seek, so it cannot read a pipe.
        None, with ``state["jobs"]`` set back to 1 and a warning, when there is no room: the restore is streamed."""
        folder = Path(state["spool_dir"])
        short = self.spool_shortfall(state)
        if short:
            state["jobs"] = 1
            state["warning"] = short
            return None
        spool = folder / f"restore-{self.db.alias}-{secrets.token_hex(4)}.dump"
        try:
            decompress_to(payload, spool, progress)
        except OSError as e:
            spool.unlink(missing_ok=True)
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            state["jobs"] = 1
            state["warning"] = f"{folder} filled up while preparing a parallel restore: streaming instead"
            return None
        except BaseException:
            spool.unlink(missing_ok=True)
            raise
        return spool

    def _feed(self, argv: list[str], payload: Path, progress: Progress | None, env: dict, what: str, head: str = ""):
        """Stream the decompressed payload (after ``head``) into a tool's stdin; ExternalError if it fails."""
        feed(argv, payload, progress, env, what, head)

    def _terminate_others(self, conn: psycopg.Connection, name: str, wait: float | None = None) -> list[int]:
        """Terminate the other sessions on ``name`` and wait (bounded) until they are gone.

        Returns the pids still there: sessions this role may not signal (another role's, without
        pg_signal_backend), or ones that would not end in time. Callers then fail clearly on their own step
        (a rename refused, a lock_timeout), never by waiting silently.
        """
        deadline = time.monotonic() + (self.bounds.terminate_timeout if wait is None else wait)
        denied: set[int] = set()
        while True:
            pids = [
                r[0]
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
                ).fetchall()
            ]
            for pid in pids:
                if pid in denied:
                    continue
                try:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                except psycopg.errors.InsufficientPrivilege:
                    denied.add(pid)
            if not pids or set(pids) <= denied or time.monotonic() > deadline:
                return pids
            time.sleep(0.05)

    def _rename_pair(self, first: tuple[str, str], second: tuple[str, str], seal: str | None = None) -> None:
        """Rename two databases in one transaction (both or neither), terminating sessions on them first; give
        up after ``bounds.terminate_timeout`` with an error naming the sessions that stayed. ``seal``: a name
        (after the renames) whose connections are turned off in the same transaction."""
        self._renames([first, second], allow={seal: False} if seal else {})

    def _renames(self, renames: list[tuple[str, str]], allow: dict[str, bool]) -> None:
        """ALTER DATABASE RENAME each pair, then ALLOW_CONNECTIONS per ``allow`` (names after the renames), all
        in one transaction: every change or none. Sessions on the renamed databases are ended first (bounded)."""
        deadline = time.monotonic() + self.bounds.terminate_timeout
        with self.maintenance() as conn:
            while True:
                left = [p for a, _ in renames for p in self._terminate_others(conn, a)]
                try:
                    with conn.transaction():
                        for a, b in renames:
                            conn.execute(
                                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(a), sql.Identifier(b))
                            )
                        for name, on in allow.items():
                            conn.execute(
                                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                                    sql.Identifier(name), sql.SQL("true" if on else "false")
                                )
                            )
                    return
                except (psycopg.errors.ObjectInUse, psycopg.errors.LockNotAvailable) as e:
                    if time.monotonic() > deadline:
                        who = "; ".join(describe(conn, left)) or first_line(e)
                        break
                    time.sleep(0.1)  # a client reconnected between terminate and rename: try again
            raise RollbackError(
                f"could not swap databases: other sessions on {renames[0][0]!r} could not be ended within "
                f"{self.bounds.terminate_timeout:g} s (terminate-timeout): {who}",
                hint="stop the application, or run dbsnap as the database owner or a role with pg_signal_backend",
            )

    def swap_in(self, state: dict) -> dict:
        """Both renames in one transaction; a kept ``old`` (the safety snapshot's clone) is sealed in it, and a
        consumed clone opened to connections."""
        if state["mode"] == "transaction":
            return self._restore_in_transaction(state)
        allow = {state["live"]: True} if state.get("consume") else {}
        if state.get("keep"):
            allow[state["old"]] = False
        self._renames([(state["live"], state["old"]), (state["scratch"], state["live"])], allow)
        return state

    def undo_swap(self, state: dict) -> None:
        if state["mode"] == "transaction":
            raise RollbackError(
                f"database {state['live']!r} was restored in place and cannot be swapped back",
                hint="roll back to the safety snapshot to return to the previous state",
            )
        with self.maintenance() as conn:
            exists = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        if state["old"] in exists:
            allow = {state["live"]: True}  # a kept old one was sealed by swap_in
            if state.get("consume"):
                allow[state["scratch"]] = False  # the consumed clone is a sealed clone again
            self._renames([(state["live"], state["scratch"]), (state["old"], state["live"])], allow)

    def _drop(self, name: str) -> None:
        with self.maintenance() as conn:
            self._terminate_others(conn, name)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def finish(self, state: dict) -> None:
        """Drop the replaced database, unless it is kept as the safety snapshot's clone."""
        if state["mode"] == "swap" and not state.get("keep"):
            self._drop(state["old"])

    def discard(self, state: dict) -> None:
        """Drop the prepared copy; a clone that was to be consumed stays the snapshot's."""
        if state["mode"] == "swap" and not state.get("consume"):
            self._drop(state["scratch"])

    def is_swapped(self, state: dict) -> bool:
        if state["mode"] == "transaction":
            return self.transaction_outcome(state) == "committed"
        with self.maintenance() as conn:
            exists = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        # No scratch left: swapped in (``old`` kept, or already dropped by ``finish``, which an interrupted
        # forward recovery must not mistake for "not swapped yet"); an unprepared restore has nothing to undo.
        return state["scratch"] not in exists
