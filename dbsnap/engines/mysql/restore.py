"""MySQL/MariaDB restore, all or nothing: a scratch schema beside the live one, swapped in by one ``RENAME TABLE``.

MySQL has no ``RENAME DATABASE``. The dump is restored into ``<live>_dbsnap_new_<hex>``; the swap then moves every
live table (and sequence) to ``<live>_dbsnap_old_<hex>`` and every restored one into the live schema in one
``RENAME TABLE`` statement, which both servers carry out atomically. The live schema itself, its character set and
its grants stay. Views, triggers, routines and events do not move with their tables (:mod:`.programs`): before
anything changes, both schemas' programs are read and kept on the server, in ``<old>.dbsnap_programs_<hex>`` (the SQL
is never written to the journal file, whose content is not trusted enough to be executed); triggers are dropped
(they forbid the move), the tables renamed, and the snapshot's programs installed in the live schema.

The journal state (``self.checkpoint``) records the table lists and how far it went, ``swap``: ``none`` (live
untouched), ``moving`` (programs kept, triggers maybe dropped, rename maybe done), ``renamed``, ``done``.
Whether the rename took effect is read from the server (:meth:`RestoreMixin.is_swapped`), never inferred from the
journal alone, so a kill -9 at any instant is finished (programs installed again, idempotently) or undone (tables
renamed back, the live programs reinstalled) by the next command. Where the role may not create the two schemas
there is no other mode: the rollback refuses before anything is changed and says which grant it needs.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import MySQLdb

from ... import faults
from ...errors import ExternalError, RollbackError
from ..base import Progress
from . import programs
from .connection import ER_DBACCESS_DENIED, ER_LOCK_WAIT_TIMEOUT, MOVED_TYPES, error_code, error_text, qi
from .events import enabled_again


def derived_pattern(live: str) -> str:
    """The schema-name pattern a GRANT needs for dbsnap's scratch and old schemas of ``live``."""
    return qi(live[:40].replace("_", "\\_").replace("%", "\\%") + "\\_dbsnap\\_%")


