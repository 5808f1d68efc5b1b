"""Bad input and hostile conditions: one clear ``error:`` line, the documented exit code, and NOTHING changed.

"Nothing changed" is checked the same way everywhere (:func:`capture` / :func:`assert_unchanged`): every byte of
the store, the database fingerprint, the migration files, no ``.tmp`` debris, no journal, no lock file, no staged
or backup folders in the project, and no ``*_dbsnap_*`` scratch database left in PostgreSQL.

Exit codes (dbsnap/errors.py): 2 usage, 3 snapshot not found, 4 config, 5 external tool/connection,
6 integrity, 8 rollback failed, 11 store locked, 130 interrupted; 1 for anything else (a full disk).
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from conftest import (
    PG,
    Project,
    child_env,
    copy_seeded_sqlite,
    fresh_pg_database,
    pg_project,
    server_major,
    set_env_file,
    sqlite_project,
    tmpfs,
    tree,
)

from dbsnap.store.locking import store_lock
from dbsnap.store.snapshots import Store

SECRET = "S3cret-pw-must-never-be-printed"
DBSNAP = [sys.executable, "-m", "dbsnap"]
SCRATCH_SQL = "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1"


# -- helpers ---------------------------------------------------------------------------------------------------


def run(p: Project, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """``dbsnap ARGS`` in the project, never attached to a terminal (stdin is /dev/null)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("timeout", 120)
    return p.dbsnap(*args, env=env, **kw)


