"""SQLite: a consistent copy with the backup API, compressed; restore to a file beside the live one + rename."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from .. import faults
from ..errors import ExternalError, IntegrityError, RollbackError
from ..schema import Schema
from ..store.archive import compress_chunks, decompress_to, read_chunks
from ..store.fsutil import atomic_debris, fsync_dir, move_file, remove_tree, sha256_file
from .base import DumpResult, Engine, Progress, set_phase
from .sqlite_keep import KeepMixin, copy_file
from .sqlite_schema import describe

SIDECARS = ("-wal", "-shm", "-journal")


def _connect(path: Path | str, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{Path(path).as_posix()}?mode=ro" if readonly else f"file:{Path(path).as_posix()}"
    return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)


def migration_rows(conn: sqlite3.Connection) -> list[list[str]]:
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='django_migrations'").fetchone()
    if not has:
        return []
    return [list(r) for r in conn.execute("SELECT app, name FROM django_migrations ORDER BY id")]


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {n: conn.execute(f'SELECT count(*) FROM "{n.replace(chr(34), chr(34) * 2)}"').fetchone()[0] for n in names}


class SQLiteEngine(KeepMixin, Engine):
    kind = "sqlite"
    payload_suffix = ".sqlite3.zst"
    plain_format = "SQLite database file"

    @classmethod
    def recognizes(cls, head: bytes) -> bool:
        return head.startswith(b"SQLite format 3\x00")

    @property
    def path(self) -> Path:
        return Path(self.db.name)

    def preflight(self, for_restore: bool = False) -> dict:
        if not for_restore and not self.path.is_file():
            raise ExternalError(f"SQLite database {self.path} does not exist", hint="run 'manage.py migrate' first")
        if for_restore and not self.path.parent.is_dir():
            raise ExternalError(f"folder {self.path.parent} of the SQLite database does not exist")
        return {"server_version": sqlite3.sqlite_version, "client_version": sqlite3.sqlite_version}

    def dump(
        self, dest: Path, progress: Progress | None = None, dbname: str | None = None, keep: Path | None = None
    ) -> DumpResult:
        """The compressed payload ``dest`` of a consistent copy of the database. With ``keep`` (``save --clone``)
        that copy is kept too, fsynced, as the snapshot's clone file (``meta["clone"]``: its name and SHA-256),
        which a rollback copies (or renames into place) instead of decompressing."""
        raw = dest.with_name(dest.name + ".raw")
        try:
            try:
                src = _connect(self.path, readonly=True)
                dst = sqlite3.connect(raw)
                set_phase(progress, "copy", show_bytes=False)  # one backup step: nothing to count until it ends
                # One step (pages=-1): a single read transaction, so the copy is consistent even while the
                # application writes (it never restarts, unlike a paged backup under concurrent writes).
                src.backup(dst)
                src.close()
            except sqlite3.Error as e:
                if getattr(e, "sqlite_errorcode", None) == 13:  # SQLITE_FULL: the store's disk, not the database
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(raw)) from e
                raise ExternalError(f"cannot copy SQLite database {self.path}: {e}") from e
            rows = migration_rows(dst)
            tables = table_counts(dst)
            dst.close()
            set_phase(progress, "compress", total=raw.stat().st_size)
            digest = hashlib.sha256()
            with open(raw, "rb") as f:
                info = compress_chunks(_hashed(read_chunks(f), digest), dest, progress)
            meta = {}
            if keep is not None:
                os.chmod(raw, 0o600)
                with open(raw, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(raw, keep)
                fsync_dir(keep.parent)
                meta["clone"] = {"file": keep.name, "sha256": digest.hexdigest()}
        finally:
            with contextlib.suppress(FileNotFoundError):
                raw.unlink()
        return DumpResult(payload=info, migrations=rows, tables=tables, meta=meta)

    def dump_kept(self, dest: Path, clone: dict, folder: Path, progress: Progress | None = None) -> DumpResult:
        """Compress a clone-only snapshot's kept file (in ``folder``) to the payload ``dest`` (``save --from``);
        read as immutable, so not even a ``-wal`` appears beside it."""
        src = Path(folder) / clone["file"]
        conn = sqlite3.connect(f"file:{src.as_posix()}?mode=ro&immutable=1", uri=True)
        try:
            rows, tables = migration_rows(conn), table_counts(conn)
        finally:
            conn.close()
        with open(src, "rb") as f:
            info = compress_chunks(read_chunks(f), dest, progress)
        return DumpResult(payload=info, migrations=rows, tables=tables)

    def restored_facts(self, payload: Path) -> dict:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="dbsnap-verify-") as tmp:
            path = Path(tmp) / "restored.sqlite3"
            decompress_to(payload, path)
            conn = sqlite3.connect(path)
            try:
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise IntegrityError(f"{payload.name}: the restored database fails quick_check: {check}")
                return {"tables": table_counts(conn), "migrations": migration_rows(conn)}
            except sqlite3.DatabaseError as e:
                raise IntegrityError(f"{payload.name}: not a usable SQLite database ({e})") from e
            finally:
                conn.close()

    def drop_everything(self) -> None:
        """Swap a fresh empty database file in atomically (the old one is in the safety snapshot)."""
        self._checkpoint_live()
        fresh = self.path.with_name(f".{self.path.name}.dbsnap-empty-{secrets.token_hex(4)}")
        try:
            sqlite3.connect(fresh).close()
            with open(fresh, "rb") as f:
                os.fsync(f.fileno())
            if self.path.exists():
                os.chmod(fresh, self.path.stat().st_mode & 0o777)
            os.replace(fresh, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                fresh.unlink()
        fsync_dir(self.path.parent)
        for s in SIDECARS[:2]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(self.path) + s)

    def describe_schema(self, target: str | None = None) -> Schema:
        return describe(target or str(self.path))

    def create_scratch(self) -> str:
        """A name for a temp file beside the database (Django creates it when it connects)."""
        return str(self.path.with_name(f".{self.path.name}.dbsnap-scratch-{secrets.token_hex(4)}"))

    def drop_scratch(self, target: str) -> None:
        for s in ("", *SIDECARS):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target + s)

    def replace_migration_rows(self, apps: list[str], rows: list[tuple[str, str]]) -> None:
        """One ``BEGIN IMMEDIATE`` transaction: a kill before its COMMIT leaves SQLite's rollback journal (or
        WAL) to put the old rows back at the next open."""
        outside = sorted({a for a, _ in rows} - set(apps))
        if outside:
            raise ValueError(f"rows of apps not being replaced: {outside}")
        # As Django's SQLite backend writes a DateTimeField: naive UTC, "YYYY-MM-DD HH:MM:SS.ffffff".
        now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
        conn = _connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            marks = ", ".join("?" * len(apps))
            conn.execute(f"DELETE FROM django_migrations WHERE app IN ({marks})", list(apps))
            conn.executemany(
                "INSERT INTO django_migrations (app, name, applied) VALUES (?, ?, ?)", [(a, n, now) for a, n in rows]
            )
            faults.point("keep-data.during-history-rewrite")  # inside the transaction, before COMMIT
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise ExternalError(f"rewriting django_migrations of {self.path} failed (nothing was changed): {e}") from e
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()

    def object_definitions(self) -> list[tuple[str, str, str, str]]:
        if not self.path.exists():
            return []
        conn = _connect(self.path, readonly=True)
        try:
            rows = conn.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE type IN ('view', 'trigger') AND sql IS NOT NULL "
                "ORDER BY type = 'trigger', rowid"
            ).fetchall()
        finally:
            conn.close()
        quoted = {name: '"' + name.replace('"', '""') + '"' for _, name, _ in rows}
        return [(k, n, sql, f"DROP {k.upper()} IF EXISTS {quoted[n]}") for k, n, sql in rows]

    def migration_rows(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        conn = _connect(self.path, readonly=True)
        try:
            return migration_rows(conn)
        finally:
            conn.close()

    def new_restore_state(self, payload: Path | None, saved: dict | None = None, consume: bool = False) -> dict:
        """A clone-only snapshot's ``payload`` is its kept database file (copied, or moved with ``consume``)."""
        new, old = restore_names(self.path, secrets.token_hex(4))
        # "swap" is the journal's record of the rename, never inferred from which files exist: "none" until
        # swap_in starts, "renaming" (with the identities of both files) just before os.replace, "done" after.
        state = {"live": str(self.path), "new": str(new), "old": str(old), "payload": str(payload), "swap": "none"}
        clone = (saved or {}).get("clone") or {}
        if payload is not None and clone.get("file") == payload.name:
            state["raw"] = True  # the kept database file, not a compressed payload
            state["consume"] = consume
        return state

    def prepare_restore(self, state: dict, progress: Progress | None = None) -> dict:
        new, payload = Path(state["new"]), Path(state["payload"])
        try:
            if state.get("consume"):
                move_file(payload, new)  # put back by discard if the rollback is undone
            elif state.get("raw"):
                copy_file(payload, new, progress)
            else:
                decompress_to(payload, new, progress, durable=True)
            os.chmod(new, self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644)
            # The bytes are the snapshot's exactly (SHA-256 checked before, zstd frame checksum while
            # decompressing); a full quick_check would read the whole file again for nothing (verify --deep does
            # it). Opening it and reading the schema proves it is a database this SQLite can use.
            try:
                conn = sqlite3.connect(f"file:{new.as_posix()}?mode=ro", uri=True)
                try:
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                finally:
                    conn.close()
            except sqlite3.DatabaseError as e:
                raise IntegrityError(f"restored SQLite file is not a usable database: {e}") from e
        except BaseException:
            self.discard(state)
            raise
        return state

    def _checkpoint_live(self) -> None:
        """Fold any WAL into the live file so that no stale -wal is left next to the restored file."""
        if not self.path.exists():
            return
        conn = _connect(self.path)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        wal = Path(str(self.path) + "-wal")
        if busy or (wal.exists() and wal.stat().st_size > 0):
            raise RollbackError(
                f"another process is writing to {self.path}; nothing was changed",
                hint="stop the application (runserver, workers) and retry",
            )

    def swap_in(self, state: dict) -> dict:
        live, new, old = Path(state["live"]), Path(state["new"]), Path(state["old"])
        self._checkpoint_live()
        new_id = _identity(new)
        if new_id is None:
            raise RollbackError(f"the restored copy {new} is missing; nothing was changed")
        state["new_id"] = new_id
        if live.exists():
            remove_tree(old)  # this run's own name (a fresh token): never a stale file of another run
            # A hard link keeps the old database reachable while the new file is renamed over the live name,
            # so the live path never disappears, not even for an instant.
            try:
                os.link(live, old)
            except OSError:
                import shutil

                shutil.copy2(live, old)
            fsync_dir(live.parent)
            state["old_id"] = _identity(old)
        state["swap"] = "renaming"
        self.checkpoint(state)  # recorded before the rename: recovery then checks identities, not existence
        faults.point("sqlite.before-rename")
        os.replace(new, live)
        fsync_dir(live.parent)
        faults.point("sqlite.after-rename")
        state["swap"] = "done"
        self.checkpoint(state)
        # dbsnap itself moved the database: the sidecars (checkpointed and empty) belong to the old file.
        self._drop_sidecars(live)
        return state

    def undo_swap(self, state: dict) -> None:
        """Put the old file back, only when the journal shows dbsnap swapped the new one in, and only the file
        dbsnap linked aside itself (same inode): a stale ``-old`` is never moved over a live database, and the
        live database's ``-wal``/``-shm`` are left alone unless dbsnap moved the database."""
        if not self.is_swapped(state):
            return
        live, old = Path(state["live"]), Path(state["old"])
        if state.get("old_id") is None or _identity(old) != state["old_id"]:
            raise RollbackError(
                f"cannot put the old {live} back: its copy {old} is missing or is not the one dbsnap made",
                hint="roll back to the safety snapshot to return to the previous state",
            )
        os.replace(old, live)
        fsync_dir(live.parent)
        self._drop_sidecars(live)
        state["swap"] = "none"

    @staticmethod
    def _drop_sidecars(live: Path) -> None:
        for s in SIDECARS[:2]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(live) + s)

    def finish(self, state: dict) -> None:
        """Remove the replaced file, or, when it is kept as the safety snapshot's, hash it and move it into the
        staged snapshot (a rename on one file system). Idempotent: repeated after a kill, it finds it moved."""
        old = Path(state["old"])
        mine = state.get("old_id") is None or _identity(old) == state["old_id"]
        if not state.get("keep"):
            if mine:
                remove_tree(old)
            return
        dest = Path(state["keep"])
        if (state.get("kept") or {}).get("copied"):  # copied into the store before the swap (another file system)
            if mine:
                remove_tree(old)
            return
        if state.get("old_id") is None or dest.exists() or not mine:
            return  # nothing was replaced, or it was moved already
        state["kept"] = {"sha256": sha256_file(old), "bytes": old.stat().st_size}
        self.checkpoint(state)
        for p in atomic_debris(dest.parent):  # a copy across file systems that a kill interrupted
            p.unlink(missing_ok=True)
        faults.point("sqlite.before-keep")
        move_file(old, dest)

    def discard(self, state: dict) -> None:
        """Throw the restored copy away (a consumed clone file goes back into its snapshot), and this run's link
        to the live file if the swap never happened."""
        new, payload = Path(state["new"]), Path(state["payload"])
        if state.get("consume") and new.exists() and not payload.exists():
            move_file(new, payload)
        remove_tree(new)
        old, live = Path(state["old"]), Path(state["live"])
        if state.get("old_id") and _identity(old) == state["old_id"] == _identity(live):
            old.unlink()  # a second name of the live file itself: removing it changes no data
            fsync_dir(live.parent)

    def is_swapped(self, state: dict) -> bool:
        """From the journal: "done" is swapped; "renaming" is swapped when the live path now holds the very file
        that was restored (its recorded device and inode); anything else, or a journal without the record
        (written before the swap began), is not."""
        swap = state.get("swap")
        if swap == "done":
            return True
        if swap != "renaming" or not state.get("new_id"):
            return False
        return _identity(Path(state["live"])) == state["new_id"]


def restore_names(live: Path, token: str) -> tuple[Path, Path]:
    """The names a restore of ``live`` uses beside it: the restored copy and the old file kept until finish,
    both ``.<name>.dbsnap-{new,old}-<token>`` (hidden, and unique per run so that debris of another run is
    never taken for this one's)."""
    return (
        live.with_name(f".{live.name}.dbsnap-new-{token}"),
        live.with_name(f".{live.name}.dbsnap-old-{token}"),
    )


def _hashed(chunks: Iterator[bytes], digest) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _identity(path: Path) -> list[int] | None:
    """(device, inode) of a file, or None when it does not exist: which file a name points at, not just that
    one does."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino]