class RestoreMixin:
    """The restore half of :class:`~dbsnap.engines.mysql.engine.MySQLEngine`."""

    def restore_mode(self) -> str:
        return "swap"

    def can_create_scratch(self) -> bool:
        return True

    def grant_hint(self) -> str:
        return (
            f"GRANT ALL ON {derived_pattern(self.db.name)}.* TO '{self.db.user or 'your role'}'@'<its host>' "
            "(dbsnap's scratch schemas; the swap restore needs them)"
        )

    def new_restore_state(self, payload: Path | None, saved: dict | None = None, consume: bool = False) -> dict:
        token = secrets.token_hex(3)
        base = self.db.name[:40]
        return {
            "mode": "swap",
            "live": self.db.name,
            "scratch": f"{base}_dbsnap_new_{token}",
            "old": f"{base}_dbsnap_old_{token}",
            "payload": str(payload),
            "swap": "none",
        }

    def _create(self, conn: MySQLdb.Connection, name: str) -> None:
        try:
            self.create_schema_like(conn, name)
        except MySQLdb.Error as e:
            if error_code(e) == ER_DBACCESS_DENIED:
                raise ExternalError(
                    f"cannot create the scratch schema {name!r}: {error_text(e)}; nothing was changed",
                    hint=self.grant_hint(),
                ) from e
            raise

    def prepare_restore(self, state: dict, progress: Progress | None = None) -> dict:
        conn = self.connect(None)
        try:
            self._create(conn, state["scratch"])
        finally:
            conn.close()
        try:
            faults.point("mysql.after-create-scratch")
            # Its events are created disabled (the scheduler must not run them on the scratch schema) and enabled
            # again once installed in the live one.
            state["enabled_events"] = self.feed(
                state["scratch"], Path(state["payload"]), progress, f"restore into {state['scratch']!r}"
            )
        except BaseException:
            self.discard(state)
            raise
        return state

    # -- the swap ----------------------------------------------------------------------------------------------

    def _rename(self, conn: MySQLdb.Connection, moves: list[tuple[str, str, str]]) -> None:
        """One RENAME TABLE for every (from schema, to schema, table): all or none. Other sessions on the live
        schema are ended first; their metadata locks are waited for at most db-lock-timeout, retried until
        terminate-timeout, then RollbackError naming them."""
        if not moves:
            return
        sql = "RENAME TABLE " + ", ".join(f"{qi(a)}.{qi(t)} TO {qi(b)}.{qi(t)}" for a, b, t in moves)
        deadline = time.monotonic() + self.bounds.terminate_timeout
        while True:
            self._kill_on(conn, self.db.name)
            try:
                self.q(conn, sql)
                return
            except MySQLdb.Error as e:
                if error_code(e) != ER_LOCK_WAIT_TIMEOUT or time.monotonic() > deadline:
                    if error_code(e) == ER_LOCK_WAIT_TIMEOUT:
                        raise self.blocked_error(f"swapping the tables of {self.db.name!r}", e) from e
                    raise

    def _snapshot_sides(self, conn: MySQLdb.Connection, state: dict) -> None:
        """Record both schemas' tables (journal) and programs (old schema) before the live schema is touched."""
        self._create(conn, state["old"])
        state["live_tables"] = self.tables(conn, state["live"], MOVED_TYPES)
        state["new_tables"] = self.tables(conn, state["scratch"], MOVED_TYPES)
        new = programs.read(conn, state["scratch"])
        enabled = set(state.get("enabled_events") or [])
        for p in new:
            if p["kind"] == "event" and p["name"] in enabled:
                p["sql"] = enabled_again(p["sql"])
        sides = {"old": programs.read(conn, state["live"]), "new": new}
        programs.save(conn, state["old"], sides)
        state["swap"] = "moving"
        self.checkpoint(state)

    def _programs(self, conn: MySQLdb.Connection, state: dict, side: str) -> list[dict]:
        got = programs.load(conn, state["old"], side)
        if got is None:
            raise RollbackError(
                f"the views, triggers and routines of {state['live']!r} kept in {state['old']!r}."
                f"{programs.store_table(state['old'])} are gone; tables are consistent, those objects are not",
                hint="roll back to the safety snapshot to bring them back",
            )
        return got

    def swap_in(self, state: dict) -> dict:
        conn = self.connect(None)
        try:
            if state.get("swap", "none") == "none":
                self._snapshot_sides(conn, state)
            faults.point("mysql.before-drop-triggers")
            if not self.is_swapped(state):
                programs.drop_all(conn, state["live"], ("trigger",))
                programs.drop_all(conn, state["scratch"], ("trigger",))
                faults.point("mysql.before-rename")
                moves = [(state["live"], state["old"], t) for t in state["live_tables"]]
                moves += [(state["scratch"], state["live"], t) for t in state["new_tables"]]
                self._rename(conn, moves)
            faults.point("mysql.after-rename")
            state["swap"] = "renamed"
            self.checkpoint(state)
            programs.install(conn, state["live"], self._programs(conn, state, "new"))
            faults.point("mysql.after-programs")
            state["swap"] = "done"
            self.checkpoint(state)
        except MySQLdb.Error as e:
            raise RollbackError(f"swapping in {state['live']!r} failed: {error_text(e)}") from e
        finally:
            conn.close()
        return state

    def is_swapped(self, state: dict) -> bool:
        """Read from the server: the restored tables have left the scratch schema (the rename took effect; the
        scratch schema may already be gone after ``finish``). With no restored table, the live ones have left
        the live schema; with no table at all, what the journal says."""
        if state.get("swap", "none") == "none" or "new_tables" not in state:
            return False
        conn = self.connect(None)
        try:
            if state["new_tables"]:
                return state["new_tables"][0] not in self.tables(conn, state["scratch"], MOVED_TYPES)
            if state["live_tables"]:
                return state["live_tables"][0] not in self.tables(conn, state["live"], MOVED_TYPES)
            return state["swap"] in ("renamed", "done")
        finally:
            conn.close()

    def undo_swap(self, state: dict) -> None:
        """Rename the tables back (one statement) and reinstall the live schema's own programs (idempotent)."""
        if not self.is_swapped(state):
            return
        conn = self.connect(None)
        try:
            old = self._programs(conn, state, "old")
            programs.drop_all(conn, state["live"], ("trigger",))
            moves = [(state["live"], state["scratch"], t) for t in state["new_tables"]]
            moves += [(state["old"], state["live"], t) for t in state["live_tables"]]
            self._rename(conn, moves)
            faults.point("mysql.after-unrename")
            programs.install(conn, state["live"], old)
            state["swap"] = "none"
            self.checkpoint(state)
        except MySQLdb.Error as e:
            raise RollbackError(f"putting the old {state['live']!r} back failed: {error_text(e)}") from e
        finally:
            conn.close()

    def finish(self, state: dict) -> None:
        """Make sure the snapshot's programs are installed (a killed swap's), then drop the old and scratch
        schemas."""
        if state.get("swap") != "done":
            conn = self.connect(None)
            try:
                programs.install(conn, state["live"], self._programs(conn, state, "new"))
            finally:
                conn.close()
            state["swap"] = "done"
            self.checkpoint(state)
        self.drop_schema(state["old"])
        self.drop_schema(state["scratch"])

    def discard(self, state: dict) -> None:
        """Put the live schema's own programs back if the swap had begun (it never renamed: undo_swap ran
        first otherwise), then drop the scratch schema, and the old one if it holds no table."""
        conn = self.connect(None)
        try:
            if state.get("swap", "none") != "none":
                programs.install(conn, state["live"], self._programs(conn, state, "old"))
                state["swap"] = "none"
                self.checkpoint(state)
            left = [t for t in self.tables(conn, state["old"], MOVED_TYPES) if t != programs.store_table(state["old"])]
        finally:
            conn.close()
        self.drop_schema(state["scratch"])
        if left:
            raise RollbackError(
                f"schema {state['old']!r} still holds {len(left)} table(s) of the live database; it was kept",
                hint="move them back to the live schema with RENAME TABLE, then drop it",
            )
        self.drop_schema(state["old"])
