"""The rollback's safety snapshot is the replaced database itself, kept by rename (clone-only): exact both ways,
never silently used once its clone vanished, dumped on demand (save --from), pruned by its own retention, and
whole after kill -9 at every new phase."""

from __future__ import annotations

import json
import signal

import psycopg
import pytest
from conftest import PG, Project
from test_faults import leftovers, states

from dbsnap.store.snapshots import Store


def safety_names(p: Project) -> list[str]:
    return [s.name for s in Store(p.store).list() if s.origin == "pre-rollback"]


def manifest(p: Project, name: str) -> dict:
    return json.loads((p.store / name / "manifest.json").read_text())


def server_clones(p: Project) -> set[str]:
    """Every clone of the project's database on the server (none for SQLite)."""
    if not p.pg_name:
        return set()
    return {r[0] for r in p.sql(f"SELECT datname FROM pg_database WHERE datname LIKE '{p.pg_name}_dbsnap_c_%'")}


def recorded_clones(p: Project) -> set[str]:
    """The clones the store's snapshots point to (a re-armed one instead of the recorded one)."""
    return {
        d["clone"]["name"]
        for s in Store(p.store).list()
        for d in s.databases.values()
        if d.get("clone") and d["clone"].get("name")
    }


def no_orphans(p: Project) -> None:
    """Nothing left behind, and no clone on the server that no snapshot points to."""
    assert leftovers(p) == []
    assert server_clones(p) <= recorded_clones(p)


def drop_clone(p: Project, name: str) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        c.execute(f'DROP DATABASE "{name}"')


def test_safety_snapshot_is_kept_not_dumped_and_restores_exactly(shop: Project) -> None:
    a_fp, a_files, b_fp, b_files = states(shop)
    res = shop.ok("rollback", "target", "--yes", "--json")
    assert "the replaced database is kept as the safety snapshot (renamed, not dumped)" in res.stderr
    out = json.loads(res.stdout)
    assert out["safety_kept"] is True and (shop.fingerprint(), shop.migration_files()) == (a_fp, a_files)
    safety = out["safety_snapshot"]
    m = manifest(shop, safety)
    entry = m["databases"]["default"]
    assert entry["payload"] is None and "tables" not in entry and entry["clone_bytes"] > 0
    assert list(m["files"]) == ["migrations.tar.zst"]  # no dump at all
    if shop.pg_name:
        assert entry["clone"]["name"] in server_clones(shop)
        sealed = shop.sql(f"SELECT datallowconn FROM pg_database WHERE datname = '{entry['clone']['name']}'")
        assert sealed == [(False,)]
    else:
        assert (shop.store / safety / entry["clone"]["file"]).is_file()
    listed = {s["name"]: s for s in json.loads(shop.ok("list", "--json").stdout)}
    assert listed[safety]["clone_only"] is True and listed["target"]["clone_only"] is False
    assert "clone-only (no dump, no row counts)" in shop.ok("show", safety).stdout
    shop.ok("verify", safety)
    # Rolling back to it restores the state before the rollback exactly (from its clone), with a new safety.
    back = shop.ok("rollback", safety, "--yes", "--json")
    assert "from clone" in back.stderr or "from its kept file" in back.stderr
    assert (shop.fingerprint(), shop.migration_files()) == (b_fp, b_files)
    assert json.loads(back.stdout)["safety_kept"] is True
    no_orphans(shop)


def test_vanished_clone_is_reported_never_used(shop: Project) -> None:
    states(shop)
    safety = json.loads(shop.ok("rollback", "target", "--yes", "--json").stdout)["safety_snapshot"]
    clone = manifest(shop, safety)["databases"]["default"]["clone"]
    if shop.pg_name:
        drop_clone(shop, clone["name"])
    else:
        (shop.store / safety / clone["file"]).unlink()
    before = (shop.fingerprint(), shop.migration_files())
    res = shop.dbsnap("verify", safety)
    assert res.returncode == 6 and "vanished" in res.stdout + res.stderr
    res = shop.dbsnap("rollback", safety, "--yes")
    assert res.returncode == 6, res.stderr
    problem = [ln for ln in res.stderr.splitlines() if "vanished" in ln]
    assert len(problem) == 1 and "Traceback" not in res.stderr
    assert (shop.fingerprint(), shop.migration_files()) == before
    shop.ok("delete", safety, "--yes")
    no_orphans(shop)


def test_save_from_writes_the_dump_and_then_push_and_export_work(shop: Project, tmp_path) -> None:
    _, _, b_fp, b_files = states(shop)
    safety = json.loads(shop.ok("rollback", "target", "--yes", "--json").stdout)["safety_snapshot"]
    refused = shop.dbsnap("export", safety, "--to", str(tmp_path / "out.dump"))
    assert refused.returncode == 2 and f"dbsnap save --from {safety}" in refused.stderr
    shop.ok("save", "--from", safety)
    entry = manifest(shop, safety)["databases"]["default"]
    assert entry["payload"] and entry["tables"]["orders_order"] > 0
    shop.ok("verify", safety, "--deep")
    shop.ok("export", safety, "--to", str(tmp_path / "out.dump"))
    shop.ok("rollback", safety, "--yes", "--no-safety-snapshot")
    assert (shop.fingerprint(), shop.migration_files()) == (b_fp, b_files)
    no_orphans(shop)


