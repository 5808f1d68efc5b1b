"""SQLite rollback: the swap state comes from the journal, never from which files exist.

The repro of issue 11: a WAL database on a small, nearly full file system, a writer holding uncheckpointed
committed rows, and a stale ``*.dbsnap-old`` beside the live file. The restore runs out of space; the writer's
rows and the live file must survive untouched, and the stale file must never be moved over the live one.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest
from conftest import Project, sqlite_fingerprint, tmpfs
from test_faults import leftovers, states

WRITER_ROWS = 201


def _writer(db: Path) -> sqlite3.Connection:
    """An open writer in WAL mode that never checkpoints: its committed rows live only in ``-wal``."""
    w = sqlite3.connect(db, isolation_level=None)
    assert w.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    w.execute("PRAGMA wal_autocheckpoint=0")
    w.execute("CREATE TABLE writer_rows (id integer PRIMARY KEY, v text)")
    for i in range(WRITER_ROWS):
        w.execute("INSERT INTO writer_rows (v) VALUES (?)", (f"row {i}",))  # each its own committed transaction
    return w


def _fill(mnt: Path, leave: int) -> None:
    """Fill the file system at ``mnt`` until ``leave`` bytes are free."""
    free = shutil.disk_usage(mnt).free
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))
        f.flush()
        os.fsync(f.fileno())


def test_full_disk_rollback_keeps_wal_rows_and_never_uses_a_stale_old_file(sqlite_shop: Project, tmp_path: Path):
    p = sqlite_shop
    with tmpfs(tmp_path / "mnt", "16m") as mnt:
        db = mnt / "db.sqlite3"
        shutil.move(p.root / "db.sqlite3", db)
        p.env["SQLITE_PATH"] = str(db)
        p.ok("save", "base")
        rows_before = sqlite3.connect(db).execute("SELECT count(*) FROM orders_orderitem").fetchone()[0]
        # A stale file of an earlier, interrupted run: an empty database under the old name.
        stale = mnt / "db.sqlite3.dbsnap-old"
        sqlite3.connect(stale).close()
        stale_bytes = stale.read_bytes()
        writer = _writer(db)
        try:
            assert (mnt / "db.sqlite3-wal").stat().st_size > 0
            _fill(mnt, db.stat().st_size // 3)  # less room than the restored copy needs
            # Without the safety snapshot: keeping the replaced file (a copy, the store being on another file
            # system) folds the WAL in first, which frees its room; the full restore beside it is the point here.
            res = p.dbsnap("rollback", "base", "--yes", "--no-safety-snapshot")
            assert res.returncode == 8, res.stderr
            assert "nothing was changed" in res.stderr and "Traceback" not in res.stderr
            # The writer's committed rows survive, seen by the writer and by a new connection alike.
            assert writer.execute("SELECT count(*) FROM writer_rows").fetchone()[0] == WRITER_ROWS
            fresh = sqlite3.connect(db)
            assert fresh.execute("SELECT count(*) FROM writer_rows").fetchone()[0] == WRITER_ROWS
            assert fresh.execute("SELECT count(*) FROM orders_orderitem").fetchone()[0] == rows_before
            fresh.close()
            assert stale.read_bytes() == stale_bytes  # neither used nor removed: it is not this run's
            assert sorted(x.name for x in mnt.iterdir()) == [
                "db.sqlite3",
                "db.sqlite3-shm",
                "db.sqlite3-wal",
                "db.sqlite3.dbsnap-old",
                "filler",
            ]
            assert not (p.store / ".journal.json").exists()
        finally:
            writer.close()
        # With room again the same rollback works, and the stale file is still never taken for the old one.
        (mnt / "filler").unlink()
        p.ok("rollback", "base", "--yes")
        assert not sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE name = 'writer_rows'").fetchall()
        assert stale.read_bytes() == stale_bytes


@pytest.mark.parametrize("point", ["sqlite.before-rename", "sqlite.after-rename"])
def test_kill9_around_the_sqlite_rename_is_undone_from_the_journal(sqlite_shop: Project, point: str) -> None:
    p = sqlite_shop
    _, _, b_fp, b_files = states(p)
    stale = p.root / "db.sqlite3.dbsnap-old"
    sqlite3.connect(stale).close()
    stale_bytes = stale.read_bytes()
    killed = p.dbsnap("rollback", "target", "--yes", env={"DBSNAP_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    res = p.ok("list")
    assert "interrupted rollback to 'target' was found and undone" in res.stderr
    assert sqlite_fingerprint(p.root / "db.sqlite3") == b_fp and p.migration_files() == b_files
    assert stale.read_bytes() == stale_bytes
    stale.unlink()
    assert leftovers(p) == []