def failed(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """Assert exit ``code``, exactly one ``error:`` line (optionally one ``hint:`` right after it, nothing else
    after), no traceback, nothing on stdout, and every word (case-insensitive) in error+hint. Return that text."""
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == code, f"expected exit {code}, got {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err and "Traceback" not in out, err
    assert out.strip() == "", f"stdout must carry results only:\n{out}"
    lines = err.splitlines()
    errors = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
    assert len(errors) == 1, f"want exactly one 'error:' line:\n{err}"
    tail = [ln for ln in lines[errors[0] + 1 :] if ln.strip()]
    assert tail == [] or (len(tail) == 1 and tail[0].startswith("hint: ")), f"only a hint may follow:\n{err}"
    text = "\n".join([lines[errors[0]], *tail])
    for w in words:
        assert w.lower() in text.lower(), f"{w!r} not in:\n{text}"
    return text


def scratch_databases(p: Project) -> list[str]:
    if not p.pg_name:
        return []
    pattern = p.pg_name.replace("_", r"\_") + r"\_dbsnap\_%"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        return [r[0] for r in c.execute(SCRATCH_SQL, (pattern,)).fetchall()]


def debris(p: Project, store: Path | None = None) -> list[str]:
    """What a failed or interrupted command must never leave behind."""
    store = store or p.store
    found = [f"store:{n}" for n in (".journal.json", ".lock") if (store / n).exists()]
    if (store / ".tmp").is_dir():
        found += [f".tmp/{x.name}" for x in (store / ".tmp").iterdir()]
    found += [
        str(x.relative_to(p.root))
        for x in p.root.rglob("*")
        if ".dbsnap-" in x.name and store not in x.parents and p.store not in x.parents
    ]
    return found + scratch_databases(p)


@dataclass
class State:
    store: dict[str, str]
    fingerprint: dict
    files: dict[str, bytes]


def capture(p: Project, store: Path | None = None) -> State:
    return State(tree(store or p.store), p.fingerprint(), p.migration_files())


def assert_unchanged(p: Project, before: State, store: Path | None = None) -> None:
    after = capture(p, store)
    changed = sorted(k for k in before.store.keys() | after.store.keys() if before.store.get(k) != after.store.get(k))
    assert not changed, f"store changed: {changed}"
    assert after.fingerprint == before.fingerprint, "the database changed"
    assert after.files == before.files, "the migration files changed"
    assert debris(p, store) == []


def break_state(p: Project) -> None:
    """Move away from the saved state, so that a rollback would really change database and files."""
    p.sql("DELETE FROM orders_orderitem WHERE id % 3 = 0")
    p.sql("CREATE TABLE stray_after_snapshot (id integer)")
    (p.root / "orders" / "migrations" / "0002_order_note.py").write_text("# edited by hand\n")
    (p.root / "accounts" / "migrations" / "0002_extra.py").write_text("# new\n")


# -- shared projects -----------------------------------------------------------------------------------------
# The tests below that must change nothing share one project per engine (made like conftest's sqlite_shop and
# pg_shop, from the session's seeded database, once per module, to keep the file fast): snapshot 'pre-reset'
# saved, then the state moved on, so a rollback that went ahead would change both database and files. Each test
# checks against its own start.


def _saved_and_moved_on(p: Project) -> Project:
    p.ok("save", "pre-reset")
    break_state(p)
    return p


@pytest.fixture(scope="module")
def sqlite_saved(tmp_path_factory, sqlite_seeded_db: Path) -> Project:
    p = sqlite_project(tmp_path_factory.mktemp("sqlite") / "shop")
    return _saved_and_moved_on(copy_seeded_sqlite(sqlite_seeded_db, p))


@pytest.fixture(scope="module")
def pg_saved(tmp_path_factory, pg_server, pg_seeded_template: str) -> Project:
    with fresh_pg_database(template=pg_seeded_template) as name:
        yield _saved_and_moved_on(pg_project(tmp_path_factory.mktemp("pg") / "shop", name))


# -- 1. unknown snapshot ---------------------------------------------------------------------------------------


def test_unknown_snapshot_is_3_with_a_suggestion(shop: Project) -> None:
    shop.ok("save", "pre-reset")
    before = capture(shop)
    for args in (["show", "pre-rest"], ["rollback", "pre-rest", "--yes"], ["delete", "pre-rest", "--yes"]):
        text = failed(run(shop, *args), 3, "'pre-rest' not found", "did you mean pre-reset?")
        assert text.splitlines()[-1] == "hint: did you mean pre-reset?"
    # One unknown name among known ones: nothing at all is deleted.
    failed(run(shop, "delete", "pre-reset", "pre-rest", "--yes"), 3, "pre-rest")
    # Far from every name: no guess, a pointer to 'dbsnap list' instead.
    failed(run(shop, "show", "zzzzzzzz"), 3, "not found", "dbsnap list")
    assert_unchanged(shop, before)


def test_latest_in_an_empty_store_is_3(sqlite_shop: Project) -> None:
    before = capture(sqlite_shop)
    failed(run(sqlite_shop, "rollback", "latest", "--yes"), 3, "no snapshots")
    failed(run(sqlite_shop, "show", "latest"), 3, "no snapshots", "dbsnap save")
    assert_unchanged(sqlite_shop, before)


# -- 2. invalid names --------------------------------------------------------------------------------------------

BAD_NAMES = {
    "a/b": "path separators",
    "..": "no path separators or '..'",
    "../x": "no path separators or '..'",
    ".hidden": "must not start with a dot",
    "x" * 101: "longer than 100 characters",
    "latest": "reserved",
    "": "empty",
    "a b": "letters, digits",
    "a\\b": "path separators",
    "café": "letters, digits",
}


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_invalid_names_on_save_are_2(sqlite_saved: Project, tmp_path: Path) -> None:
    p = sqlite_saved
    before = capture(p)
    fresh = tmp_path / "fresh-store"
    for name, problem in BAD_NAMES.items():
        text = failed(run(p, "save", name), 2, "invalid snapshot name", problem)
        assert len(text.splitlines()[0]) < 200, "the message quotes a long name only in part"
        failed(run(p, "--store", str(fresh), "save", name), 2, "invalid snapshot name", problem)
    assert_unchanged(p, before)
    assert not fresh.exists(), "a refused name must not even create the store"


# -- 3. saving over an existing name ---------------------------------------------------------------------------


def test_existing_name_needs_force_which_replaces_it(sqlite_shop: Project) -> None:
    p = sqlite_shop
    p.ok("save", "pre-reset", "--note", "first")
    first = json.loads((p.store / "pre-reset" / "manifest.json").read_text())
    before = capture(p)
    failed(run(p, "save", "pre-reset"), 2, "'pre-reset' already exists", "--force")
    assert_unchanged(p, before)

    p.sql("DELETE FROM orders_orderitem WHERE id % 2 = 0")  # so the replacement really holds other data
    p.ok("save", "pre-reset", "--force", "--note", "second")
    store = Store(p.store)
    assert [s.name for s in store.list()] == ["pre-reset"]
    snap = store.get("pre-reset")
    assert snap.manifest["created_at"] != first["created_at"]
    assert snap.manifest["note"] == "second"
    assert snap.databases["default"]["tables"] != first["databases"]["default"]["tables"]
    store.verify_checksums(snap)
    assert debris(p) == []


# -- 4. the database cannot be reached -------------------------------------------------------------------------


def test_unreachable_database_is_5_naming_host_port_user(pg_saved: Project) -> None:
    p = pg_saved
    before = capture(p)
    host = PG["host"]
    cases = [
        ({"DB_PORT": "1"}, ("save", "x"), [f"{host}:1", "as postgres", "connection refused"]),
        ({"DB_PORT": "1"}, ("rollback", "pre-reset", "--yes"), [f"{host}:1", "as postgres"]),
        # The server trusts every role it knows; a role it does not know is refused by name.
        ({"DB_USER": "nosuchrole"}, ("save", "x"), [f"{host}:{PG['port']}", "nosuchrole", "does not exist"]),
        ({"DB_NAME": "nosuchdb_dbsnap"}, ("save", "x"), [f"{host}:{PG['port']}", "as postgres", "nosuchdb_dbsnap"]),
    ]
    good_env = (p.root / ".env").read_text()
    try:
        for changes, args, words in cases:
            (p.root / ".env").write_text(good_env)
            set_env_file(p, DB_PASSWORD=SECRET, **changes)
            res = run(p, *args)
            failed(res, 5, "cannot connect to PostgreSQL", *words)
            assert SECRET not in res.stdout + res.stderr, "the password was printed"
    finally:
        (p.root / ".env").write_text(good_env)
    assert_unchanged(p, before)


# -- 5. pg_dump / pg_restore missing ---------------------------------------------------------------------------


def test_missing_client_tool_is_5_naming_it(pg_saved: Project, tmp_path: Path) -> None:
    # dbsnap also looks in /usr/lib/postgresql/*/bin, so an empty PATH does not hide the tools here; a
    # configured command that does not exist is the case a user meets (test_pg_tools_not_installed: none at all).
    p = pg_saved
    before = capture(p)
    gone = tmp_path / "gone"
    failed(run(p, "save", "x", env={"DBSNAP_PG_DUMP": str(gone / "pg_dump")}), 5, "pg_dump", str(gone))
    res = run(p, "rollback", "pre-reset", "--yes", env={"DBSNAP_PG_RESTORE": str(gone / "pg_restore")})
    failed(res, 5, "pg_restore", str(gone))
    failed(run(p, "rollback", "pre-reset", "--yes", env={"DBSNAP_PSQL": str(gone / "psql")}), 5, "psql")
    assert_unchanged(p, before)  # in particular: no safety snapshot was taken


def test_pg_tools_not_installed_is_5(pg_saved: Project, tmp_path: Path) -> None:
    """No pg_dump anywhere: PATH without it, and /usr/lib/postgresql hidden in a private mount namespace."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not (unshare and mount):
        pytest.skip("needs unshare(1) and mount(8) to hide /usr/lib/postgresql from one process")
    probe = subprocess.run([unshare, "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace (not root?): {probe.stderr.decode().strip()}")
    p = pg_saved
    before = capture(p)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    hide = (
        "mount -t tmpfs -o size=64k dbsnap-test /usr/lib/postgresql && " if Path("/usr/lib/postgresql").is_dir() else ""
    )
    script = f'{hide}PATH={empty} exec "$0" "$@"'
    res = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script, *DBSNAP, "save", "x"],
        cwd=p.root,
        env={**p.env, "PATH": os.path.dirname(mount) + os.pathsep + "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    failed(res, 5, "pg_dump not found", "postgresql-client")
    assert_unchanged(p, before)


# -- 6. pg_dump older than the server -------------------------------------------------------------------------


def test_client_older_than_server_is_5_with_both_versions(pg_saved: Project, tmp_path: Path) -> None:
    p = pg_saved
    before = capture(p)
    major = server_major()
    fakes = {}
    for tool in ("pg_dump", "pg_restore"):
        fakes[tool] = tmp_path / tool
        fakes[tool].write_text(f'#!/bin/sh\necho "{tool} (PostgreSQL) 9.6.0"\n')
        fakes[tool].chmod(0o755)
    res = run(p, "save", "x", env={"DBSNAP_PG_DUMP": str(fakes["pg_dump"])})
    failed(res, 5, "pg_dump 9.6 is older than the PostgreSQL server", f"({major})", f"postgresql-client-{major}")
    res = run(p, "rollback", "pre-reset", "--yes", env={"DBSNAP_PG_RESTORE": str(fakes["pg_restore"])})
    failed(res, 5, "pg_restore 9.6 is older", f"({major})")
    assert_unchanged(p, before)


# -- 7. damaged snapshots ----------------------------------------------------------------------------------------


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_row_count(path: Path) -> None:
    m = json.loads(path.read_text())
    tables = m["databases"]["default"]["tables"]
    tables["accounts_user"] += 1
    path.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


DAMAGE = [
    ("payload byte flipped", "{db}", _flip_byte, "{db} fails its SHA-256 checksum"),
    ("payload truncated", "{db}", lambda f: f.write_bytes(f.read_bytes()[:100]), "{db} is 100 bytes"),
    ("payload deleted", "{db}", Path.unlink, "{db} is missing"),
    ("migrations archive flipped", "migrations.tar.zst", _flip_byte, "migrations.tar.zst fails its SHA-256"),
    ("row count edited", "manifest.json", _edit_row_count, "manifest.json was modified"),
    ("stray file added", "extra.txt", lambda f: f.write_text("x"), "unexpected file extra.txt"),
    ("manifest unreadable", "manifest.json", lambda f: f.write_text("{ not json"), "manifest.json is missing"),
    ("manifest deleted", "manifest.json", Path.unlink, "manifest.json is missing"),
]


def test_damaged_snapshot_is_6_and_nothing_is_touched(shop: Project, tmp_path: Path) -> None:
    p = shop
    p.ok("save", "good")
    snap_dir = p.store / "good"
    db = json.loads((snap_dir / "manifest.json").read_text())["databases"]["default"]["payload"]
    pristine = tmp_path / "pristine"
    shutil.copytree(snap_dir, pristine)
    break_state(p)
    before = capture(p)
    for label, fname, damage, words in DAMAGE:
        damage(snap_dir / fname.format(db=db))
        damaged = tree(p.store)
        res = run(p, "rollback", "good", "--yes")
        failed(res, 6, "snapshot 'good'", words.format(db=db))
        assert tree(p.store) == damaged, f"{label}: the store changed (a safety snapshot?)"
        assert debris(p) == [], label
        shutil.rmtree(snap_dir)
        shutil.copytree(pristine, snap_dir)
    assert_unchanged(p, before)  # database and migration files untouched by all of the above


# -- 8. a full disk ----------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 32 KB tmpfs: room for the store's skeleton, not for a payload."""
    with tmpfs(tmp_path / "small-disk", "32k") as mnt:
        yield mnt


def test_full_disk_during_save_is_1_and_saves_nothing(shop: Project, small_disk: Path) -> None:
    p = shop
    p.manage("seed", "--scale", "5")
    store = small_disk / "snaps"
    before = capture(p, store)
    res = run(p, "--store", str(store), "save", "big")
    failed(res, 1, "no space left on device", "nothing was saved")
    listing = run(p, "--store", str(store), "list", "--json")
    assert listing.returncode == 0 and json.loads(listing.stdout) == [], listing.stderr
    assert not store.exists()  # the store this failed save had to create is gone again, debris and all
    assert_unchanged(p, before, store)


# -- 9. Ctrl-C -----------------------------------------------------------------------------------------------------


def interrupt(
    p: Project, args: list[str], trigger: str, delay: float, group: bool
) -> tuple[subprocess.CompletedProcess, bool]:
    """Run dbsnap, send SIGINT ``delay`` s after it reports the step ``trigger`` on stderr; to the process only,
    or (``group``) to its whole process group as a terminal's Ctrl-C does. Return (the result, whether sent)."""
    proc = p.start(*args, stdin=subprocess.DEVNULL, start_new_session=group)
    assert proc.stderr is not None
    seen, sent = [], False
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(trigger):
                time.sleep(delay)
                if group:
                    os.killpg(proc.pid, signal.SIGINT)
                else:
                    proc.send_signal(signal.SIGINT)
                sent = True
                break
        out, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(seen) + rest), sent


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_ctrl_c_leaves_the_pair_wholly_old_or_wholly_new(pg_shop: Project) -> None:
    p = pg_shop
    p.manage("seed", "--scale", "10")  # a restore that takes a noticeable moment
    p.ok("save", "a")
    state = {"a": (p.fingerprint(), p.migration_files())}
    break_state(p)
    p.ok("save", "b")
    state["b"] = (p.fingerprint(), p.migration_files())
    keep = tree(p.store)

    # Ctrl-C during a save: exit 130, no snapshot, no debris.
    res, sent = interrupt(p, ["save", "half"], "dumping", 0.02, group=False)
    assert sent, res.stderr
    if res.returncode in (0, -signal.SIGINT):  # the save won the race (see below): it is whole
        assert res.stdout.startswith("saved half"), res.stderr
        Store(p.store).verify_checksums(Store(p.store).get("half"))
        p.ok("delete", "half", "--yes")
    else:
        failed(res, 130, "interrupted")
    assert tree(p.store) == keep and debris(p) == []

    # Ctrl-C during a rollback, at each step: ping-pong between a and b, so each run really changes the pair.
    points = [
        ("safety snapshot of the current state", 0.0, False, True),  # while the safety snapshot is staged
        ("restoring", 0.02, True, False),  # inside pg_restore, which gets the SIGINT too
        ("restoring", 0.05, False, False),  # inside pg_restore, which dbsnap must stop itself
        ("swapping in", 0.0, False, False),
        ("swapping migration folders", 0.05, True, False),  # finishing: the old database is being dropped
        ("swapping migration folders", 0.1, False, False),
    ]
    current, outcomes = "b", []
    for trigger, delay, group, safety in points:
        target = "a" if current == "b" else "b"
        args = ["rollback", target, "--yes"] + ([] if safety else ["--no-safety-snapshot"])
        res, sent = interrupt(p, args, trigger, delay, group)
        where = f"SIGINT at {trigger!r}+{delay}s{' (group)' if group else ''}: exit {res.returncode}\n{res.stderr}"
        assert sent, where
        if res.returncode in (0, -signal.SIGINT):
            # Finished before the signal, or the signal arrived while Python was already exiting (its default
            # action then ends the process): either way the rollback was complete and said so on stdout.
            assert res.stdout.startswith(f"rolled back to {target}"), where
            landed = target
        else:
            text = failed(res, 130, "interrupted")
            landed = target if "fully restored to the snapshot" in text else current
        outcomes.append(landed == target)
        fp, files = p.fingerprint(), p.migration_files()
        db_is = [k for k, v in state.items() if v[0] == fp]
        files_are = [k for k, v in state.items() if v[1] == files]
        really = [k for k, v in state.items() if v == (fp, files)] or [f"database={db_is} files={files_are}"]
        assert really == [landed], f"claimed {landed!r}, found {really}; {where}"
        assert debris(p) == [], where
        current = landed
    assert not any(outcomes[:3]), "the early interruptions must have undone the rollback"

    store = Store(p.store)
    extra = {s.name for s in store.list()} - {"a", "b"}
    assert all(n.startswith("pre-rollback-") for n in extra), extra
    for s in store.list():
        store.verify_checksums(s)  # safety snapshots taken before a Ctrl-C are whole
    assert {k: v for k, v in tree(p.store).items() if k.split("/")[0] in ("a", "b")} == {
        k: v for k, v in keep.items() if k.split("/")[0] in ("a", "b")
    }


