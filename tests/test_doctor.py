"""``dbsnap doctor``: one line per check, each one not ok with its fix; exit 5 when a check fails; changes nothing.

Asserted on what a user sees: the report on stdout (``<status> <name> <detail>`` lines, a ``fix:`` line under
each one not ok, a summary), one ``error:`` line on stderr when something fails, and the store untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    Project,
    child_env,
    fresh_pg_database,
    pg_project,
    server_major,
    set_env_file,
    sqlite_project,
    tree,
)

from dbsnap.store.locking import store_lock

DBSNAP = [sys.executable, "-m", "dbsnap"]
LINE = re.compile(r"^(ok|warn|fail) +(\S.*?) {2,}(\S.*)$")


def doctor(p: Project, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return p.dbsnap("doctor", *args, env=env, stdin=subprocess.DEVNULL, timeout=60)


def report(proc: subprocess.CompletedProcess) -> dict[str, tuple[str, str, str | None]]:
    """The text report as {name: (status, detail, fix)}; asserts its shape on the way."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = proc.stdout.rstrip("\n").splitlines()
    assert re.fullmatch(r"\d+ checks: \d+ ok, \d+ warn, \d+ fail", lines[-1]), lines[-1]
    checks: dict[str, list] = {}
    last = None
    for ln in lines[:-1]:
        m = LINE.match(ln)
        if m:
            status, name, detail = m.groups()
            assert name not in checks, f"check {name!r} reported twice"
            checks[name] = [status, detail, None]
            last = name
        else:
            assert ln.lstrip().startswith("fix: ") and last is not None, f"unexpected line: {ln!r}"
            assert checks[last][0] != "ok", f"an ok check has a fix: {ln!r}"
            checks[last][2] = ln.split("fix: ", 1)[1]
    for name, (status, _, fix) in checks.items():
        assert status == "ok" or fix, f"{name} is {status} without a fix"
    n = len(checks)
    counts = [sum(1 for c in checks.values() if c[0] == s) for s in ("ok", "warn", "fail")]
    assert lines[-1] == f"{n} checks: {counts[0]} ok, {counts[1]} warn, {counts[2]} fail"
    return {k: tuple(v) for k, v in checks.items()}


def failed_with(proc: subprocess.CompletedProcess, *names: str) -> None:
    """Exit 5 and one ``error:`` line on stderr naming exactly the failed checks."""
    assert proc.returncode == 5, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr
    assert err[0].endswith("checks failed: " + ", ".join(names)), err[0]


# -- projects --------------------------------------------------------------------------------------------------
# One migrated example project per engine for the whole module (doctor changes nothing, so they can be shared);
# a test that needs snapshots gets its own store through DBSNAP_DIR.


@pytest.fixture(scope="module")
def sq(tmp_path_factory) -> Project:
    p = sqlite_project(tmp_path_factory.mktemp("sqlite") / "shop")
    p.manage("migrate", "-v0")
    return p


@pytest.fixture(scope="module")
def pg(tmp_path_factory, pg_server) -> Project:
    with fresh_pg_database() as name:
        p = pg_project(tmp_path_factory.mktemp("pg") / "shop", name)
        p.manage("migrate", "-v0")
        yield p


@pytest.fixture(params=["sqlite", "postgresql"])
def each(request) -> Project:
    return request.getfixturevalue("sq" if request.param == "sqlite" else "pg")


def own_store(p: Project, tmp_path: Path) -> tuple[dict, Path]:
    """A store of this test's own holding one snapshot 'base': (environment selecting it, its folder)."""
    store = tmp_path / "snapshots"
    env = {"DBSNAP_DIR": str(store)}
    p.ok("save", "base", env=env)
    return env, store


# -- healthy projects --------------------------------------------------------------------------------------------


def test_healthy_project_is_all_ok_and_creates_nothing(each: Project) -> None:
    proc = doctor(each)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    checks = report(proc)
    assert {n: c for n, c in checks.items() if c[0] != "ok"} == {}
    common = ["python", "dbsnap", "project", "settings", "django", "migrations", "database default"]
    store = ["store", "disk space", "safety snapshots", "lock", "journal", "branch states"]
    if each.pg_name:
        privileges = ["default: maintenance db", "default: create databases", "default: terminate sessions"]
        privileges.append("default: clones")  # no clone without a snapshot: ok
        assert list(checks) == [*common, *privileges, "pg_dump", "pg_restore", "psql", *store]
        assert checks["database default"][1].startswith(f"postgresql {each.pg_name} on 127.0.0.1:5432 as postgres")
        for name in ("pg_dump", "pg_restore", "psql"):
            assert checks[name][1].endswith(f"(server {server_major()})")
        assert "superuser" in checks["default: create databases"][1]
        assert "superuser" in checks["default: terminate sessions"][1]
    else:
        assert list(checks) == [*common, *store]
        assert checks["database default"][1].startswith(f"sqlite {each.root / 'db.sqlite3'} (SQLite ")
    assert checks["project"][1] == str(each.root)
    assert checks["settings"][1] == "shopsite.settings imported (1 database)"
    assert checks["migrations"][1].startswith("3 folders (accounts/migrations, catalog/migrations, orders/migrations)")
    # Nothing was created: no store (so no lock file either).
    assert not each.store.exists()
    assert checks["store"][1] == f"{each.store} does not exist yet; the first save creates it ({each.root} is writable)"


