"""A reset killed (kill -9) or stopped (SIGTERM) at every step: afterwards the pair (database, migration files) is
wholly the pre-reset state or wholly the finished reset, and no child process of dbsnap is left running.

kill -9: the next dbsnap command (``status`` here, a read-only one) finds the reset's journal and rolls it back
to the safety snapshot, or finishes it when only re-runnable checks were left, and says which in one line.
SIGTERM: dbsnap undoes the reset itself (the same clean undo as Ctrl-C) and exits 143.

The points are named fault points (``DBSNAP_FAULT=<point>`` or ``<point>:term``) and moments when a child
process (makemigrations, migrate, an after-reset step, verify's check) is running, signalled from outside. The
main suite runs a representative subset on both engines; the whole sweep is marked ``sweep`` (``make
test-faults``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Project

# The whole file runs in `make test-faults` (.ci/run): the main suite's time budget cannot hold it.
pytestmark = pytest.mark.sweep

APPS = ("accounts", "catalog", "orders")

# (point, what the next command must find after a kill -9 there). "old": rolled back, "new": finished,
# "untouched": no journal yet (killed before or during the safety snapshot), nothing to say.
POINTS = [
    ("reset.after-preflight", "untouched"),
    ("save.after-dump", "untouched"),  # inside the safety snapshot
    ("reset.after-safety-snapshot", "untouched"),
    ("reset.before-drop-database-objects", "old"),  # journaled, nothing dropped yet
    ("reset.after-prerequisites-read", "old"),  # what the history must carry is read, nothing dropped
    ("reset.after-drop-database-objects", "old"),
    ("reset.during-regenerate", "old"),  # migration files deleted, makemigrations not run
    ("child:makemigrations", "old"),
    ("reset.after-makemigrations", "old"),  # fresh files, the prerequisites migration not written yet
    ("reset.after-carry-write", "old"),
    ("reset.after-regenerate-migrations", "old"),
    ("reset.before-migrate", "old"),
    ("child:migrate", "old"),
    ("reset.after-migrate", "new"),  # only checks left: finished
    ("child:after", "old"),  # an after-reset command is not re-runnable: rolled back
    ("reset.before-verify", "new"),
    ("child:verify", "new"),
    ("reset.after-verify", "new"),  # verified, journal not yet cleared
    ("nested:auto-rollback", "old"),  # migrate fails, the automatic rollback is killed half-way
    ("nested:recovery", "old"),  # killed after the drop, then the recovering command is killed too
]
MAIN = {"child:after", "reset.after-migrate", "nested:recovery"}  # nested:recovery begins with a kill after the drop
SIGTERM_MAIN = {"child:migrate"}


# -- observing ----------------------------------------------------------------------------------------------


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose parent is ``pid``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, IndexError, ValueError):
            continue
    return found


def processes_in(root: Path) -> list[str]:
    """Live processes working in ``root`` (every child dbsnap starts runs there), zombies excluded."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if os.readlink(d / "cwd") == str(root) and " Z " not in (d / "stat").read_text():
                found.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def assert_no_orphans(p: Project, where: str) -> None:
    deadline = time.monotonic() + 5
    while (left := processes_in(p.root)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"{where}: processes left running: {left}"


def is_finished_reset(p: Project, tables: set[str]) -> bool:
    """Wholly the finished reset: one fresh initial migration per app, applied and nothing else of ours, every
    model table there and empty of the old rows."""
    files = {
        app: sorted(x.name for x in (p.root / app / "migrations").glob("*.py") if x.name != "__init__.py")
        for app in APPS
    }
    if files != {app: ["0001_initial.py"] for app in APPS}:
        return False
    rows = {
        tuple(r)
        for r in p.sql("SELECT app, name FROM django_migrations WHERE app IN ('accounts', 'catalog', 'orders')")
    }
    fp = p.fingerprint()
    return (
        rows == {(a, "0001_initial") for a in APPS}
        and set(fp["data"]) == tables
        and p.sql("SELECT count(*) FROM orders_orderitem") == [(0,)]
    )


def classify(p: Project, before: tuple, tables: set[str]) -> str:
    if (p.fingerprint(), p.migration_files()) == before:
        return "old"
    if is_finished_reset(p, tables):
        return "new"
    return f"MIXED: files {sorted(p.migration_files())}"


# -- killing ------------------------------------------------------------------------------------------------

CHILD_MARKS = {
    "makemigrations": lambda c: "makemigrations --noinput" in c,
    "migrate": lambda c: " migrate --noinput" in c,
    "after": lambda c: "dbsnap-test-after" in c,
    "verify": lambda c: c.endswith("manage.py check ") and "--check" not in c,
}


def kill_when_child_runs(p: Project, which: str, sig: int, env: dict) -> subprocess.CompletedProcess:
    """Start ``reset --yes``; signal dbsnap (only dbsnap) once its child ``which`` is running."""
    proc = p.start("reset", "--yes", env=env, stdin=subprocess.DEVNULL)
    mark = CHILD_MARKS[which]
    seen = []
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            kids = children_of(proc.pid)
            seen += [c for _, c in kids]
            # The second "manage.py check" is verify's (the first is preflight's): wait for migrate first.
            if any(mark(c) for _, c in kids) and (which != "verify" or any(" migrate --noinput" in c for c in seen)):
                time.sleep(0.05)
                proc.send_signal(sig)
                break
            time.sleep(0.005)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, f"the reset finished before its {which} child was seen: {err}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


FAKE_MANAGE = """
import os, sys

if sys.argv[1:2] == ["migrate"]:
    print("injected failure in migrate")
    sys.exit(1)
os.execv(sys.executable, [sys.executable, "manage.py", *sys.argv[1:]])
"""


def run_point(p: Project, point: str, sig: int, tmp_path: Path) -> subprocess.CompletedProcess:
    env: dict = {}
    if point == "child:after":
        # A slow, silent after-reset step (a manage.py command that sleeps, printing nothing): a child that
        # writes dies on the closed pipe anyway when dbsnap is killed; this one only dies if dbsnap kills it.
        with open(p.root / "pyproject.toml", "a") as f:
            f.write(
                "\n[tool.dbsnap.reset]\n"
                'after = ["shell -v 0 -c \\"import time; time.sleep(20)  # dbsnap-test-after\\""]\n'
            )
    if point.startswith("child:"):
        return kill_when_child_runs(p, point.split(":", 1)[1], sig, env)
    if point == "nested:auto-rollback":
        script = tmp_path / "fake_manage.py"
        script.write_text(FAKE_MANAGE)
        env = {"DBSNAP_MANAGE": f"{sys.executable} {script}", "DBSNAP_FAULT": "rollback.after-db-swap"}
        if sig == signal.SIGTERM:
            env["DBSNAP_FAULT"] += ":term"
        return p.dbsnap("reset", "--yes", env=env)
    if point == "nested:recovery":
        first = p.dbsnap("reset", "--yes", env={"DBSNAP_FAULT": "reset.after-drop-database-objects"})
        assert first.returncode == -signal.SIGKILL, first.stderr
        spec = "rollback.after-db-swap" + (":term" if sig == signal.SIGTERM else "")
        return p.dbsnap("status", env={"DBSNAP_FAULT": spec})
    return p.dbsnap("reset", "--yes", env={"DBSNAP_FAULT": point + (":term" if sig == signal.SIGTERM else "")})


def check_point(p: Project, point: str, expect: str, sig: int, tmp_path: Path) -> None:
    before = (p.fingerprint(), p.migration_files())
    tables = set(before[0]["data"])
    res = run_point(p, point, sig, tmp_path)
    where = f"{'kill -9' if sig == signal.SIGKILL else signal.Signals(sig).name} at {point}"
    assert_no_orphans(p, where)
    if sig == signal.SIGKILL:
        assert res.returncode == -signal.SIGKILL, f"{where}: exit {res.returncode}\n{res.stderr}"
        nxt = p.dbsnap("status")
        assert nxt.returncode in (0, 1), f"{where}: status exit {nxt.returncode}\n{nxt.stderr}"
        assert "Traceback" not in nxt.stderr, nxt.stderr
        said = [ln for ln in nxt.stderr.splitlines() if ln.startswith("warning: an interrupted reset")]
        if expect == "untouched":
            assert said == [], f"{where}: {nxt.stderr}"
            landed = "old"
        else:
            assert len(said) == 1, f"{where}: {nxt.stderr}"
            word = "finished" if expect == "new" else "rolled back to its safety snapshot pre-reset-"
            assert word in said[0], f"{where}: {said[0]}"
            landed = expect
    else:
        # SIGTERM (SIGHUP): the reset (or the recovering command) undoes itself, exits 143 (129) and says so.
        assert res.returncode == 128 + sig, f"{where}: exit {res.returncode}\n{res.stderr}"
        assert f"interrupted by {signal.Signals(sig).name}" in res.stderr, f"{where}: {res.stderr}"
        assert "Traceback" not in res.stderr, res.stderr
        if point.startswith("nested:"):
            # The recovery was undone in order: the reset's journal is back, the next command rolls it back.
            nxt = p.dbsnap("status")
            assert "rolled back to its safety snapshot" in nxt.stderr, f"{where}: {nxt.stderr}"
        else:
            late = point in ("reset.after-preflight", "save.after-dump", "reset.after-safety-snapshot")
            words = "nothing was changed" if late else "rolled back to the safety snapshot pre-reset-"
            assert words in res.stderr, f"{where}: {res.stderr}"
            nxt = p.dbsnap("status")
            assert "interrupted" not in nxt.stderr, f"{where}: {nxt.stderr}"
        landed = "old"
    state = classify(p, before, tables)
    assert state == landed, f"{where}: expected {landed}, found {state}"
    assert not (p.store / ".journal.json").exists(), where
    assert not list(p.root.rglob(".*.dbsnap-*")), where
    assert_no_orphans(p, where + " (after recovery)")


def _params(signame: str, main: set[str]) -> list:
    return [
        pytest.param(point, expect, id=f"{signame}-{point}", marks=() if point in main else pytest.mark.sweep)
        for point, expect in POINTS
    ]


@pytest.mark.parametrize(("point", "expect"), _params("kill9", MAIN))
def test_kill9_of_reset_leaves_a_whole_state(shop: Project, point: str, expect: str, tmp_path: Path) -> None:
    check_point(shop, point, expect, signal.SIGKILL, tmp_path)


@pytest.mark.parametrize(("point", "expect"), _params("sigterm", SIGTERM_MAIN))
def test_sigterm_of_reset_undoes_it(shop: Project, point: str, expect: str, tmp_path: Path) -> None:
    check_point(shop, point, expect, signal.SIGTERM, tmp_path)


def test_sighup_of_reset_undoes_it_and_exits_129(sqlite_shop: Project, tmp_path: Path) -> None:
    check_point(sqlite_shop, "child:makemigrations", "old", signal.SIGHUP, tmp_path)


@pytest.mark.sweep
def test_kill9_of_a_no_auto_rollback_reset_is_said_not_undone(sqlite_shop: Project) -> None:
    p = sqlite_shop
    res = p.dbsnap("reset", "--yes", "--no-auto-rollback", env={"DBSNAP_FAULT": "reset.after-drop-database-objects"})
    assert res.returncode == -signal.SIGKILL
    nxt = p.dbsnap("status")
    assert "--no-auto-rollback) left the database and migration files half-reset" in nxt.stderr, nxt.stderr
    assert "roll back with: dbsnap rollback pre-reset-" in nxt.stderr
    assert not (p.store / ".journal.json").exists()


def test_killed_reset_whose_verify_now_fails_is_rolled_back(sqlite_shop: Project) -> None:
    """Killed after migrate, then a model changed before the next command: finishing (verify) fails, so the
    reset is rolled back instead, and the one line says both."""
    p = sqlite_shop
    before = (p.fingerprint(), p.migration_files())
    res = p.dbsnap("reset", "--yes", env={"DBSNAP_FAULT": "reset.after-migrate"})
    assert res.returncode == -signal.SIGKILL
    models = p.root / "catalog" / "models.py"
    text = models.read_text()
    models.write_text(
        text.replace(
            "class Product(models.Model):",
            "class Product(models.Model):\n    extra = models.IntegerField(default=0)",
            1,
        )
    )
    nxt = p.dbsnap("status")
    said = [ln for ln in nxt.stderr.splitlines() if ln.startswith("warning: an interrupted reset")]
    assert len(said) == 1 and "finishing it failed" in said[0] and "rolled back to its safety snapshot" in said[0], (
        nxt.stderr
    )
    models.write_text(text)
    assert (p.fingerprint(), p.migration_files()) == before
