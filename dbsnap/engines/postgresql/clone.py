"""Server-side clones for fast rollback (``save --clone``): a ``CREATE DATABASE ... TEMPLATE`` copy of the live
database, kept with ``datallowconn = false`` so that nobody connects to it by accident.

The dump of a cloned snapshot is taken from the clone itself, so the clone and the dump hold exactly the same
data. Rollback copies the clone into a scratch database and swaps it in by rename, like the dump path: the live
database is never dropped first. The clone's oid is recorded in the manifest; a clone that is missing or was
replaced (another oid) is not used, and rollback falls back to the dump.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import psycopg
from psycopg import sql

from ...errors import ExternalError, IntegrityError, RollbackError
from ..base import first_line


class CloneMixin:
    """Clone handling for :class:`~dbsnap.engines.postgresql.engine.PostgreSQLEngine`."""

    def clone_prefix(self, store_root: Path) -> str:
        """``<live>_dbsnap_c_<store>_``: what every clone of this database made for this store starts with."""
        store_id = hashlib.sha256(str(store_root).encode()).hexdigest()[:8]
        return f"{self.db.name[:24]}_dbsnap_c_{store_id}_"

    def clone_name(self, store_root: Path, snapshot: str, created_at: str) -> str:
        """``<live>_dbsnap_c_<store>_<snapshot>``: the hashes tie the clone to one store and one snapshot."""
        snap_id = hashlib.sha256(f"{snapshot}\0{created_at}".encode()).hexdigest()[:8]
        return self.clone_prefix(store_root) + snap_id

    def is_own_clone(self, name: object, store_root: Path) -> bool:
        """Whether ``name`` (read from disk: trusted for nothing) is a clone name of this database and store."""
        pattern = re.escape(self.clone_prefix(store_root)) + "[0-9a-f]{8}"
        return isinstance(name, str) and re.fullmatch(pattern, name) is not None

    def own_clones(self, store_root: Path) -> list[str]:
        """The databases on the server named as this database's clones for this store."""
        with self.maintenance() as conn:
            names = [r[0] for r in conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()]
        return [n for n in names if self.is_own_clone(n, store_root)]

    def drop_stray_clone(self, name: str, store_root: Path) -> bool:
        """Drop the clone ``name`` if it is one of this store's and exists; True when it was dropped."""
        try:
            if not self.is_own_clone(name, store_root) or name not in self.own_clones(store_root):
                return False
            self._drop(name)
        except psycopg.Error as e:
            raise ExternalError(f"cannot drop {name!r}: {first_line(e)}") from e
        return True

    def make_clone(self, name: str, wait: float = 5.0) -> int:
        """Copy the live database to ``name`` on the server; return the clone's oid.

        A template copy needs the live database to have no other sessions for a moment; dbsnap does not end
        them for a save, it retries briefly and then gives up (ExternalError), and the save goes on without one.
        """
        strategy = sql.SQL(" STRATEGY FILE_COPY") if self.server_major() >= 15 else sql.SQL("")
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
            sql.Identifier(name), sql.Identifier(self.db.name), strategy
        )
        deadline = time.monotonic() + wait
        with self.maintenance() as conn:
            conn.execute("SET statement_timeout = 0")  # copying a big database is work, not a wait (locks stay bounded)
            while True:
                try:
                    conn.execute(stmt)
                    break
                except psycopg.errors.ObjectInUse as e:
                    if time.monotonic() > deadline:
                        raise ExternalError(
                            f"cannot clone {self.db.name!r}: other sessions are connected to it ({first_line(e)})"
                        ) from e
                    time.sleep(0.1)
                except psycopg.Error as e:
                    raise ExternalError(f"cannot clone {self.db.name!r}: {first_line(e)}") from e
            return int(conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()[0])

    def seal_clone(self, name: str) -> None:
        """No new connections to the clone: it is a snapshot, not a database to use."""
        with self.maintenance() as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))

    def clone_ok(self, clone: dict | None) -> bool:
        """The recorded clone exists and is the same database (same oid) that the save created."""
        if not clone:
            return False
        with self.maintenance() as conn:
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (clone["name"],)).fetchone()
        return row is not None and int(row[0]) == int(clone["oid"])

    def drop_clone(self, clone: dict) -> bool:
        """Drop the recorded clone if it is still the one the save made; True when it was dropped."""
        if not self.clone_ok(clone):
            return False
        with self.maintenance() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(clone["name"])))
        return True

    # -- the live database kept as a clone, and a clone put back as the live database (O(1): renames) ----------

    def _oid_of(self, name: str) -> int | None:
        with self.maintenance() as conn:
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return int(row[0]) if row else None

    def keep_as_clone(self, clone_name: str) -> int:
        """Rename the live database to ``clone_name`` and seal it (``datallowconn = false``) in ONE transaction,
        after ending the other sessions on it as a rollback does (bounded by ``bounds.terminate_timeout``,
        RollbackError naming those that stayed). Returns the clone's oid (the live database's: a rename keeps it).

        Afterwards no database has the live name: the caller puts one there (a swap, or
        :meth:`put_clone_in_place`). Refuses (RollbackError, nothing changed) when ``clone_name`` exists or the
        live database does not."""
        oid = self._oid_of(self.db.name)
        if oid is None:
            raise RollbackError(f"database {self.db.name!r} does not exist at {self.where()}; nothing was changed")
        if self._oid_of(clone_name) is not None:
            raise RollbackError(
                f"cannot keep {self.db.name!r} as {clone_name!r}: that name exists; nothing was changed"
            )
        self._renames([(self.db.name, clone_name)], allow={clone_name: False})
        return oid

    def put_clone_in_place(self, clone_name: str, expected_oid: int) -> None:
        """Rename the sealed clone ``clone_name`` to the live name and allow connections again, in ONE
        transaction. Refuses (RollbackError, nothing changed) when a database has the live name, or when the
        clone is missing or is not the one recorded (another oid)."""
        if self._oid_of(self.db.name) is not None:
            raise RollbackError(
                f"cannot put clone {clone_name!r} in place: database {self.db.name!r} exists; nothing was changed"
            )
        oid = self._oid_of(clone_name)
        if oid is None or oid != int(expected_oid):
            raise RollbackError(
                f"cannot put clone {clone_name!r} in place: it is missing or was replaced; nothing was changed"
            )
        self._renames([(clone_name, self.db.name)], allow={self.db.name: True})

    def switch_clones(self, keep_name: str, put_name: str, put_oid: int) -> int:
        """:meth:`keep_as_clone` and :meth:`put_clone_in_place` in ONE transaction: the live database becomes the
        sealed ``keep_name`` and the sealed ``put_name`` (of oid ``put_oid``) the live one, so there is never a
        moment without a live database. Same checks and refusals (RollbackError, nothing changed); the kept
        database's oid."""
        with self.maintenance() as conn:
            rows = conn.execute(
                "SELECT datname, oid FROM pg_database WHERE datname = ANY(%s)", ([self.db.name, keep_name, put_name],)
            ).fetchall()
        oids = {name: int(oid) for name, oid in rows}
        if self.db.name not in oids:
            raise RollbackError(f"database {self.db.name!r} does not exist at {self.where()}; nothing was changed")
        if keep_name in oids:
            raise RollbackError(f"cannot keep {self.db.name!r} as {keep_name!r}: that name exists; nothing was changed")
        if oids.get(put_name) != int(put_oid):
            raise RollbackError(
                f"cannot put clone {put_name!r} in place: it is missing or was replaced; nothing was changed"
            )
        renames = [(self.db.name, keep_name), (put_name, self.db.name)]
        self._renames(renames, allow={keep_name: False, self.db.name: True})
        return oids[self.db.name]

    # -- the database a rollback replaces, kept as its safety snapshot's clone (restore.py's swap seals it) ----

    def can_keep_replaced(self) -> bool:
        return self.restore_mode() == "swap"

    def keep_replaced(self, state: dict, clone_name: str, folder: Path) -> dict:
        """The swap renames the live database to ``clone_name`` and seals it (one transaction); finish keeps it."""
        state["old"] = clone_name
        state["keep"] = True
        return state

    def kept_clone(self, state: dict) -> tuple[dict, int]:
        with self.maintenance() as conn:
            row = conn.execute(
                "SELECT oid, pg_database_size(oid) FROM pg_database WHERE datname = %s", (state["old"],)
            ).fetchone()
        if row is None:
            raise RollbackError(f"the replaced database, kept as {state['old']!r}, is missing")
        return {"name": state["old"], "oid": int(row[0])}, int(row[1])

    def dump_kept(self, dest: Path, clone: dict, folder: Path, progress=None):
        """Dump a clone-only snapshot's clone to ``dest`` (``save --from``): connections to it are allowed for
        the dump only (pg_dump must connect), and it is sealed again afterwards, also after an error."""
        if not self.clone_ok(clone):
            raise IntegrityError(f"clone {clone.get('name')} vanished: there is nothing to dump")
        seal = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}")
        with self.maintenance() as conn:
            conn.execute(seal.format(sql.Identifier(clone["name"]), sql.SQL("true")))
        try:
            return self.dump(dest, progress, clone["name"])
        finally:
            with self.maintenance() as conn:
                self._terminate_others(conn, clone["name"])
                conn.execute(seal.format(sql.Identifier(clone["name"]), sql.SQL("false")))
