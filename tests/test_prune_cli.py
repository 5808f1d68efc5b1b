"""`dbsnap prune`, `save --prune`, the retention configuration, scheduling and the lock, on a real store."""

from __future__ import annotations

import json
import time

import pytest
from conftest import Project

from dbsnap.store.snapshots import Store


def names(p: Project) -> list[str]:
    return [s.name for s in Store(p.store).list()]


def saves(p: Project, *snap_names: str) -> None:
    for n in snap_names:
        p.ok("save", n)


def test_dry_run_deletes_nothing_and_shows_reasons(sqlite_shop: Project) -> None:
    saves(sqlite_shop, "a", "b", "c", "d")
    sqlite_shop.ok("pin", "a")
    res = sqlite_shop.ok("prune", "--keep-last", "2", "--dry-run")
    assert names(sqlite_shop) == ["a", "b", "c", "d"]
    lines = res.stdout.splitlines()
    assert lines[0] == "policy: keep 2 latest snapshots (command line)"
    assert "  keep    d  last snapshot" in lines
    assert "  keep    c  last snapshot" in lines
    assert "  remove  b" in lines
    assert "  keep    a  pinned" in lines
    assert lines[-1] == "dry run: nothing was deleted"


def test_prune_json_and_deletion(sqlite_shop: Project) -> None:
    saves(sqlite_shop, "a", "b", "c")
    res = sqlite_shop.ok("prune", "--keep-last", "1", "--yes", "--json")
    data = json.loads(res.stdout)
    assert data["policy"] == "keep 1 latest snapshot"
    assert data["deleted"] == ["a", "b"]  # oldest first
    [(key, decisions)] = data["databases"].items()
    assert key.startswith("sqlite:") and key.endswith("db.sqlite3")
    assert [(d["name"], d["keep"]) for d in decisions] == [("c", True), ("b", False), ("a", False)]
    assert names(sqlite_shop) == ["c"]


def test_empty_policy_is_refused(sqlite_shop: Project) -> None:
    saves(sqlite_shop, "a")
    for args in ((), ("--keep-last", "0"), ("--keep-daily", "0", "--keep-within", "0d")):
        res = sqlite_shop.dbsnap("prune", "--yes", *args)
        assert res.returncode == 2 and "empty retention policy" in res.stderr
    bad = sqlite_shop.dbsnap("prune", "--keep-daily", "seven", "--yes")
    assert bad.returncode == 2 and "keep-daily" in bad.stderr
    assert names(sqlite_shop) == ["a"]


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_configuration_and_flags_replace_it(sqlite_shop: Project) -> None:
    saves(sqlite_shop, "a", "b", "c")
    (sqlite_shop.root / "pyproject.toml").write_text("[tool.dbsnap.retention]\nkeep-last = 2\n")
    res = sqlite_shop.ok("prune", "--dry-run")
    assert "keep 2 latest snapshots (pyproject.toml [tool.dbsnap.retention])" in res.stdout
    # Environment beats pyproject; a flag replaces both (no merging: --keep-daily alone, not last=2 + daily).
    res = sqlite_shop.ok("prune", "--dry-run", env={"DBSNAP_KEEP_LAST": "1"})
    assert "keep 1 latest snapshot (environment)" in res.stdout
    res = sqlite_shop.ok("prune", "--dry-run", "--keep-daily", "1")
    assert res.stdout.splitlines()[0] == "policy: keep 1 daily snapshot (command line)"
    sqlite_shop.ok("prune", "--yes")
    assert names(sqlite_shop) == ["b", "c"]


def test_save_prune_and_auto_prune(sqlite_shop: Project) -> None:
    (sqlite_shop.root / "pyproject.toml").write_text(
        "[tool.dbsnap]\nauto-prune = true\n[tool.dbsnap.retention]\nkeep-last = 2\n"
    )
    saves(sqlite_shop, "a", "b", "c")
    assert names(sqlite_shop) == ["b", "c"]
    sqlite_shop.ok("save", "d", "--no-prune")
    assert names(sqlite_shop) == ["b", "c", "d"]
    res = sqlite_shop.ok("save", "e", "--prune")
    assert "deleted 2 snapshot(s): b, c" in res.stderr
    assert names(sqlite_shop) == ["d", "e"]


def test_save_prune_without_policy_saves_and_warns(sqlite_shop: Project) -> None:
    res = sqlite_shop.ok("save", "x", "--prune")
    assert "warning: saved x; pruning failed: empty retention policy" in res.stderr
    assert names(sqlite_shop) == ["x"]


def test_prune_waits_for_a_save_in_progress_and_never_sees_it_half_written(sqlite_shop: Project) -> None:
    saves(sqlite_shop, "a", "b")
    slow = sqlite_shop.start("save", "c", env={"DBSNAP_FAULT": "save.before-commit:sleep", "DBSNAP_FAULT_SECONDS": "3"})
    tmp = sqlite_shop.store / ".tmp"
    deadline = time.monotonic() + 30
    while not any(tmp.glob("c.*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(tmp.glob("c.*")), "the save never staged its snapshot"
    # Without waiting: refused, naming the holder (exit 11), nothing deleted.
    busy = sqlite_shop.dbsnap("prune", "--keep-last", "1", "--yes")
    assert busy.returncode == 11
    assert f"pid {slow.pid}" in busy.stderr and "save c" in busy.stderr
    assert names(sqlite_shop) == ["a", "b"]
    # Waiting: prune runs once the save has committed, and sees the whole snapshot.
    waited = sqlite_shop.ok("--lock-timeout", "60", "prune", "--keep-last", "1", "--yes", "--json")
    assert slow.wait(timeout=60) == 0
    assert json.loads(waited.stdout)["deleted"] == ["a", "b"]
    assert names(sqlite_shop) == ["c"]
    Store(sqlite_shop.store).verify_checksums(Store(sqlite_shop.store).get("c"))


def test_schedule_prints_cron_and_systemd(sqlite_shop: Project) -> None:
    cron = sqlite_shop.ok("schedule", "--cron", "--at", "04:05").stdout.strip()
    assert cron.startswith("5 4 * * * cd ")
    assert str(sqlite_shop.root) in cron and "save --prune" in cron and str(sqlite_shop.store) in cron
    units = sqlite_shop.ok("schedule", "--systemd").stdout
    assert "Persistent=true" in units and "OnCalendar=*-*-* 03:17:00" in units
    assert f"WorkingDirectory={sqlite_shop.root}" in units
    assert sqlite_shop.dbsnap("schedule", "--at", "25:00").returncode == 2


def test_unlock_removes_a_dead_holders_lock_but_not_a_live_one(sqlite_shop: Project) -> None:
    from dbsnap.store.locking import store_lock

    sqlite_shop.store.mkdir(mode=0o700)
    (sqlite_shop.store / ".lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "command": "save"}))
    assert sqlite_shop.ok("unlock").stdout.strip() == "removed the lock"
    assert not (sqlite_shop.store / ".lock").exists()
    with store_lock(sqlite_shop.store, "test holder"):
        res = sqlite_shop.dbsnap("unlock")
        assert res.returncode == 11 and "still running" in res.stderr
