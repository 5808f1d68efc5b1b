"""Trust no bytes on disk: forged manifests, archives and journals, the keyed seal, identity and store placement.

Every refusal is checked as a user would: the exit code, the one ``error:`` line, and that nothing outside the
store changed (every file of the project tree and of a victim folder beside it hashed, and the server's list of
databases, before and after).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import psycopg
import pytest
import zstandard
from conftest import PG, Project, copy_seeded_sqlite, fresh_pg_database, sqlite_project, tree

from dbsnap.store.snapshots import dump_manifest

KEY = "k" * 32
OTHER_KEY = "o" * 32


# -- helpers ---------------------------------------------------------------------------------------------------


def refused(proc, code: int, *words: str) -> str:
    """Exit ``code``, exactly one ``error:`` line holding ``words``, no traceback; return that line."""
    assert proc.returncode == code, f"expected {code}, got {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for w in words:
        assert w in errors[0], f"{w!r} not in {errors[0]!r}"
    return errors[0]


def server_databases(prefixes: list[str]) -> list[str]:
    """The server's databases whose names start with one of ``prefixes`` (other worktrees' tests share it)."""
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        names = [r[0] for r in c.execute("SELECT datname FROM pg_database").fetchall()]
    return sorted(n for n in names if n.startswith(tuple(prefixes)))


def outside(p: Project, *extra: Path, dbs: tuple[str, ...] = ()) -> dict:
    """Everything outside the store: the project tree (store excluded), extra folders, the server's databases
    that this test's project or ``dbs`` could name (its own, derived copies, ``postgres``)."""
    files = {k: v for k, v in tree(p.root).items() if not (k == "snapshots" or k.startswith("snapshots/"))}
    modes = {k: stat.S_IMODE((p.root / k).stat().st_mode) for k in files}
    return {
        "project": files,
        "modes": modes,
        "extra": [tree(e) for e in extra],
        "databases": server_databases([p.pg_name, "postgres", *dbs]) if p.pg_name else [],
    }


def manifest_path(store: Path, name: str) -> Path:
    return store / name / "manifest.json"


def reseal(store: Path, name: str, change) -> None:
    """Edit a manifest and recompute its plain checksum, as anyone who can write the store can."""
    path = manifest_path(store, name)
    m = json.loads(path.read_text())
    change(m)
    m.pop("manifest_sha256", None)
    path.write_text(dump_manifest(m))


def read_members(store: Path, name: str) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO((store / name / "migrations.tar.zst").read_bytes()))
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw.read()), mode="r:") as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isfile() else None
            out.append((m, f.read() if f else None))
    return out


