"""SQLite: the live file kept aside and put back by rename, and the replaced file kept as a rollback's
clone-only safety snapshot (the file itself in the snapshot folder, with its SHA-256)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import RollbackError
from ..store.archive import CHUNK
from ..store.fsutil import Writeback, create_private, move_file, sha256_file
from .base import Progress


class KeepMixin:
    """Keeping for :class:`~dbsnap.engines.sqlite.SQLiteEngine` (``path``, ``_checkpoint_live`` and
    ``_drop_sidecars`` are there)."""

    # -- the live file kept in the store, and a kept file put back as the live one ---------------------------

    def keep_as_clone(self, dest: Path) -> dict:
        """Move the live file to the new path ``dest`` (in the store): a rename, or a copy across file systems
        (:func:`~dbsnap.store.fsutil.move_file`). Its WAL is folded in first (RollbackError, nothing changed,
        when another process is writing); its ``-wal``/``-shm`` go. Returns ``{"sha256", "bytes"}`` of the file.

        Afterwards there is no live file: the caller puts one there (a swap, or :meth:`put_clone_in_place`)."""
        if not self.path.is_file():
            raise RollbackError(f"SQLite database {self.path} does not exist; nothing was changed")
        self._checkpoint_live()
        facts = {"sha256": sha256_file(self.path), "bytes": self.path.stat().st_size}
        move_file(self.path, Path(dest))
        self._drop_sidecars(self.path)
        return facts

    def put_clone_in_place(self, src: Path, expected_sha256: str) -> None:
        """Move the kept file ``src`` to the live path. Refuses (RollbackError, nothing changed) when a live file
        exists, or when ``src`` is missing or its SHA-256 is not ``expected_sha256``."""
        src = Path(src)
        if self.path.exists():
            raise RollbackError(f"cannot put {src} in place: {self.path} exists; nothing was changed")
        if not src.is_file() or sha256_file(src) != expected_sha256:
            raise RollbackError(f"cannot put {src} in place: it is missing or was changed; nothing was changed")
        self._drop_sidecars(self.path)  # a stale -wal beside the new file would be replayed into it
        move_file(src, self.path)

    # -- the replaced file kept as the rollback's safety snapshot (clone-only) --------------------------------

    def can_keep_replaced(self) -> bool:
        return self.path.is_file()

    def keep_replaced(self, state: dict, clone_name: str, folder: Path) -> dict:
        """Keep the replaced file as ``folder/db-<alias>.sqlite3``: moved there by ``finish`` (a rename) when the
        store is on the database's file system; else copied there now, before anything is swapped, so that a
        full store fails the rollback with nothing changed instead of its forward half."""
        dest = Path(folder) / self.clone_file()
        state["keep"] = str(dest)
        if os.stat(folder).st_dev != os.stat(self.path.parent).st_dev:
            self._checkpoint_live()
            copy_file(self.path, dest)
            state["kept"] = {"sha256": sha256_file(dest), "bytes": dest.stat().st_size, "copied": True}
        return state

    def clone_file(self) -> str:
        """The name of a kept database file in a snapshot folder."""
        return f"db-{self.db.alias}.sqlite3"

    def kept_clone(self, state: dict) -> tuple[dict, int]:
        kept = state.get("kept")
        if not kept or not Path(state["keep"]).is_file():
            raise RollbackError(f"the replaced database file, kept as {state.get('keep')}, is missing")
        return {"file": Path(state["keep"]).name, "sha256": kept["sha256"]}, int(kept["bytes"])


def copy_file(src: Path, dest: Path, progress: Progress | None = None) -> None:
    """Copy ``src`` to the new file ``dest`` (FileExistsError if it exists) and fsync it: a kept database file
    restored without consuming it. In the kernel where it can (``copy_file_range``), in steps, each handed to
    the disk as it goes (:class:`Writeback`), so the final fsync does not wait for the whole file."""
    with open(src, "rb") as s, create_private(dest, buffering=0) as d:
        wb = Writeback(d.fileno())
        total, kernel = 0, hasattr(os, "copy_file_range")
        while True:
            n = 0
            if kernel:
                try:
                    n = os.copy_file_range(s.fileno(), d.fileno(), Writeback.STEP)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or total:
                        raise
                    kernel = False
            if not kernel:
                chunk = s.read(CHUNK)
                n = len(chunk)
                d.write(chunk)
            if n == 0:
                break
            total += n
            wb.wrote(total)
            if progress:
                progress(n)
        os.fsync(d.fileno())
