"""What a new user hits first, on the SQLite example project: the printed schedule, `latest`, plans and prompts
that say what really happens, and the global options after the command."""

from __future__ import annotations

import os
import pty
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import Project

from dbsnap.store.snapshots import Store


def names(p: Project) -> list[str]:
    return [s.name for s in Store(p.store).list()]


def test_the_printed_cron_line_saves_without_a_retention_policy(sqlite_shop: Project) -> None:
    res = sqlite_shop.ok("schedule", "--cron")
    # schedule says, when the schedule is made, that nothing will be pruned.
    assert "warning: empty retention policy" in res.stderr and "deletes none" in res.stderr
    line = res.stdout.strip()
    command = line.split(" ", 5)[5]  # what cron runs, after its five time fields
    # The scheduler starts the script installed beside this interpreter (a venv's python is a symlink).
    assert f"{shlex.quote(str(Path(sys.executable).parent / 'dbsnap'))} --quiet" in command
    run = subprocess.run(["bash", "-c", command], env=sqlite_shop.env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    [snap] = Store(sqlite_shop.store).list()
    log = (sqlite_shop.store.parent / "dbsnap-cron.log").read_text()
    assert f"warning: saved {snap.name}; pruning failed: empty retention policy" in log


def test_schedule_with_a_policy_warns_nothing(sqlite_shop: Project) -> None:
    (sqlite_shop.root / "pyproject.toml").write_text("[tool.dbsnap.retention]\nkeep-daily = 7\n")
    res = sqlite_shop.ok("schedule", "--systemd")
    assert "warning" not in res.stderr


def test_save_prune_with_a_bad_policy_saves_and_warns(sqlite_shop: Project) -> None:
    (sqlite_shop.root / "pyproject.toml").write_text("[tool.dbsnap.retention]\nkeep-daily = 'seven'\n")
    res = sqlite_shop.ok("save", "x", "--prune", "--json")
    assert names(sqlite_shop) == ["x"]
    assert "warning: saved x; pruning failed: invalid retention configuration" in res.stderr
    assert '"prune_warning": "saved x; pruning failed: invalid retention configuration' in res.stdout


def test_rollback_latest_twice_does_not_flip_back(sqlite_shop: Project) -> None:
    sqlite_shop.ok("save", "base")
    sqlite_shop.sql("DELETE FROM orders_orderitem")
    sqlite_shop.sql("DELETE FROM orders_order")
    first = sqlite_shop.ok("rollback", "latest", "--yes")
    assert "rolled back to base" in first.stdout
    assert sqlite_shop.sql("SELECT count(*) FROM orders_order")[0][0] > 0
    second = sqlite_shop.ok("rollback", "latest", "--yes")  # still base, not the safety snapshot just made
    assert "rolled back to base" in second.stdout
    assert sqlite_shop.sql("SELECT count(*) FROM orders_order")[0][0] > 0


def test_the_plan_says_when_the_target_is_a_safety_snapshot(sqlite_shop: Project) -> None:
    sqlite_shop.ok("save", "base")
    sqlite_shop.ok("rollback", "base", "--yes")
    [safety] = [s for s in Store(sqlite_shop.store).list() if s.origin == "pre-rollback"]
    res = sqlite_shop.ok("rollback", safety.name, "--yes")
    assert "  this is the safety snapshot taken by a rollback (before rollback to base)" in res.stderr


def test_the_reset_plan_says_the_data_is_deleted(sqlite_shop: Project) -> None:
    res = sqlite_shop.ok("reset", "--dry-run")
    assert "ALL ITS DATA IS DELETED (the safety snapshot keeps it)" in res.stdout
    assert "nothing is lost" not in res.stdout


def test_the_reset_prompt_shows_no_empty_default(sqlite_shop: Project) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dbsnap", "reset"],
            cwd=sqlite_shop.root,
            env=sqlite_shop.env,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(master, b"not-the-name\n")
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 2
    assert "Type the database name (db.sqlite3) to continue: " in err and "[]" not in err
    assert "reset cancelled (the name did not match); nothing was changed" in err


def test_prune_without_a_terminal_does_not_call_itself_a_dry_run(sqlite_shop: Project) -> None:
    for n in ("a", "b"):
        sqlite_shop.ok("save", n)
    res = sqlite_shop.dbsnap("prune", "--keep-last", "1", stdin=subprocess.DEVNULL)
    assert res.returncode == 2
    assert "refusing to continue without confirmation" in res.stderr and "dry run" not in res.stderr + res.stdout
    assert names(sqlite_shop) == ["a", "b"]


def test_the_prune_plan_aligns_its_reasons(sqlite_shop: Project) -> None:
    for n in ("a", "a-much-longer-name", "mid-name"):
        sqlite_shop.ok("save", n)
    res = sqlite_shop.ok("prune", "--keep-last", "2", "--dry-run")
    rows = [line for line in res.stdout.splitlines() if line.startswith(("  keep", "  remove"))]
    assert len(rows) == 3
    starts = {line.index("last snapshot") for line in rows if "last snapshot" in line}
    assert len(starts) == 1, rows
    assert "  remove  a" in [line.rstrip() for line in rows]  # no reason: trailing padding is trimmed


def test_doctor_and_show_count_the_same_tables(sqlite_shop: Project) -> None:
    sqlite_shop.ok("save", "s")
    shown = re.search(r", (\d+) tables, ", sqlite_shop.ok("show", "s").stdout)
    doctor = re.search(r"\(SQLite [\d.]+, (\d+) tables\)", sqlite_shop.dbsnap("doctor").stdout)
    assert shown and doctor and shown.group(1) == doctor.group(1)


def test_quiet_works_after_the_command(sqlite_shop: Project) -> None:
    sqlite_shop.ok("save", "x")
    res = sqlite_shop.ok("rollback", "x", "--yes", "-q")
    assert res.stderr == "" and res.stdout.startswith("rolled back to x")
    # -q before the command is not undone by the flag's absence after it.
    res = sqlite_shop.ok("-q", "save", "y")
    assert res.stderr == ""


def test_status_after_a_rollback_compares_with_the_snapshot_rolled_back_to(sqlite_shop: Project) -> None:
    sqlite_shop.ok("save", "base")
    sqlite_shop.ok("rollback", "base", "--yes")  # leaves a newer pre-rollback safety snapshot
    res = sqlite_shop.ok("status")
    assert res.stdout.startswith("status against snapshot base ")