def write_members(store: Path, name: str, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """Replace the snapshot's migrations archive and reseal the manifest's file entry to match."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    blob = zstandard.ZstdCompressor().compress(buf.getvalue())
    (store / name / "migrations.tar.zst").write_bytes(blob)
    entry = {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    reseal(store, name, lambda m: m["files"].update({"migrations.tar.zst": entry}))


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"x = 1\n", **kw) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if data is not None and kind == tarfile.REGTYPE else 0
    for k, v in kw.items():
        setattr(info, k, v)
    return info, data if kind == tarfile.REGTYPE else None


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder outside the project that a forged snapshot or journal aims at."""
    v = tmp_path / "victim"
    v.mkdir()
    (v / "precious.txt").write_text("do not delete\n")
    return v


# -- 1. forged manifest paths ----------------------------------------------------------------------------------

FORGED = {
    "relative escape": (
        lambda m, v: m["migrations"]["folders"].append({"app": "evil", "path": "../victim"}),
        "escapes its folder",
    ),
    "absolute": (
        lambda m, v: m["migrations"]["folders"].append({"app": "evil", "path": str(v)}),
        "escapes its folder",
    ),
    "settings package": (
        lambda m, v: m["migrations"]["folders"].append({"app": "evil", "path": "shopsite"}),
        "'shopsite' is not one of this project's migration folders",
    ),
    "payload outside the snapshot": (
        lambda m, v: m["databases"]["default"].update(payload="../../x.zst"),
        "is not a file name inside the snapshot folder",
    ),
    "file entry outside the folders": (
        lambda m, v: m["migrations"]["files"].append({"path": "shopsite/pwned.py", "bytes": 1, "sha256": "0"}),
        "shopsite/pwned.py is outside the snapshot's migration folders",
    ),
}


@pytest.mark.parametrize("kind", sorted(FORGED))
def test_forged_manifest_paths_are_refused(sqlite_shop: Project, victim: Path, kind: str) -> None:
    p = sqlite_shop
    p.ok("save", "s")
    change, words = FORGED[kind]
    reseal(p.store, "s", lambda m: change(m, victim))
    (p.root / "orders" / "migrations" / "0002_order_note.py").write_text("# changed since\n")
    before = outside(p, victim)
    for args in (("rollback", "s", "--yes"), ("verify", "s")):
        res = p.dbsnap(*args)
        if args[0] == "verify":
            assert res.returncode == 6 and words in res.stdout, res.stdout + res.stderr
        else:
            refused(res, 6, words)
    assert outside(p, victim) == before
    assert [x.name for x in p.store.iterdir() if not x.name.startswith(".")] == ["s"]  # no safety snapshot either


# -- 2. forged journals ----------------------------------------------------------------------------------------


def _journal(p: Project, **kw) -> None:
    base = {"snapshot": "s", "phase": "restoring", "pid": 1, "started": "2026-01-01T00:00:00+00:00"}
    base.update(databases=[], folders=[])
    base.update(kw)
    (p.store / ".journal.json").write_text(json.dumps(base))


def _folder(live: Path, rel: str) -> dict:
    return {
        "path": rel,
        "live": str(live),
        "staged": str(live.parent / f".{live.name}.dbsnap-new"),
        "backup": str(live.parent / f".{live.name}.dbsnap-old"),
        "existed": True,
    }


JOURNALS = {
    "folder outside the project": lambda p, v: _journal(p, phase="undoing", folders=[_folder(v, "../victim")]),
    "known folder, live path elsewhere": lambda p, v: _journal(
        p, phase="undoing", folders=[{**_folder(v, "orders/migrations"), "path": "orders/migrations"}]
    ),
    "backup path outside": lambda p, v: _journal(
        p,
        phase="finishing",
        folders=[{**_folder(p.root / "orders" / "migrations", "orders/migrations"), "backup": str(v)}],
    ),
}


@pytest.mark.parametrize("kind", sorted(JOURNALS))
def test_forged_journal_folders_are_refused_even_by_list(sqlite_shop: Project, victim: Path, kind: str) -> None:
    p = sqlite_shop
    p.ok("save", "s")
    JOURNALS[kind](p, victim)
    before = outside(p, victim)
    refused(p.dbsnap("list"), 6, "refusing the store's journal", "nothing was changed")
    refused(p.dbsnap("save", "t"), 6, "refusing the store's journal")
    assert outside(p, victim) == before
    assert (p.store / ".journal.json").exists()  # kept for a human to look at


def test_forged_journal_database_name_is_refused(pg_shop: Project) -> None:
    p = pg_shop
    p.ok("save", "s")
    with fresh_pg_database() as victim_db:
        state = {"mode": "swap", "live": p.pg_name, "scratch": victim_db, "old": f"{p.pg_name}_dbsnap_old_abc123"}
        _journal(p, databases=[{"alias": "default", "state": state}])
        before = outside(p, dbs=(victim_db,))
        assert victim_db in before["databases"] and p.pg_name in before["databases"]
        refused(p.dbsnap("list"), 6, f"database name {victim_db!r} is not one dbsnap derives for this project")
        # A derived-looking name of another database is refused too: the base must be this database's name.
        state["scratch"] = "postgres_dbsnap_new_abc123"
        _journal(p, databases=[{"alias": "default", "state": state}])
        refused(p.dbsnap("status"), 6, "'postgres_dbsnap_new_abc123' is not one dbsnap derives")
        assert outside(p, dbs=(victim_db,)) == before


def test_journal_that_is_not_json_is_refused(sqlite_shop: Project) -> None:
    sqlite_shop.ok("save", "s")
    (sqlite_shop.store / ".journal.json").write_text("{not json")
    before = outside(sqlite_shop)
    refused(sqlite_shop.dbsnap("list"), 6, "journal", "unreadable")
    assert outside(sqlite_shop) == before


def test_forged_clone_name_is_refused_by_delete(sqlite_shop: Project) -> None:
    """A manifest naming a "clone" that is not one dbsnap derives: delete would have dropped that database."""
    p = sqlite_shop
    p.ok("save", "s")
    reseal(p.store, "s", lambda m: m["databases"]["default"].update(clone={"name": "victimdb", "oid": 1}))
    before = outside(p)
    refused(p.dbsnap("delete", "s", "--yes"), 6, "database name 'victimdb' is not one dbsnap derives")
    assert outside(p) == before and (p.store / "s" / "manifest.json").is_file()


# -- 3. bad archive members, under verify and rollback ---------------------------------------------------------

BAD_MEMBERS = {
    "dotdot": (member("orders/migrations/../../evil.py"), "escapes its folder"),
    "absolute": (member("/tmp/dbsnap-evil.py"), "escapes its folder"),
    "symlink": (member("orders/migrations/link.py", tarfile.SYMTYPE, linkname="/etc/passwd"), "is a symlink"),
    "hardlink": (
        member("orders/migrations/hard.py", tarfile.LNKTYPE, linkname="orders/migrations/__init__.py"),
        "is a hardlink",
    ),
    "device": (member("orders/migrations/dev", tarfile.CHRTYPE, devmajor=1, devminor=3), "is a device"),
    "fifo": (member("orders/migrations/fifo", tarfile.FIFOTYPE), "is a FIFO"),
    "outside the folders": (member("shopsite/pwned_settings.py"), "outside the snapshot's migration folders"),
}


@pytest.mark.parametrize("kind", sorted(BAD_MEMBERS))
def test_bad_archive_members_fail_verify_and_rollback_alike(sqlite_shop: Project, kind: str) -> None:
    p = sqlite_shop
    p.ok("save", "s")
    bad, words = BAD_MEMBERS[kind]
    write_members(p.store, "s", [*read_members(p.store, "s"), bad])
    (p.root / "orders" / "migrations" / "0002_order_note.py").write_text("# changed since\n")
    before = outside(p)
    # --deep runs the same member checks first (one kind is enough to show it; each costs a child process).
    for args in (("verify", "s"), ("verify", "s", "--deep"))[: 2 if kind == "symlink" else 1]:
        res = p.dbsnap(*args)
        assert res.returncode == 6 and words in res.stdout, res.stdout + res.stderr
        assert "1 of 1 snapshot(s) failed verification" in res.stderr
    refused(p.dbsnap("rollback", "s", "--yes"), 6, words)
    assert outside(p) == before
    assert not Path("/tmp/dbsnap-evil.py").exists()


def test_restored_file_modes_are_normalized(sqlite_shop: Project) -> None:
    p = sqlite_shop
    mig = p.root / "orders" / "migrations"
    os.chmod(mig / "0001_initial.py", 0o600)  # a mode the user chose: kept
    p.ok("save", "s")
    members = read_members(p.store, "s")
    for info, _ in members:
        info.mode = 0o4777  # what a forged (or careless) archive says
    write_members(p.store, "s", members)
    (mig / "0002_order_note.py").unlink()  # restored as a new file: 0644
    p.ok("rollback", "s", "--yes")
    assert stat.S_IMODE((mig / "0001_initial.py").stat().st_mode) == 0o600
    assert stat.S_IMODE((mig / "0002_order_note.py").stat().st_mode) == 0o644
    assert all(stat.S_IMODE(f.stat().st_mode) & 0o7022 == 0 for f in mig.iterdir() if f.is_file())
    assert stat.S_IMODE(mig.stat().st_mode) == 0o755 or stat.S_IMODE(mig.stat().st_mode) & 0o022 == 0


# -- 4. another project's snapshot -----------------------------------------------------------------------------


def test_two_projects_sharing_a_store(tmp_path: Path, sqlite_seeded_db: Path) -> None:
    shared = tmp_path / "shared-store"
    a = copy_seeded_sqlite(sqlite_seeded_db, sqlite_project(tmp_path / "a" / "shop"))
    b = copy_seeded_sqlite(sqlite_seeded_db, sqlite_project(tmp_path / "b" / "shop"))
    env = {"DBSNAP_DIR": str(shared)}
    a.ok("save", "from-a", env=env)
    (b.root / "orders" / "migrations" / "0003_b_only.py").write_text("# B's own work\n")
    before = outside(b)
    text = refused(b.dbsnap("rollback", "latest", "--yes", env=env), 4, "was taken of another project root")
    assert str(a.root) in text and str(b.root) in text
    refused(b.dbsnap("--store", str(shared), "rollback", "from-a", "--yes"), 4, "another project root")
    assert outside(b) == before
    res = b.ok("rollback", "from-a", "--yes", "--other-project", env=env)
    assert f"OTHER PROJECT: the snapshot's project root is {a.root}, this one's is {b.root}" in res.stderr
    assert not (b.root / "orders" / "migrations" / "0003_b_only.py").exists()


def test_old_manifest_without_identity_fields_still_rolls_back(sqlite_shop: Project) -> None:
    p = sqlite_shop
    p.ok("save", "old")
    reseal(p.store, "old", lambda m: (m.pop("project"), m["databases"]["default"].pop("name")))
    p.ok("rollback", "old", "--yes")


# -- 5. where the store may live ---------------------------------------------------------------------------------


def test_default_store_is_at_the_project_root_whatever_the_cwd(sqlite_shop: Project) -> None:
    p = sqlite_shop
    mig = p.root / "orders" / "migrations"
    before = tree(mig)

    def in_mig(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dbsnap", *args], cwd=mig, env=p.env, capture_output=True, text=True
        )

    res = in_mig("save", "inside-mig")
    assert res.returncode == 0, res.stderr
    assert (p.store / "inside-mig" / "manifest.json").is_file() and tree(mig) == before
    assert in_mig("rollback", "inside-mig", "--yes").returncode == 0
    assert sorted(x.name for x in p.store.iterdir() if not x.name.startswith("."))[0] == "inside-mig"


@pytest.mark.parametrize("how", ["--store", "DBSNAP_DIR"])
def test_store_inside_a_migration_folder_is_refused(sqlite_shop: Project, how: str) -> None:
    p = sqlite_shop
    where = p.root / "orders" / "migrations" / "snaps"
    before = outside(p)
    args, env = (["--store", str(where)], None) if how == "--store" else ([], {"DBSNAP_DIR": str(where)})
    refused(p.dbsnap(*args, "save", "x", env=env), 4, "is inside migration folder orders/migrations")
    assert outside(p) == before and not where.exists()


def test_store_at_an_existing_project_folder_is_refused(sqlite_shop: Project) -> None:
    p = sqlite_shop
    app = p.root / "accounts"
    mode = stat.S_IMODE(app.stat().st_mode)
    before = outside(p)
    refused(p.dbsnap("--store", str(app), "save", "x"), 4, "is not a dbsnap store", "refusing to use it")
    res = p.dbsnap("--store", str(app), "list")
    assert res.returncode == 0 and res.stdout.strip() == "no snapshots" and "damaged" not in res.stderr
    refused(p.dbsnap("--store", str(app), "delete", "migrations", "--force", "--yes"), 3, "not found")
    assert outside(p) == before and stat.S_IMODE(app.stat().st_mode) == mode
    assert not (app / ".gitignore").exists() and not (app / ".dbsnap-store").exists()


def test_store_marker_is_made_and_old_stores_are_adopted(sqlite_shop: Project) -> None:
    p = sqlite_shop
    p.ok("save", "a")
    assert (p.store / ".dbsnap-store").is_file()
    (p.store / ".dbsnap-store").unlink()  # a store made before the marker existed
    (p.store / "not-a-snapshot").mkdir()  # a stray folder: never called a damaged snapshot
    res = p.ok("list")
    assert "a " in res.stdout and "damaged" not in res.stderr
    p.ok("save", "b")
    assert (p.store / ".dbsnap-store").is_file()


# -- the keyed seal ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_keyed_seal(sqlite_shop: Project, tmp_path: Path) -> None:
    p = sqlite_shop
    keyed = {"DBSNAP_SEAL_KEY": KEY}
    p.ok("save", "plain")
    p.ok("save", "sealed", env=keyed)
    p.ok("save", "other", env={"DBSNAP_SEAL_KEY": OTHER_KEY})
    listing = {s["name"]: s["sealed_by"] for s in json.loads(p.ok("list", "--json").stdout)}
    key_id = listing["sealed"]
    assert listing["plain"] is None and key_id and listing["other"] not in (None, key_id)
    assert f"sealed by:   key {key_id}" in p.ok("show", "sealed").stdout
    assert key_id in p.ok("list").stdout.splitlines()[2]
    p.ok("rollback", "sealed", "--yes", env=keyed)
    # Unsealed or sealed by another key: only with --allow-unsealed.
    refused(p.dbsnap("rollback", "plain", "--yes", env=keyed), 6, f"is not sealed by this machine's key {key_id}")
    refused(p.dbsnap("rollback", "other", "--yes", env=keyed), 6, f"(sealed by key {listing['other']})")
    p.ok("rollback", "plain", "--yes", "--allow-unsealed", env=keyed)
    # A forger can recompute the plain checksum, not the seal: refused, --allow-unsealed or not.
    reseal(p.store, "sealed", lambda m: m.update(note="forged"))
    before = outside(p)
    for extra in ((), ("--allow-unsealed",)):
        refused(p.dbsnap("rollback", "sealed", "--yes", *extra, env=keyed), 6, "its seal does not match")
    res = p.dbsnap("verify", "sealed", env=keyed)
    assert res.returncode == 6 and "its seal does not match" in res.stdout
    assert outside(p) == before
    # A key file readable by others is refused before anything is written.
    key_file = tmp_path / "seal.key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)
    refused(p.dbsnap("save", "x", env={"DBSNAP_SEAL_KEY_FILE": str(key_file)}), 4, "is readable by others")
    key_file.chmod(0o600)
    p.ok("save", "x", env={"DBSNAP_SEAL_KEY_FILE": str(key_file)})
    assert json.loads(manifest_path(p.store, "x").read_text())["seal"]["key_id"] == key_id