def test_delete_drops_the_clone(pg_shop: Project) -> None:
    states(pg_shop)
    safety = json.loads(pg_shop.ok("rollback", "target", "--yes", "--json").stdout)["safety_snapshot"]
    assert len(server_clones(pg_shop)) == 1
    pg_shop.ok("delete", safety, "--yes")
    assert server_clones(pg_shop) == set()


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_safety_retention_keeps_the_last_n_and_the_budget(shop: Project) -> None:
    states(shop)
    env = {"DBSNAP_SAFETY_KEEP": "2", "DBSNAP_SAFETY_KEEP_WITHIN": "off"}
    made = []
    for _ in range(3):
        res = shop.ok("rollback", "target", "--yes", "--json", env=env)
        made.append(json.loads(res.stdout)["safety_snapshot"])
    assert safety_names(shop) == made[1:]  # the oldest went, with its clone
    assert f"removed safety snapshot {made[0]}" in res.stderr
    # A budget smaller than one kept database: only the one just made stays.
    res = shop.ok("rollback", "target", "--yes", "--json", env={**env, "DBSNAP_CLONE_BUDGET": "1"})
    assert safety_names(shop) == [json.loads(res.stdout)["safety_snapshot"]]
    assert "over the clone budget" in res.stderr
    doctor = shop.dbsnap("doctor", env={**env, "DBSNAP_CLONE_BUDGET": "1"})
    assert "1 safety snapshot(s), 1 clone-only using" in doctor.stdout and "clone budget" in doctor.stdout
    no_orphans(shop)


# -- kill -9 at every new phase -------------------------------------------------------------------------------

KEEP_KILLS = [
    ("rollback.after-restore", "old"),  # staged, nothing swapped: undone, the staged snapshot thrown away
    ("rollback.after-db-swap", "old"),  # live renamed into the clone: renamed back
    ("rollback.during-file-swap", "new"),  # finished: the clone becomes the safety snapshot
    ("safety.before-commit", "new"),  # manifest complete, not yet committed
    ("store.before-commit", "new"),
    ("rollback.after-finish", "new"),  # committed, journal not yet cleared
]
SWEEP = [(e, point, expect) for e in ("sqlite_shop", "pg_shop") for point, expect in KEEP_KILLS]
SWEEP.append(("sqlite_shop", "sqlite.before-keep", "new"))  # SQLite: hashed, not yet moved into the store