def test_json_has_one_entry_per_check(pg: Project, tmp_path: Path) -> None:
    env, _ = own_store(pg, tmp_path)
    text = report(doctor(pg, env=env))
    proc = doctor(pg, "--json", env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    assert [c["name"] for c in data["checks"]] == list(text)
    for c in data["checks"]:
        assert set(c) == {"name", "status", "detail", "fix"}
        assert c["status"] == "ok" and c["fix"] is None
        if c["name"] != "disk space":  # free space moves between two runs
            assert c["detail"] == text[c["name"]][1]
    assert "the latest snapshot base is" in text["disk space"][1]
    # A failure: still exactly one JSON document on stdout, the error on stderr.
    proc = doctor(pg, "--json", env={**env, "DBSNAP_PG_DUMP": "/nonexistent/pg_dump"})
    failed_with(proc, "pg_dump")
    data = json.loads(proc.stdout)
    assert data["ok"] is False
    bad = [c for c in data["checks"] if c["status"] != "ok"]
    assert [(c["name"], c["status"]) for c in bad] == [("pg_dump", "fail")]
    assert "DBSNAP_PG_DUMP" in bad[0]["fix"]


# -- failures, each with its fix ---------------------------------------------------------------------------------


def test_missing_pg_dump_is_a_failure_with_its_fix(pg: Project, tmp_path: Path) -> None:
    # A configured command that does not exist.
    proc = doctor(pg, env={"DBSNAP_PG_DUMP": "/nonexistent/pg_dump"})
    failed_with(proc, "pg_dump")
    status, detail, fix = report(proc)["pg_dump"]
    assert status == "fail"
    assert "/nonexistent/pg_dump" in detail and "not found" in detail
    assert fix.startswith("DBSNAP_PG_DUMP is set to '/nonexistent/pg_dump': correct it")
    assert "or unset it" in fix

    # No client tools at all: PATH without them and /usr/lib/postgresql hidden in a private mount namespace.
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not (unshare and mount):
        pytest.skip("needs unshare(1) and mount(8) to hide /usr/lib/postgresql from one process")
    probe = subprocess.run([unshare, "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace (not root?): {probe.stderr.decode().strip()}")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    hide = (
        "mount -t tmpfs -o size=64k dbsnap-test /usr/lib/postgresql && " if Path("/usr/lib/postgresql").is_dir() else ""
    )
    script = f'{hide}PATH={empty} exec "$0" "$@"'
    proc = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script, *DBSNAP, "doctor"],
        cwd=pg.root,
        env={**pg.env, "PATH": os.path.dirname(mount) + os.pathsep + "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    failed_with(proc, "pg_dump", "pg_restore", "psql")
    checks = report(proc)
    major = server_major()
    for tool in ("pg_dump", "pg_restore", "psql"):
        status, detail, fix = checks[tool]
        assert (status, detail) == ("fail", f"{tool} not found on PATH")
        assert f"install postgresql-client-{major} (Debian/Ubuntu: apt install postgresql-client-{major}" in fix
        assert f"set DBSNAP_PG_BIN to a folder holding {tool} {major} or newer" in fix
    assert checks["database default"][0] == "ok"  # the server itself is fine


def test_client_older_than_server_names_the_package(pg: Project, tmp_path: Path) -> None:
    fake = tmp_path / "pg_restore"
    fake.write_text('#!/bin/sh\necho "pg_restore (PostgreSQL) 9.6.0"\n')
    fake.chmod(0o755)
    proc = doctor(pg, env={"DBSNAP_PG_RESTORE": str(fake)})
    failed_with(proc, "pg_restore")
    _, detail, fix = report(proc)["pg_restore"]
    major = server_major()
    assert detail == f"pg_restore 9.6 is older than the PostgreSQL server ({major}): it cannot handle this server"
    assert f"DBSNAP_PG_RESTORE is set to '{fake}'" in fix and f"pg_restore {major} or newer" in fix


def test_unreachable_server_is_a_failure_naming_host_and_port(pg: Project) -> None:
    dotenv = (pg.root / ".env").read_text()
    set_env_file(pg, DB_PORT="1")
    try:
        proc = doctor(pg)
    finally:
        (pg.root / ".env").write_text(dotenv)
    failed_with(proc, "database default")
    checks = report(proc)
    status, detail, fix = checks["database default"]
    assert status == "fail"
    assert detail.startswith(f"cannot connect to PostgreSQL database '{pg.pg_name}' at 127.0.0.1:1 as postgres: ")
    assert "Connection refused" in detail
    assert fix == "check the server is running and the credentials in your settings or .env"
    # Privileges cannot be known; the tools are found but cannot be compared with the server.
    assert not any(n.startswith("default: ") for n in checks)
    assert checks["pg_dump"][0] == "warn" and "server unreachable" in checks["pg_dump"][1]


def test_read_only_store_is_a_failure(sq: Project, tmp_path: Path) -> None:
    """The store bind-mounted read-only in a private mount namespace (chmod does not stop root)."""
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare(1) and root to bind-mount the store read-only for one process")
    env, store = own_store(sq, tmp_path)
    before = tree(store)
    script = f'mount --bind "{store}" "{store}" && mount -o remount,bind,ro "{store}" && exec "$0" "$@"'
    proc = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script, *DBSNAP, "doctor"],
        cwd=sq.root,
        env={**sq.env, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    failed_with(proc, "store")
    status, detail, fix = report(proc)["store"]
    assert (status, detail) == ("fail", f"{store} is not writable: Read-only file system")
    assert "--store or DBSNAP_DIR" in fix
    assert tree(store) == before


def test_store_that_cannot_be_created_is_a_failure(sq: Project, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    proc = doctor(sq, "--store", str(blocker / "snapshots"))
    failed_with(proc, "store")
    detail = f"{blocker / 'snapshots'} cannot be created: {blocker} is not a folder"
    assert report(proc)["store"][:2] == ("fail", detail)


def test_no_project_is_a_failure_and_the_store_is_still_checked(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*DBSNAP, "doctor"], cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60
    )
    failed_with(proc, "project")
    checks = report(proc)
    assert checks["project"][0] == "fail" and "no Django project found" in checks["project"][1]
    assert "--project" in checks["project"][2]
    assert "settings" not in checks and "database default" not in checks
    assert checks["store"][0] == "ok" and checks["journal"][0] == "ok"


# -- warnings: exit 0 ----------------------------------------------------------------------------------------------


def test_unfinished_journal_and_stale_lock_are_warnings_and_left_alone(sq: Project, tmp_path: Path) -> None:
    env, store = own_store(sq, tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    since = "2026-01-01T00:00:00+00:00"
    owner = {"host": "vm", "pid": dead.pid, "command": "rollback base", "started": since}
    (store / ".lock").write_text(json.dumps(owner))
    journal = {"snapshot": "base", "phase": "swapping-db", "pid": dead.pid, "started": since}
    (store / ".journal.json").write_text(json.dumps(journal))
    before = tree(store)
    proc = doctor(sq, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stdout + proc.stderr
    checks = report(proc)
    assert [n for n, c in checks.items() if c[0] != "ok"] == ["lock", "journal"]
    status, detail, fix = checks["lock"]
    assert status == "warn"
    assert detail == (
        f"stale lock file of pid {dead.pid} on vm (rollback base, since {since}), "
        "which no longer holds it: the next command takes it over"
    )
    assert "dbsnap unlock" in fix
    status, detail, fix = checks["journal"]
    assert status == "warn"
    assert detail == (
        f"unfinished rollback to 'base' (pid {dead.pid}, since {since}, phase swapping-db): "
        "the next dbsnap command finishes or undoes it before anything else"
    )
    assert "dbsnap list" in fix
    assert tree(store) == before  # neither recovered nor taken over: doctor changes nothing


def test_held_lock_is_a_warning_naming_the_holder(sq: Project, tmp_path: Path) -> None:
    env, store = own_store(sq, tmp_path)
    with store_lock(store, "test holder"):
        proc = doctor(sq, "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        lock = next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "lock")
        assert lock["status"] == "warn"
        assert lock["detail"].startswith(f"held by pid {os.getpid()} on ")
        assert "(test holder, since" in lock["detail"]
        assert "--lock-timeout" in lock["fix"]
    assert not (store / ".lock").exists()


def test_disk_space_against_the_latest_snapshot(sq: Project, tmp_path: Path) -> None:
    """A snapshot's size is read from its manifest; a fake newest one stands for a huge database."""
    env, store = own_store(sq, tmp_path)
    huge = store / "huge"
    huge.mkdir()
    manifest = json.loads((store / "base" / "manifest.json").read_text())

    def claim(size: int) -> None:
        m = dict(manifest, name="huge", created_at="2999-01-01T00:00:00Z", files={"x": {"bytes": size, "sha256": ""}})
        (huge / "manifest.json").write_text(json.dumps(m))

    claim(shutil.disk_usage(store).free * 10)
    proc = doctor(sq, env=env)
    failed_with(proc, "disk space")
    status, detail, fix = report(proc)["disk space"]
    assert status == "fail" and "the latest snapshot huge is" in detail and "will not fit" in detail
    assert "dbsnap prune" in fix and "--store" in fix

    claim(int(shutil.disk_usage(store).free * 0.7))
    proc = doctor(sq, env=env)
    assert proc.returncode == 0, proc.stderr
    status, detail, fix = report(proc)["disk space"]
    assert status == "warn" and "less than twice that" in detail and fix
