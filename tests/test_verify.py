"""`dbsnap verify`: every kind of damage caught with exit 6 naming the file; --deep restores and leaves nothing."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import Project

from dbsnap.store.snapshots import dump_manifest


def payload(p: Project, name: str) -> Path:
    m = json.loads((p.store / name / "manifest.json").read_text())
    return p.store / name / m["databases"]["default"]["payload"]


def reseal(p: Project, name: str, change) -> None:
    """Edit a manifest and seal it again, as a forger would: only the deeper checks can notice."""
    path = p.store / name / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    m.pop("manifest_sha256")
    path.write_text(dump_manifest(m))


def scratch_dbs(p: Project) -> set[str]:
    """The deep-verify scratch databases on the server now (``dbsnap_verify_<hex>``, whichever test made them)."""
    return {r[0] for r in p.sql("SELECT datname FROM pg_database WHERE datname LIKE 'dbsnap_verify%'")}


def assert_no_scratch_left(p: Project, before: set[str]) -> None:
    """No scratch database made since ``before`` stays: other tests' deep verifies share the server, so one that
    is there is given the time such a verify takes to end; a leaked one stays and fails."""
    deadline = time.monotonic() + 20
    while (left := scratch_dbs(p) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"scratch databases left behind: {sorted(left)}"


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_good_snapshots_pass_default_and_deep(shop: Project) -> None:
    before = scratch_dbs(shop) if shop.pg_name else set()
    shop.ok("save", "a")
    shop.ok("save", "b", "--verify")
    res = shop.ok("verify", "--all")
    assert res.stdout.splitlines() == ["ok      a (checksums+streams)", "ok      b (checksums+streams)"]
    deep = shop.ok("verify", "b", "--deep", "--json")
    [r] = json.loads(deep.stdout)
    assert r["ok"] and r["deep"] and any("restored" in c for c in r["checked"])
    if shop.pg_name:
        assert_no_scratch_left(shop, before)
    assert shop.ok("verify").stdout.startswith("ok      b ")  # default: the latest


DAMAGE = {
    "flipped byte": lambda p: flip_byte(payload(p, "s")),
    "truncated payload": lambda p: payload(p, "s").write_bytes(payload(p, "s").read_bytes()[:-100]),
    "missing payload": lambda p: payload(p, "s").unlink(),
    "manifest edited by hand": lambda p: (p.store / "s" / "manifest.json").write_text(
        (p.store / "s" / "manifest.json").read_text().replace('"origin": "manual"', '"origin": "scheduled"')
    ),
    "unknown format version": lambda p: reseal(p, "s", lambda m: m.update(format_version=99)),
    "extra file": lambda p: (p.store / "s" / "notes.txt").write_text("hello"),
}
EXPECT = {
    "flipped byte": "fails its SHA-256 checksum",
    "truncated payload": "the manifest says",
    "missing payload": "is missing",
    "manifest edited by hand": "modified after the snapshot was taken",
    "unknown format version": "unknown manifest format version 99",
    "extra file": "unexpected file notes.txt",
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damage_is_caught(sqlite_shop: Project, kind: str) -> None:
    sqlite_shop.ok("save", "s")
    sqlite_shop.ok("save", "fine")
    DAMAGE[kind](sqlite_shop)
    res = sqlite_shop.dbsnap("verify", "--all")
    assert res.returncode == 6, res.stderr
    assert "ok      fine" in res.stdout
    assert "FAILED  s: snapshot 's': " in res.stdout and EXPECT[kind] in res.stdout
    assert "1 of 2 snapshot(s) failed verification" in res.stderr and "Traceback" not in res.stderr
    # ... and rollback refuses the same damage before touching the database or the migration folders.
    sqlite_shop.sql("DELETE FROM orders_orderitem")
    before = (sqlite_shop.fingerprint(), sqlite_shop.migration_files())
    refused = sqlite_shop.dbsnap("rollback", "s", "--yes")
    assert refused.returncode == 6 and EXPECT[kind] in refused.stderr
    assert (sqlite_shop.fingerprint(), sqlite_shop.migration_files()) == before
    assert sorted(p.name for p in sqlite_shop.store.iterdir() if not p.name.startswith(".")) == ["fine", "s"]


def test_truncated_stream_with_matching_checksum_is_caught(sqlite_shop: Project) -> None:
    """A payload cut short whose manifest was re-sealed to match: only reading the stream to its end sees it."""
    sqlite_shop.ok("save", "s")
    path = payload(sqlite_shop, "s")
    path.write_bytes(path.read_bytes()[:-50])
    import hashlib

    def fix(m: dict) -> None:
        m["files"][path.name] = {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    reseal(sqlite_shop, "s", fix)
    res = sqlite_shop.dbsnap("verify", "s")
    assert res.returncode == 6
    assert f"{path.name}: truncated zstd stream" in res.stdout or f"{path.name}: corrupt zstd data" in res.stdout


def test_deep_catches_row_counts_and_archive(shop: Project) -> None:
    before = scratch_dbs(shop) if shop.pg_name else set()
    shop.ok("save", "s")
    reseal(shop, "s", lambda m: m["databases"]["default"]["tables"].update(orders_orderitem=1))
    res = shop.dbsnap("verify", "s", "--deep")
    assert (
        res.returncode == 6 and "table orders_orderitem restores" in res.stdout and "the manifest says 1" in res.stdout
    )
    shop.ok("save", "t")
    reseal(shop, "t", lambda m: m["migrations"]["files"].pop())
    res = shop.dbsnap("verify", "t", "--deep")
    assert res.returncode == 6 and "does not hold the manifest's migration files" in res.stdout
    if shop.pg_name:
        assert_no_scratch_left(shop, before)


def test_deep_interrupted_leaves_no_scratch_database(pg_shop: Project) -> None:
    pg_shop.ok("save", "s")

    before = scratch_dbs(pg_shop)
    proc = pg_shop.start(
        "verify", "s", "--deep", env={"DBSNAP_FAULT": "verify.after-restore:sleep", "DBSNAP_FAULT_SECONDS": "30"}
    )
    deadline, ours = time.monotonic() + 30, set()
    while time.monotonic() < deadline and not ours:
        ours = scratch_dbs(pg_shop) - before
        time.sleep(0.05)
    assert len(ours) == 1, ours
    time.sleep(0.5)  # the restore is done, dbsnap sleeps at the fault point holding the scratch database
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not ours & scratch_dbs(pg_shop)


def test_save_verify_checks_before_commit(sqlite_shop: Project) -> None:
    res = sqlite_shop.ok("save", "s", "--verify")
    assert "verifying the new snapshot before committing it" in res.stderr
    assert sqlite_shop.ok("verify", "s").stdout.startswith("ok      s ")


def test_verify_names_and_all_conflict(sqlite_shop: Project) -> None:
    sqlite_shop.ok("save", "s")
    assert sqlite_shop.dbsnap("verify", "s", "--all").returncode == 2
    assert sqlite_shop.dbsnap("verify", "nope").returncode == 3