@pytest.mark.sweep
@pytest.mark.parametrize(("fixture", "point", "expect"), SWEEP)
def test_kill9_at_each_keep_phase_leaves_old_or_new_and_no_orphan(
    request, fixture: str, point: str, expect: str
) -> None:
    shop: Project = request.getfixturevalue(fixture)
    a_fp, a_files, b_fp, b_files = states(shop)
    killed = shop.dbsnap("rollback", "target", "--yes", env={"DBSNAP_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    res = shop.ok("list")
    assert ("finished" if expect == "new" else "undone") in res.stderr
    want = (a_fp, a_files) if expect == "new" else (b_fp, b_files)
    assert (shop.fingerprint(), shop.migration_files()) == want
    safeties = safety_names(shop)
    assert len(safeties) == (1 if expect == "new" else 0)
    no_orphans(shop)
    if safeties:  # the safety snapshot the recovery committed holds the state before the rollback exactly
        shop.ok("verify", safeties[0])
        shop.ok("rollback", safeties[0], "--yes", "--no-safety-snapshot")
        assert (shop.fingerprint(), shop.migration_files()) == (b_fp, b_files)


# -- rollback --consume-clone ---------------------------------------------------------------------------------


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_consume_clone_renames_it_into_place_and_rearms_it(pg_shop: Project) -> None:
    a_fp, a_files = pg_shop.fingerprint(), pg_shop.migration_files()
    pg_shop.ok("save", "fast", "--clone")
    first = manifest(pg_shop, "fast")["databases"]["default"]["clone"]["name"]
    from test_faults import light_break

    light_break(pg_shop)
    b_fp, b_files = pg_shop.fingerprint(), pg_shop.migration_files()
    res = pg_shop.ok("rollback", "fast", "--yes", "--consume-clone", "--json")
    assert f"consuming clone {first}" in res.stderr
    assert (pg_shop.fingerprint(), pg_shop.migration_files()) == (a_fp, a_files)
    rearmed = json.loads(res.stdout)["rearmed"]
    assert len(rearmed) == 1 and rearmed[0] != first and first not in server_clones(pg_shop)
    assert manifest(pg_shop, "fast")["rearmed"]["default"]["name"] == rearmed[0]
    pg_shop.ok("verify", "fast")
    # The re-armed clone is what the next rollback copies; the safety snapshot restores the state before.
    safety = json.loads(res.stdout)["safety_snapshot"]
    pg_shop.ok("rollback", safety, "--yes", "--consume-clone")
    assert (pg_shop.fingerprint(), pg_shop.migration_files()) == (b_fp, b_files)
    again = pg_shop.ok("rollback", "fast", "--yes")
    assert f"from clone {rearmed[0]}" in again.stderr
    assert (pg_shop.fingerprint(), pg_shop.migration_files()) == (a_fp, a_files)
    no_orphans(pg_shop)


def test_consume_the_kept_sqlite_file(sqlite_shop: Project) -> None:
    _, _, b_fp, b_files = states(sqlite_shop)
    safety = json.loads(sqlite_shop.ok("rollback", "target", "--yes", "--json").stdout)["safety_snapshot"]
    res = sqlite_shop.ok("rollback", safety, "--yes", "--consume-clone")
    assert "consuming its kept file" in res.stderr
    assert (sqlite_shop.fingerprint(), sqlite_shop.migration_files()) == (b_fp, b_files)
    sqlite_shop.ok("verify", safety)  # the kept file is back, byte for byte
    no_orphans(sqlite_shop)


def test_consume_needs_a_clone(shop: Project) -> None:
    states(shop)
    before = (shop.fingerprint(), shop.migration_files())
    res = shop.dbsnap("rollback", "target", "--yes", "--consume-clone")
    assert res.returncode == 2 and "has no clone of database 'default'" in res.stderr
    assert (shop.fingerprint(), shop.migration_files()) == before


@pytest.mark.sweep
@pytest.mark.parametrize(("point", "expect"), [("rollback.after-db-swap", "old"), ("consume.before-rearm", "new")])
def test_kill9_while_consuming_a_clone(pg_shop: Project, point: str, expect: str) -> None:
    _, _, b_fp, b_files = states(pg_shop)
    pg_shop.ok("save", "target", "--clone", "--force")  # the broken state B, with a clone
    clone = manifest(pg_shop, "target")["databases"]["default"]["clone"]["name"]
    pg_shop.ok("rollback", "target", "--yes", "--no-safety-snapshot")
    killed = pg_shop.dbsnap("rollback", "target", "--yes", "--consume-clone", env={"DBSNAP_FAULT": point})
    assert killed.returncode == -signal.SIGKILL
    pg_shop.ok("list")
    assert pg_shop.fingerprint() == b_fp and pg_shop.migration_files() == b_files  # B either way
    no_orphans(pg_shop)
    if expect == "old":  # undone: the clone is the snapshot's again, sealed
        assert pg_shop.sql(f"SELECT datallowconn FROM pg_database WHERE datname = '{clone}'") == [(False,)]
    else:  # done, but not re-armed: the snapshot restores from its dump, and says so
        res = pg_shop.ok("rollback", "target", "--yes")
        assert "restoring from the dump" in res.stderr


def test_sqlite_store_on_another_file_system_copies_the_kept_file(sqlite_shop: Project, tmp_path) -> None:
    from conftest import tmpfs

    p = sqlite_shop
    with tmpfs(tmp_path / "disk", "16m") as mnt:
        store = ["--store", str(mnt / "snaps")]
        a_fp, a_files = p.fingerprint(), p.migration_files()
        p.ok(*store, "save", "target")
        from test_faults import light_break

        light_break(p)
        b_fp, b_files = p.fingerprint(), p.migration_files()
        safety = json.loads(p.ok(*store, "rollback", "target", "--yes", "--json").stdout)["safety_snapshot"]
        assert (p.fingerprint(), p.migration_files()) == (a_fp, a_files)
        p.ok(*store, "verify", safety)
        p.ok(*store, "rollback", safety, "--yes", "--no-safety-snapshot")
        assert (p.fingerprint(), p.migration_files()) == (b_fp, b_files)
        assert [x.name for x in (mnt / "snaps" / ".tmp").iterdir()] == []


@pytest.mark.sweep
def test_kill9_after_staging_changes_nothing(shop: Project) -> None:
    _, _, b_fp, b_files = states(shop)
    killed = shop.dbsnap("rollback", "target", "--yes", env={"DBSNAP_FAULT": "safety.after-stage"})
    assert killed.returncode == -signal.SIGKILL
    shop.ok("pin", "target")  # the next locked command clears the staged snapshot
    assert (shop.fingerprint(), shop.migration_files()) == (b_fp, b_files)
    assert safety_names(shop) == []
    no_orphans(shop)


@pytest.mark.sweep
def test_kill9_while_consuming_a_kept_sqlite_file_puts_it_back(sqlite_shop: Project) -> None:
    a_fp, a_files, _, _ = states(sqlite_shop)
    safety = json.loads(sqlite_shop.ok("rollback", "target", "--yes", "--json").stdout)["safety_snapshot"]
    killed = sqlite_shop.dbsnap(
        "rollback", safety, "--yes", "--consume-clone", env={"DBSNAP_FAULT": "rollback.after-restore"}
    )
    assert killed.returncode == -signal.SIGKILL
    assert "undone" in sqlite_shop.ok("list").stderr
    assert (sqlite_shop.fingerprint(), sqlite_shop.migration_files()) == (a_fp, a_files)
    sqlite_shop.ok("verify", safety)  # its kept file is back in the snapshot, byte for byte
    no_orphans(sqlite_shop)
