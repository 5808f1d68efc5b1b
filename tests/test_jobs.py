"""Parallel restore (PostgreSQL, ``rollback --jobs``): as exact and as all-or-nothing as the streamed one."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import Project, tmpfs
from test_faults import leftovers, states
from test_roundtrip import break_everything

from dbsnap.settings import AUTO_JOBS_FROM, AUTO_JOBS_MAX, resolve_jobs, restore_jobs


def test_parallel_rollback_is_exact(pg_shop: Project) -> None:
    pg_shop.manage("seed", "--scale", "3")
    before, files = pg_shop.fingerprint(), pg_shop.migration_files()
    pg_shop.ok("save", "base")
    break_everything(pg_shop)
    res = pg_shop.ok("rollback", "base", "--yes", "--jobs", "2")
    assert "from the dump, 2 jobs" in res.stderr
    assert pg_shop.fingerprint() == before and pg_shop.migration_files() == files
    assert leftovers(pg_shop) == []  # the spooled dump is gone from .tmp too


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_jobs_from_the_environment_and_one_means_a_stream(pg_shop: Project) -> None:
    pg_shop.ok("save", "base")
    res = pg_shop.ok("rollback", "base", "--yes", "--no-safety-snapshot", env={"DBSNAP_JOBS": "3"})
    assert "3 jobs" in res.stderr
    res = pg_shop.ok("rollback", "base", "--yes", "--no-safety-snapshot", "--jobs", "1", env={"DBSNAP_JOBS": "3"})
    assert "jobs" not in res.stderr  # the flag wins over the environment, and one job is a stream
    # The example's dump is far below the automatic threshold: streamed.
    assert "jobs" not in pg_shop.ok("rollback", "base", "--yes", "--no-safety-snapshot").stderr


@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_invalid_jobs_is_2(pg_shop: Project, value: str) -> None:
    pg_shop.ok("save", "base")
    before = pg_shop.fingerprint()
    res = pg_shop.dbsnap("rollback", "base", "--yes", "--jobs", value)
    assert res.returncode == 2 and f"invalid jobs {value!r}" in res.stderr and "Traceback" not in res.stderr
    assert pg_shop.fingerprint() == before


def test_kill9_after_spooling_leaves_live_untouched_and_no_spool(pg_shop: Project) -> None:
    _, _, b_fp, b_files = states(pg_shop)
    killed = pg_shop.dbsnap("rollback", "target", "--yes", "--jobs", "2", env={"DBSNAP_FAULT": "pg.after-spool"})
    assert killed.returncode == -signal.SIGKILL
    assert any(p.name.startswith("restore-") for p in (pg_shop.store / ".tmp").iterdir())  # the spool was there
    pg_shop.ok("list")  # the next command undoes the rollback and cleans .tmp
    assert (pg_shop.fingerprint(), pg_shop.migration_files()) == (b_fp, b_files)
    assert leftovers(pg_shop) == []


def test_failed_parallel_restore_changes_nothing(pg_shop: Project) -> None:
    _, _, b_fp, b_files = states(pg_shop)
    res = pg_shop.dbsnap("rollback", "target", "--yes", "--jobs", "2", env={"DBSNAP_FAULT": "pg.after-spool:raise"})
    assert res.returncode == 8 and "nothing was changed" in res.stderr
    assert (pg_shop.fingerprint(), pg_shop.migration_files()) == (b_fp, b_files)
    assert leftovers(pg_shop) == []


@pytest.fixture
def small_store_disk(tmp_path: Path):
    """Big enough for the example's snapshot, too small to also hold its dump spooled plus the headroom."""
    with tmpfs(tmp_path / "disk", "8m") as mnt:
        yield mnt


def test_no_room_to_spool_streams_instead(pg_shop: Project, small_store_disk: Path) -> None:
    store = small_store_disk / "snaps"
    before = pg_shop.fingerprint()
    pg_shop.ok("--store", str(store), "save", "base")
    pg_shop.sql("DELETE FROM orders_orderitem")
    assert pg_shop.fingerprint() != before
    res = pg_shop.ok(
        "--store", str(store), "rollback", "base", "--yes", "--jobs", "2", "--no-safety-snapshot", "--json"
    )
    assert "a parallel restore needs" in res.stderr and "streaming" in res.stderr
    assert " jobs)" not in res.stderr  # the restore line never announces jobs the restore then does not use
    assert any("a parallel restore needs" in w for w in json.loads(res.stdout)["warnings"])
    assert pg_shop.fingerprint() == before
    assert list((store / ".tmp").iterdir()) == []


def test_restore_jobs_policy() -> None:
    assert restore_jobs(None, AUTO_JOBS_FROM - 1) == 1
    assert 1 <= restore_jobs(None, AUTO_JOBS_FROM) <= AUTO_JOBS_MAX
    assert restore_jobs(3, 0) == 3  # a configured number wins whatever the size
    assert resolve_jobs(None, {}, None) is None
    assert resolve_jobs("auto", {"DBSNAP_JOBS": "4"}, None) is None  # the flag wins, and it says auto
    assert resolve_jobs(None, {"DBSNAP_JOBS": "4"}, None) == 4
    assert resolve_jobs("0", {}, None) is None