# -- 10. the store lock ------------------------------------------------------------------------------------------


def test_locked_store_is_11_naming_the_holder(sqlite_saved: Project) -> None:
    p = sqlite_saved
    before = capture(p)
    with store_lock(p.store, "test holder"):
        t0 = time.monotonic()
        res = run(p, "--lock-timeout", "0.5", "save", "x", timeout=30)
        waited = time.monotonic() - t0
        failed(res, 11, "is locked by", f"pid {os.getpid()}", "test holder", "dbsnap unlock")
        assert 0.5 <= waited < 10, waited
        failed(run(p, "rollback", "pre-reset", "--yes"), 11, "test holder")
        failed(run(p, "delete", "pre-reset", "--yes"), 11, "test holder")
        failed(run(p, "unlock"), 11, "still running")
    assert_unchanged(p, before)


def test_stale_lock_of_a_dead_process_is_taken_over(sqlite_shop: Project) -> None:
    p = sqlite_shop
    Store(p.store).ensure()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = {"host": os.uname().nodename, "pid": dead.pid, "command": "save ghost", "started": "2020-01-01T00:00:00"}
    (p.store / ".lock").write_text(json.dumps(owner))
    res = run(p, "save", "x")
    assert res.returncode == 0, res.stderr
    assert f"warning: took over the stale lock of pid {dead.pid}" in res.stderr
    assert "save ghost" in res.stderr
    assert [s.name for s in Store(p.store).list()] == ["x"]
    assert debris(p) == []


