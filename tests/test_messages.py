"""What rollback and reset say when they fail: the state they describe is the state they leave.

A full store during a rollback's or a reset's safety snapshot is not "nothing was saved" (that is a save's
line): it is the command's own failure, with the state (nothing changed) said; and the automatic rollback of a
failed reset reports on lines of its own, after the step line that failed.
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import Project, tmpfs


def fill(mnt: Path, leave: int) -> None:
    """Fill the file system at ``mnt`` until about ``leave`` bytes are free."""
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_full_store_during_rollback_safety_snapshot(sqlite_shop: Project, tmp_path: Path) -> None:
    p = sqlite_shop
    with tmpfs(tmp_path / "disk", "8m") as mnt:
        store = mnt / "snaps"
        p.ok("--store", str(store), "save", "base")
        p.sql("DELETE FROM orders_orderitem WHERE id % 2 = 0")
        before = (p.fingerprint(), p.migration_files())
        fill(mnt, 16 << 10)
        res = p.dbsnap("--store", str(store), "rollback", "base", "--yes")
        assert res.returncode == 8, res.stderr
        # The safety snapshot is the replaced file itself (kept by rename): what does not fit is the journal.
        assert "rollback to 'base' failed before it began: no space left on device" in res.stderr
        assert "nothing was changed" in res.stderr and "nothing was saved" not in res.stderr
        assert (p.fingerprint(), p.migration_files()) == before
        assert [s.name for s in store.iterdir() if not s.name.startswith(".")] == ["base"]


def test_full_store_during_reset_safety_snapshot(shop: Project, tmp_path: Path) -> None:
    p = shop
    before = (p.fingerprint(), p.migration_files())
    with tmpfs(tmp_path / "disk", "1m") as mnt:
        fill(mnt, 24 << 10)  # room for the store's skeleton (marker, .gitignore, lock), not for a dump
        res = p.dbsnap("--store", str(mnt / "snaps"), "reset", "--yes")
    assert res.returncode == 7, res.stderr
    assert "reset failed at [2/7] safety snapshot: no space left on device" in res.stderr
    assert "nothing was changed" in res.stderr and "nothing was saved" not in res.stderr
    assert (p.fingerprint(), p.migration_files()) == before


def test_automatic_rollback_reports_after_the_failed_step_line(sqlite_shop: Project) -> None:
    res = sqlite_shop.dbsnap("reset", "--yes", "--load", "no_such_fixture")
    assert res.returncode == 7, res.stderr
    lines = res.stderr.splitlines()
    i = lines.index("[6/7] after-reset steps ... failed")
    assert lines[i + 1].startswith("rolling back to the safety snapshot pre-reset-")
    assert all(not ln.startswith("[") for ln in lines[i + 1 :])  # no rollback line glued to a step line
