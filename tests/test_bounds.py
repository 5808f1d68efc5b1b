"""Every wait has a bound: a session holding ``LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`` (a migration in
progress) makes dbsnap end within its bound with exit 5 and a message naming that session; nothing changed.

The blocking sessions are real: a psycopg connection of the test, as the superuser (which a save does not end)
or as a second, non-superuser role (which dbsnap's own role may not terminate).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import psycopg
import pytest
from conftest import PG, Project, fresh_pg_database, pg_project

from dbsnap.store.snapshots import Store

# Each test waits out a real bound against a blocking session: `make test-faults` (.ci/run) runs them.
pytestmark = pytest.mark.slow

APP = "migrate-0042-in-progress"


def _blocker(dbname: str, user: str = PG["user"]) -> tuple[psycopg.Connection, int]:
    """A session holding ACCESS EXCLUSIVE on orders_order, idle in its transaction, as a migration would."""
    conn = psycopg.connect(dbname=dbname, application_name=APP, **{**PG, "user": user})
    conn.execute("LOCK TABLE orders_order IN ACCESS EXCLUSIVE MODE")
    return conn, conn.info.backend_pid


def _names_session(err: str, pid: int, user: str, visible: bool = True) -> None:
    when = "query started 20" if visible else "query start not visible to this role)"
    assert f"pid {pid} (user {user}, application {APP}, {when}" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "bounds",
    [{"DBSNAP_DB_LOCK_TIMEOUT": "1"}, {"DBSNAP_DB_LOCK_TIMEOUT": "60", "DBSNAP_STATEMENT_TIMEOUT": "1"}],
    ids=["lock-timeout", "statement-timeout"],
)
def test_save_behind_an_exclusive_lock_ends_within_its_bound(pg_shop: Project, bounds: dict) -> None:
    blocker, pid = _blocker(pg_shop.pg_name)
    try:
        t0 = time.monotonic()
        res = pg_shop.dbsnap("save", "blocked", env=bounds, timeout=60)
        took = time.monotonic() - t0
    finally:
        blocker.close()
    assert res.returncode == 5, res.stderr
    assert took < 20, took
    _names_session(res.stderr, pid, PG["user"])
    bound = "db-lock-timeout" if bounds["DBSNAP_DB_LOCK_TIMEOUT"] == "1" else "statement-timeout"
    assert f"gave up after 1 s ({bound})" in res.stderr
    assert not pg_shop.store.exists()  # a failed first save leaves no store (nor staging debris) behind


def test_rollback_ends_a_locking_session_before_its_safety_snapshot(pg_shop: Project) -> None:
    a_fp = pg_shop.fingerprint()
    pg_shop.ok("save", "target")
    pg_shop.sql("DELETE FROM orders_orderitem")
    blocker, pid = _blocker(pg_shop.pg_name)
    try:
        # With a short lock bound, a safety snapshot taken before the session is ended would fail (exit 5).
        res = pg_shop.dbsnap("rollback", "target", "--yes", env={"DBSNAP_DB_LOCK_TIMEOUT": "2"}, timeout=120)
        assert res.returncode == 0, res.stderr
        assert f"ended session on default: pid {pid} (user {PG['user']}, application {APP}" in res.stderr
        with pytest.raises(psycopg.OperationalError):
            blocker.execute("SELECT 1")
    finally:
        blocker.close()
    assert pg_shop.fingerprint() == a_fp


@pytest.fixture
def two_roles_shop(tmp_path: Path, pg_server):
    """The shop on a database owned by a non-superuser role that may create databases (swap mode), and a second
    non-superuser role allowed to lock orders_order: a session dbsnap's role may not terminate."""
    own, other = f"dbsnap_r_{secrets.token_hex(3)}", f"dbsnap_o_{secrets.token_hex(3)}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        c.execute(f'CREATE ROLE "{own}" LOGIN CREATEDB')
        c.execute(f'CREATE ROLE "{other}" LOGIN')
    try:
        with fresh_pg_database(owner=own) as name:
            p = pg_project(tmp_path / "shop", name, own)
            p.manage("migrate", "-v0")
            p.manage("seed", "--scale", "1")
            p.sql(f'GRANT UPDATE ON orders_order TO "{other}"')
            yield p, other
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
            for role in (own, other):  # the grant went with the database
                c.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.parametrize("command", ["rollback", "reset"])
def test_a_session_the_role_may_not_end_fails_within_its_bound(two_roles_shop, command: str) -> None:
    p, other = two_roles_shop
    p.ok("save", "target")
    p.sql("DELETE FROM orders_orderitem WHERE id % 2 = 0")
    before_fp, before_files = p.fingerprint(), p.migration_files()
    blocker, pid = _blocker(p.pg_name, other)
    try:
        argv = ["rollback", "target", "--yes"] if command == "rollback" else ["reset", "--yes"]
        t0 = time.monotonic()
        res = p.dbsnap(*argv, env={"DBSNAP_TERMINATE_TIMEOUT": "2"}, timeout=120)
        took = time.monotonic() - t0
        assert blocker.execute("SELECT 1").fetchone() == (1,)  # still there: it could not be ended
    finally:
        blocker.close()
    assert res.returncode == 5, res.stderr
    assert took < 30, took
    assert "could not be ended within 2 s (terminate-timeout)" in res.stderr
    _names_session(res.stderr, pid, other, visible=False)  # another role's query start is hidden from it
    assert "nothing was changed" in res.stderr
    assert (p.fingerprint(), p.migration_files()) == (before_fp, before_files)
    assert [s.name for s in Store(p.store).list()] == ["target"]  # no safety snapshot was taken


def test_a_bound_that_is_no_number_is_a_usage_error(sqlite_shop: Project) -> None:
    res = sqlite_shop.dbsnap("list", env={"DBSNAP_STATEMENT_TIMEOUT": "soon"})
    assert res.returncode == 2
    assert "invalid statement-timeout 'soon': expected a positive number of seconds" in res.stderr