# -- 11. no terminal, no --yes -----------------------------------------------------------------------------------


def test_without_terminal_and_yes_rollback_and_delete_refuse(sqlite_saved: Project) -> None:
    p = sqlite_saved
    before = capture(p)
    failed(run(p, "rollback", "pre-reset"), 2, "no terminal", "--yes")
    failed(run(p, "delete", "pre-reset"), 2, "no terminal", "--yes")
    assert_unchanged(p, before)

    # On a terminal, answering "n" cancels just the same.
    for args in (["rollback", "pre-reset"], ["delete", "pre-reset"]):
        master, slave = pty.openpty()
        try:
            os.write(master, b"n\n")
            res = run(p, *args, stdin=slave)
        finally:
            os.close(slave)
            os.close(master)
        # The answer is echoed on the terminal, not on stderr: the error follows the prompt on one stderr line.
        res.stderr = re.sub(r"^.*\[y/N\]: ", "", res.stderr, flags=re.M)
        failed(res, 2, "cancelled", "nothing was changed")
    assert_unchanged(p, before)


# -- 12. unknown database alias ------------------------------------------------------------------------------------


def test_unknown_database_alias_is_4(sqlite_saved: Project) -> None:
    p = sqlite_saved
    before = capture(p)
    failed(run(p, "--database", "nosuchalias", "save", "x"), 4, "unknown database alias 'nosuchalias'", "default")
    failed(run(p, "-d", "nosuchalias", "rollback", "pre-reset", "--yes"), 4, "'nosuchalias'", "default")
    assert_unchanged(p, before)


