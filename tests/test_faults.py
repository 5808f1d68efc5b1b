"""Failure injection: kill -9 or an exception at each phase leaves the pair wholly old or wholly restored.

``DBSNAP_FAULT=<point>`` makes dbsnap SIGKILL itself at that point (``<point>:raise`` raises instead); the
next dbsnap command, whatever it is, must then finish or undo the interrupted rollback from its journal.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest
from conftest import PG, Project, fresh_pg_database, pg_project

from dbsnap.store.snapshots import Store


def leftovers(p: Project) -> list[str]:
    """Anything a rollback may leave behind: journal, staged/backup folders, scratch databases, .tmp debris."""
    found = []
    if (p.store / ".journal.json").exists():
        found.append("journal")
    found += [str(x) for x in p.root.rglob(".*.dbsnap-*")]
    found += [x.name for x in p.root.glob("*.dbsnap-*")]
    if (p.store / ".tmp").exists():
        found += [x.name for x in (p.store / ".tmp").iterdir()]
    if p.pg_name:
        found += [
            r[0]
            for r in p.sql(f"SELECT datname FROM pg_database WHERE datname LIKE '{p.pg_name}_dbsnap%'")
            if "_dbsnap_c_" not in r[0]  # a clone kept on purpose by save --clone
        ]
    return found


def light_break(p: Project) -> None:
    p.sql("DELETE FROM orders_orderitem WHERE id % 3 = 0")
    p.sql("CREATE TABLE stray_after_snapshot (id integer)")
    (p.root / "orders" / "migrations" / "0002_order_note.py").write_text("# edited\n")
    (p.root / "catalog" / "migrations" / "0002_default_categories.py").unlink()
    (p.root / "accounts" / "migrations" / "0002_extra.py").write_text("# new\n")


def states(p: Project) -> tuple[dict, dict, dict, dict]:
    """Save 'target' in state A, then move to state B; return (A fingerprint, A files, B fingerprint, B files)."""
    a_fp, a_files = p.fingerprint(), p.migration_files()
    p.ok("save", "target")
    light_break(p)
    return a_fp, a_files, p.fingerprint(), p.migration_files()


ROLLBACK_KILLS = [
    ("rollback.after-restore", "old"),  # restored beside the live one, nothing swapped yet
    ("rollback.after-db-swap", "old"),  # database swapped, folders not yet: undone
    ("rollback.during-file-swap", "new"),  # first folder swapped: finished
    ("rollback.before-finish", "new"),  # verified, old copies not yet dropped: finished
    ("rollback.after-finish", "new"),  # old copies dropped, journal not yet cleared: finished
]


@pytest.mark.sweep  # every kill point on both engines: make test-faults (.ci/run)
@pytest.mark.parametrize(("point", "expect"), ROLLBACK_KILLS)
def test_kill9_during_rollback_then_next_command_recovers(shop: Project, point: str, expect: str) -> None:
    a_fp, a_files, b_fp, b_files = states(shop)
    killed = shop.dbsnap("rollback", "target", "--yes", env={"DBSNAP_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (shop.store / ".journal.json").exists()

    res = shop.ok("list")  # any command recovers first
    assert "interrupted rollback to 'target'" in res.stderr
    assert ("finished" if expect == "new" else "undone") in res.stderr
    want_fp, want_files = (a_fp, a_files) if expect == "new" else (b_fp, b_files)
    assert shop.fingerprint() == want_fp
    assert shop.migration_files() == want_files
    assert leftovers(shop) == []
    # The store is intact and usable: the rollback can simply be run again.
    shop.ok("rollback", "target", "--yes")
    assert shop.fingerprint() == a_fp and shop.migration_files() == a_files


def test_kill9_while_postgres_scratch_is_being_built(pg_shop: Project) -> None:
    _, _, b_fp, b_files = states(pg_shop)
    killed = pg_shop.dbsnap("rollback", "target", "--yes", env={"DBSNAP_FAULT": "pg.after-create-scratch"})
    assert killed.returncode == -signal.SIGKILL
    pg_shop.ok("info")
    assert pg_shop.fingerprint() == b_fp and pg_shop.migration_files() == b_files
    assert leftovers(pg_shop) == []


@pytest.mark.parametrize(
    ("point", "expect", "words"),
    [
        ("rollback.after-restore", "old", "nothing was changed"),
        ("rollback.during-file-swap", "new", "fully restored"),
    ],
)
def test_exception_mid_rollback_is_resolved_in_process(shop: Project, point: str, expect: str, words: str) -> None:
    a_fp, a_files, b_fp, b_files = states(shop)
    res = shop.dbsnap("rollback", "target", "--yes", env={"DBSNAP_FAULT": point + ":raise"})
    assert res.returncode == 8
    assert words in res.stderr and "Traceback" not in res.stderr
    want = (a_fp, a_files) if expect == "new" else (b_fp, b_files)
    assert (shop.fingerprint(), shop.migration_files()) == want
    assert leftovers(shop) == []


@pytest.mark.parametrize("point", ["save.after-dump", "save.before-commit"])
def test_kill9_during_save_leaves_no_snapshot(shop: Project, point: str) -> None:
    shop.ok("save", "keep")
    killed = shop.dbsnap("save", "half", env={"DBSNAP_FAULT": point})
    assert killed.returncode == -signal.SIGKILL
    assert not (shop.store / "half").exists()
    assert [s.name for s in Store(shop.store).list()] == ["keep"]
    shop.ok("save", "after")  # the next locked command clears the debris
    assert list((shop.store / ".tmp").iterdir()) == []


def test_two_saves_at_once_both_complete(shop: Project) -> None:
    procs = [shop.start("--lock-timeout", "120", "save", name) for name in ("left", "right")]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    store = Store(shop.store)
    assert sorted(s.name for s in store.list()) == ["left", "right"]
    for s in store.list():
        store.verify_checksums(s)


def test_two_saves_same_name_one_wins(sqlite_shop: Project) -> None:
    procs = [sqlite_shop.start("--lock-timeout", "60", "save", "same") for _ in range(2)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes == [0, 2]
    Store(sqlite_shop.store).verify_checksums(Store(sqlite_shop.store).get("same"))


def test_open_session_does_not_make_rollback_hang(pg_shop: Project) -> None:
    a_fp, _, _, _ = states(pg_shop)
    other = psycopg.connect(dbname=pg_shop.pg_name, **PG)
    other.execute("SELECT count(*) FROM orders_order")  # idle in transaction, holding a lock on the table
    t0 = time.monotonic()
    res = pg_shop.dbsnap("rollback", "target", "--yes", timeout=120)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 60
    assert "will terminate session: pid" in res.stderr
    assert pg_shop.fingerprint() == a_fp
    with pytest.raises(psycopg.OperationalError):
        other.execute("SELECT 1")
    other.close()


# -- a role that may not create databases: drop-and-restore inside one transaction ---------------------------


@pytest.fixture
def nocreatedb_shop(tmp_path: Path, pg_server) -> Project:
    role = f"dbsnap_r_{secrets.token_hex(3)}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        c.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        with fresh_pg_database(owner=role) as name:
            with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
                c.execute(f"ALTER DATABASE \"{name}\" SET search_path TO 'public'")
            p = pg_project(tmp_path / "shop", name, role)
            p.manage("migrate", "-v0")
            p.manage("seed", "--scale", "1")
            yield p
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
            c.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_no_createdb_role_restores_in_one_transaction(nocreatedb_shop: Project) -> None:
    p = nocreatedb_shop
    a_fp, a_files, _, _ = states(p)
    p.sql("CREATE VIEW stray_view AS SELECT 1 AS x")
    p.sql("CREATE SEQUENCE stray_seq")
    res = p.ok("rollback", "target", "--yes")
    assert "[transaction]" in res.stderr
    assert p.fingerprint() == a_fp and p.migration_files() == a_files
    assert p.sql("SELECT to_regclass('stray_view'), to_regclass('stray_seq')") == [(None, None)]
    owner = p.sql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{p.pg_name}'")[0][0]
    assert owner.startswith("dbsnap_r_")


@pytest.mark.parametrize(
    ("point", "expect"),
    [("pg.transaction-before-commit", "old"), ("rollback.after-db-swap", "new")],
)
def test_no_createdb_kill9(nocreatedb_shop: Project, point: str, expect: str) -> None:
    p = nocreatedb_shop
    a_fp, a_files, b_fp, b_files = states(p)
    killed = p.dbsnap("rollback", "target", "--yes", env={"DBSNAP_FAULT": point})
    assert killed.returncode == -signal.SIGKILL
    # psql is left orphaned with an open transaction when dbsnap dies; it ends when its stdin closes.
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and p.sql(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{p.pg_name}' AND state LIKE 'idle in trans%'"
        )[0][0]
    ):
        time.sleep(0.2)
    p.ok("list")
    want = (a_fp, a_files) if expect == "new" else (b_fp, b_files)
    assert (p.fingerprint(), p.migration_files()) == want
    assert leftovers(p) == []


def test_sigint_is_exit_130_and_changes_nothing(pg_shop: Project) -> None:
    pg_shop.manage("seed", "--scale", "30")
    _, _, b_fp, b_files = states(pg_shop)
    proc = pg_shop.start("rollback", "target", "--yes", "--no-safety-snapshot")
    journal = pg_shop.store / ".journal.json"
    deadline = time.monotonic() + 60
    while not journal.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    timer = threading.Timer(0.2, proc.send_signal, (signal.SIGINT,))
    timer.start()
    _, err = proc.communicate(timeout=120)
    timer.join()
    if proc.returncode == 0:
        pytest.skip("the rollback finished before SIGINT arrived")  # never silently passes as a success
    assert proc.returncode == 130, err
    assert "interrupted" in err and "nothing was changed" in err
    assert pg_shop.fingerprint() == b_fp and pg_shop.migration_files() == b_files
    assert leftovers(pg_shop) == []


def _child(parent: int, comm: str) -> int:
    """The pid of ``parent``'s child process named ``comm``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        name = fields[0].split("(", 1)[1]
        if name == comm and int(fields[1].split()[1]) == parent:
            return int(stat.parent.name)
    raise AssertionError(f"no {comm} child of {parent}")


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
@pytest.mark.parametrize("resume", ["commits", "never"])
def test_no_createdb_kill9_after_commit_sent_with_recovery_before_psql_ends(
    nocreatedb_shop: Project, tmp_path: Path, resume: str
) -> None:
    """COMMIT written to psql, dbsnap killed, psql not done yet when the next command recovers: recovery must
    wait for the server's outcome (or end the transaction itself) and say which, never guess "undone"."""
    p = nocreatedb_shop
    a_fp, a_files, b_fp, b_files = states(p)
    flag = tmp_path / "paused"
    env = {
        "DBSNAP_FAULT": "pg.transaction-before-commit-write:wait,pg.transaction-commit-sent",
        "DBSNAP_FAULT_FILE": str(flag),
    }
    proc = p.start("rollback", "target", "--yes", env=env)
    deadline = time.monotonic() + 120
    while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert flag.exists(), proc.communicate()[1]
    psql = _child(proc.pid, "psql")
    os.kill(psql, signal.SIGSTOP)  # psql gets COMMIT but cannot run it until it is resumed
    try:
        flag.unlink()
        assert proc.wait(timeout=60) == -signal.SIGKILL
        if resume == "commits":
            timer = threading.Timer(1.5, os.kill, (psql, signal.SIGCONT))
            timer.start()
            res = p.dbsnap("list", timeout=120)
            timer.join()
            assert res.returncode == 0, res.stderr
            assert "waiting up to 10 s for the restore of" in res.stderr
            assert "was found and finished (the in-place restore of" in res.stderr
            assert "had committed)" in res.stderr
            want = (a_fp, a_files)
        else:
            res = p.dbsnap("list", env={"DBSNAP_TERMINATE_TIMEOUT": "1"}, timeout=120)
            assert res.returncode == 0, res.stderr
            assert "was found and undone (the in-place restore of" in res.stderr
            assert "had not committed)" in res.stderr
            want = (b_fp, b_files)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(psql, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{psql}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # psql is not dbsnap's child any more; it ends once resumed (and reaped by init)
    assert (p.fingerprint(), p.migration_files()) == want
    assert leftovers(p) == []
