"""Fast rollback from a server-side clone (PostgreSQL): exact, all or nothing, and cleaned up with its snapshot."""

from __future__ import annotations

import hashlib
import json
import signal

import psycopg
import pytest
from conftest import PG, Project
from test_faults import leftovers, light_break


def clones(p: Project) -> list[tuple[str, bool]]:
    return p.sql(f"SELECT datname, datallowconn FROM pg_database WHERE datname LIKE '{p.pg_name}_dbsnap_c_%'")


def clone_of(p: Project, snap: str) -> str:
    m = json.loads((p.store / snap / "manifest.json").read_text())
    return m["databases"]["default"]["clone"]["name"]


def test_clone_roundtrip_is_exact_and_the_clone_stays_sealed(pg_shop: Project) -> None:
    before_fp, before_files = pg_shop.fingerprint(), pg_shop.migration_files()
    pg_shop.ok("save", "fast", "--clone")
    name = clone_of(pg_shop, "fast")
    assert clones(pg_shop) == [(name, False)]  # nobody connects to it by accident
    assert "yes" in pg_shop.ok("list").stdout.splitlines()[1]
    light_break(pg_shop)
    res = pg_shop.ok("rollback", "fast", "--yes")
    assert f"from clone {name}" in res.stderr
    assert pg_shop.fingerprint() == before_fp and pg_shop.migration_files() == before_files
    # Still there for the next rollback, beside the replaced database kept (sealed) as the safety snapshot.
    safety = [s for s in json.loads(pg_shop.ok("list", "--json").stdout) if s["origin"] == "pre-rollback"]
    assert sorted(clones(pg_shop)) == sorted([(name, False), (safety[0]["clones"]["default"], False)])
    assert leftovers(pg_shop) == []
    pg_shop.ok("verify", "fast", "--deep")  # the dump was taken from the clone: same data


def test_clone_failing_halfway_leaves_live_untouched(pg_shop: Project) -> None:
    pg_shop.ok("save", "fast", "--clone")
    light_break(pg_shop)
    broken_fp, broken_files = pg_shop.fingerprint(), pg_shop.migration_files()
    res = pg_shop.dbsnap("rollback", "fast", "--yes", env={"DBSNAP_FAULT": "pg.after-create-scratch:raise"})
    assert res.returncode == 8 and "nothing was changed" in res.stderr
    assert (pg_shop.fingerprint(), pg_shop.migration_files()) == (broken_fp, broken_files)
    killed = pg_shop.dbsnap("rollback", "fast", "--yes", env={"DBSNAP_FAULT": "pg.after-create-scratch"})
    assert killed.returncode == -signal.SIGKILL
    pg_shop.ok("list")
    assert (pg_shop.fingerprint(), pg_shop.migration_files()) == (broken_fp, broken_files)
    assert leftovers(pg_shop) == []
    assert len(clones(pg_shop)) == 1


def test_missing_clone_falls_back_to_the_dump(pg_shop: Project) -> None:
    before_fp = pg_shop.fingerprint()
    pg_shop.ok("save", "fast", "--clone")
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        c.execute(f'DROP DATABASE "{clone_of(pg_shop, "fast")}"')
    light_break(pg_shop)
    res = pg_shop.ok("rollback", "fast", "--yes", "--json")
    assert "is missing or was replaced: restoring from the dump" in res.stderr
    assert [w for w in json.loads(res.stdout)["warnings"] if "restoring from the dump" in w]  # for scripts too
    assert pg_shop.fingerprint() == before_fp


def test_delete_prune_and_force_drop_clones(pg_shop: Project) -> None:
    pg_shop.ok("save", "a", "--clone")
    pg_shop.ok("save", "b", "--clone")
    pg_shop.ok("save", "c", "--clone")
    assert len(clones(pg_shop)) == 3
    old_c = clone_of(pg_shop, "c")
    pg_shop.ok("save", "c", "--clone", "--force")  # replacing a snapshot replaces its clone
    assert old_c not in [n for n, _ in clones(pg_shop)] and len(clones(pg_shop)) == 3
    pg_shop.ok("delete", "a", "--yes")
    assert len(clones(pg_shop)) == 2
    pg_shop.ok("prune", "--keep-last", "1", "--yes")
    assert [n for n, _ in clones(pg_shop)] == [clone_of(pg_shop, "c")]


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_no_clone_while_others_are_connected(pg_shop: Project) -> None:
    with psycopg.connect(dbname=pg_shop.pg_name, **PG) as other:
        other.execute("SELECT 1")
        res = pg_shop.ok("save", "busy", "--clone")
    assert "no clone of 'default'" in res.stderr and "other sessions are connected" in res.stderr
    assert clones(pg_shop) == []
    assert "clone" not in json.loads((pg_shop.store / "busy" / "manifest.json").read_text())["databases"]["default"]


def test_clone_setting_in_pyproject(pg_shop: Project) -> None:
    (pg_shop.root / "pyproject.toml").write_text("[tool.dbsnap]\nclone = true\n")
    pg_shop.ok("save", "auto")
    assert len(clones(pg_shop)) == 1
    pg_shop.ok("save", "plain", "--no-clone")
    assert len(clones(pg_shop)) == 1


@pytest.mark.slow  # the main suite's budget: make test-faults runs it
def test_sqlite_clone_is_the_kept_file_copied_or_renamed_in_and_checked(sqlite_shop: Project) -> None:
    """SQLite ``save --clone`` keeps the consistent copy its dump is made from: rollback copies it (or renames it
    in with --consume-clone, then re-arms it), a forged one is refused, and once it is gone the dump is used."""
    p = sqlite_shop
    before, files = p.fingerprint(), p.migration_files()
    p.ok("save", "fast", "--clone")
    m = json.loads((p.store / "fast" / "manifest.json").read_text())
    clone = m["databases"]["default"]["clone"]
    kept = p.store / "fast" / clone["file"]
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == clone["sha256"]
    assert kept.stat().st_mode & 0o777 == 0o600 and clone["file"] not in m["files"]
    p.ok("verify", "fast", "--deep")
    light_break(p)
    assert p.fingerprint() != before
    assert "from its kept file" in p.ok("rollback", "fast", "--yes").stderr
    assert (p.fingerprint(), p.migration_files()) == (before, files)
    light_break(p)
    res = p.ok("rollback", "fast", "--yes", "--consume-clone")
    assert "consuming its kept file" in res.stderr and "re-arming" in res.stderr
    assert p.fingerprint() == before and hashlib.sha256(kept.read_bytes()).hexdigest() == clone["sha256"]
    light_break(p)
    broken = p.fingerprint()
    data = bytearray(kept.read_bytes())
    data[len(data) // 2] ^= 0xFF
    kept.write_bytes(bytes(data))
    res = p.dbsnap("rollback", "fast", "--yes")
    assert res.returncode == 6 and "SHA-256" in res.stderr and p.fingerprint() == broken
    kept.unlink()
    p.ok("verify", "fast")
    assert "from the dump" in p.ok("rollback", "fast", "--yes").stderr
    assert p.fingerprint() == before