# -- 13. not a project -------------------------------------------------------------------------------------------


def test_project_without_manage_py_is_4(tmp_path: Path) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    (tmp_path / "not-a-project").mkdir()
    (tmp_path / "not-a-project" / "settings.py").write_text("")
    p = Project(here, child_env())
    before = tree(tmp_path)
    for flag in (["--project", str(tmp_path / "not-a-project")], []):
        env = {} if flag else {"DBSNAP_PROJECT": str(tmp_path / "not-a-project")}
        failed(run(p, *flag, "save", "x", env=env), 4, "not a Django project root", "no manage.py")
    failed(run(p, "--project", str(tmp_path / "missing"), "save", "x"), 4, "does not exist")
    failed(run(p, "save", "x"), 4, "no Django project found", "--project")
    assert tree(tmp_path) == before


def test_options_after_the_command_name(sqlite_shop, tmp_path) -> None:
    """--store, --lock-timeout, --database and --project work after the command too (and win)."""
    from dbsnap.store.locking import store_lock

    elsewhere = tmp_path / "after-store"
    sqlite_shop.ok("save", "a", "--store", str(elsewhere), "--database", "default")
    assert (elsewhere / "a" / "manifest.json").is_file()
    with store_lock(elsewhere, "test holder"):
        res = sqlite_shop.dbsnap("save", "b", "--store", str(elsewhere), "--lock-timeout", "0.3")
    assert res.returncode == 11 and "test holder" in res.stderr
    bad = sqlite_shop.dbsnap("save", "c", "--database", "nosuchalias")
    assert bad.returncode == 4 and "nosuchalias" in bad.stderr


def test_failed_command_leaves_no_new_store(sqlite_shop) -> None:
    """A save that fails after taking the lock removes the store folder it had to create."""
    res = sqlite_shop.dbsnap("save", "x", env={"DBSNAP_FAULT": "save.after-dump:raise"})
    assert res.returncode == 1 and "injected fault" in res.stderr
    assert not sqlite_shop.store.exists()


def test_damaged_snapshot_folder_is_listed_and_deletable(sqlite_shop) -> None:
    sqlite_shop.ok("save", "good")
    broken = sqlite_shop.store / "broken"
    broken.mkdir()
    (broken / "db-default.sqlite3.zst").write_bytes(b"x")
    res = sqlite_shop.ok("list")
    assert "broken: damaged snapshot folder" in res.stderr and "good" in res.stdout
    refused = sqlite_shop.dbsnap("delete", "broken", "--yes")
    assert refused.returncode == 6 and "--force" in refused.stderr
    sqlite_shop.ok("delete", "broken", "--yes", "--force")
    assert not broken.exists() and (sqlite_shop.store / "good").exists()
