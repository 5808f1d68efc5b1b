"""dbsnap on the host, PostgreSQL and Django in docker compose services, against a real container engine.

Run by ``make test-docker`` (tests/docker/setup.sh installs and starts the engine and builds the images first);
marked ``docker`` and left out of ``make test`` / ``make test-faults``. The compose example (tests/docker/project)
publishes no PostgreSQL port: everything dbsnap does reaches the database through the compose services.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import EXAMPLE, REPO, Project, child_env

pytestmark = pytest.mark.docker

HERE = REPO / "tests" / "docker"
# Debian's docker client first: /usr/local/bin may hold another one (setup.sh does the same).
PATH = "/usr/bin:/usr/sbin:" + os.environ.get("PATH", "")

FINGERPRINT_SQL = r"""
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
  SELECT 'col ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable AS x
  FROM information_schema.columns WHERE table_schema = 'public'
  UNION ALL
  SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'idx ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
) s
"""


def docker_ready() -> None:
    """The engine must answer: a failure here is the stage failing loudly, never a skip."""
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, env={**os.environ, "PATH": PATH})
    assert proc.returncode == 0, f"no container engine answers (run tests/docker/setup.sh up): {proc.stderr[-400:]}"


class ComposeProject(Project):
    """A copy of examples/shop with the compose example beside it, up and migrated, with a random password."""

    def __init__(self, root: Path, command: list[str]) -> None:
        super().__init__(root, child_env({"PATH": PATH}))
        self.command = command
        self.secret = "pw-" + secrets.token_hex(12)
        self.env.pop("COMPOSE_PROJECT_NAME", None)

    def compose(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*self.command, *args], cwd=self.root, env=self.env, input=input, capture_output=True, timeout=300
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout!r}\n{proc.stderr!r}")
        return proc

    def psql(self, query: str) -> str:
        return self.compose("exec", "-T", "db", "psql", "-U", "postgres", "-d", "app", "-XAtc", query).stdout.decode()

    def manage(self, *args: str) -> str:
        return self.compose("exec", "-T", "web", "python", "manage.py", *args).stdout.decode()

    def dbsnap(self, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dbsnap", *args],
            cwd=self.root,
            env={**self.env, "PYTHONPATH": str(REPO), **(env or {})},
            capture_output=True,
            text=True,
            timeout=600,
            **kw,
        )

    def fingerprint(self) -> dict:
        """Schema, every table's rows (as text, sorted) and the applied migrations: what a user compares."""
        tables = self.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
        rows = {
            t: self.psql(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM \"{t}\" t")
            for t in tables
        }
        return {"schema": self.psql(FINGERPRINT_SQL), "rows": rows, "files": self.migration_files()}


def _make(tmp_path: Path, command: list[str]) -> ComposeProject:
    docker_ready()
    # The folder's name is the compose project's name: unique per test, never another helper's.
    root = tmp_path / f"dbsnapt{os.getpid()}{secrets.token_hex(3)}"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", ".env"))
    p = ComposeProject(root, command)
    text = (HERE / "project" / "compose.yaml").read_text().replace("@SECRET@", p.secret).replace("@DBSNAP@", str(REPO))
    (root / "compose.yaml").write_text(text)
    shutil.copy(HERE / "project" / "pyproject.toml", root / "pyproject.toml")
    # v1 has no --wait (it prints its usage and exits 0): its depends_on waits for db's health check instead.
    p.compose("up", "-d", *(["--wait"] if command[-1] == "compose" else []))
    return p


@contextlib.contextmanager
def compose_project(tmp_path: Path, command: list[str]):
    p = _make(tmp_path, command)
    try:
        p.manage("migrate", "-v", "0")
        p.manage("seed")
        yield p
    finally:
        p.compose("down", "-v", "--remove-orphans", "-t", "2", check=False)


@pytest.fixture
def cp(tmp_path: Path):
    with compose_project(tmp_path, ["docker", "compose"]) as p:
        yield p


class ArgvWatch:
    """Polls every process's argv on the host (containers' processes included: same kernel) for a secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.seen: list[str] = []
        self.polls = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if self.secret in argv:
                        self.seen.append(argv.replace(b"\0", b" ").decode(errors="replace"))
            self.polls += 1
            time.sleep(0.02)

    def __enter__(self) -> ArgvWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_save_reset_rollback_round_trip_on_compose_project(cp: ComposeProject) -> None:
    info = json.loads(cp.ok("info", "--json").stdout)["compose"]
    assert (info["db"], info["web"], info["web_workdir"]) == ("db", "web", "/app")
    assert info["db_address"].count(".") == 3  # the db container's address on the compose network
    # The reset guard counts that address (a bridge of this machine) as local, as it does the service name.
    from dbsnap.pipelines.reset import is_local_host

    assert is_local_host(info["db_address"]) and is_local_host("db") and not is_local_host("10.255.255.1")
    text = cp.ok("info").stdout
    assert "compose:   pg_dump/pg_restore/psql in service 'db', dbsnap connects to 1" in text, text
    before = cp.fingerprint()
    with ArgvWatch(cp.secret) as watch:
        cp.ok("save", "before")
        reset = cp.dbsnap("reset", "--yes", "--snapshot-name", "pre-reset")
        assert reset.returncode == 0, reset.stdout + reset.stderr
        after_reset = cp.fingerprint()
        assert after_reset["files"] != before["files"]  # regenerated: one 0001_initial per app
        assert cp.manage("showmigrations", "--plan").count("[X]") > 0
        cp.ok("rollback", "pre-reset", "--yes")
        assert cp.fingerprint() == before
        cp.ok("verify", "--deep", "before")
        cp.ok("status")
        cp.ok("prune", "--keep-last", "5")
    assert watch.polls > 20
    assert watch.seen == [], f"the password was in argv: {watch.seen[:3]}"
    # Streams only: no copy of a dump was left (or written) inside the db container's file system.
    assert cp.compose("exec", "-T", "db", "sh", "-c", "find / -xdev -name '*.dump*' 2>/dev/null").stdout == b""


def test_kill_9_during_rollback_is_recovered_by_next_command(cp: ComposeProject) -> None:
    cp.ok("save", "seeded")
    seeded = cp.fingerprint()
    cp.psql("DELETE FROM orders_orderitem; CREATE TABLE later (id int)")
    (cp.root / "orders" / "migrations" / "0003_later.py").write_text("# added after the snapshot\n")
    changed = cp.fingerprint()
    killed = cp.dbsnap("rollback", "seeded", "--yes", env={"DBSNAP_FAULT": "rollback.after-db-swap"})
    assert killed.returncode == -9, killed.stderr
    cp.ok("list")  # the next command finishes or undoes the rollback, whichever the journal says
    now = cp.fingerprint()
    assert now in (seeded, changed)
    cp.ok("rollback", "seeded", "--yes")
    assert cp.fingerprint() == seeded


def test_clear_errors_exit_5_and_nothing_changed(cp: ComposeProject) -> None:
    before = cp.fingerprint()
    down = cp.dbsnap("save", "x", env={"DOCKER_HOST": f"unix://{cp.root}/no-engine.sock"})
    assert down.returncode == 5, down.stderr
    assert "the container engine is not running" in down.stderr and len(down.stderr.splitlines()) <= 2, down.stderr
    bad = cp.dbsnap("save", "x", env={"DBSNAP_COMPOSE_DB": "nosuch"})
    assert bad.returncode == 5, bad.stderr
    assert "no such service" in bad.stderr and "Traceback" not in bad.stderr
    missing = cp.dbsnap("save", "x", env={"DBSNAP_COMPOSE_FILE": "nope.yaml"})
    assert missing.returncode == 5 and "compose file not found" in missing.stderr, missing.stderr
    cp.compose("stop", "-t", "2", "db")
    stopped = cp.dbsnap("save", "x")
    assert stopped.returncode == 5 and "'db' is not running" in stopped.stderr, stopped.stderr
    cp.compose("start", "db")
    cp.compose("up", "-d", "--wait")
    failing = cp.dbsnap("save", "x", env={"DBSNAP_PG_DUMP": "docker compose exec -T db false"})
    assert failing.returncode == 5 and "pg_dump" in failing.stderr, failing.stderr
    assert not (cp.store / "x").exists() and cp.fingerprint() == before
    # doctor on the host checks the tools where they run: inside the db service.
    doctor = cp.ok("doctor").stdout
    assert "pg_dump" in doctor and "fail " not in doctor, doctor
    # Not configured: info shows the compose file it found and the line to add, and uses none of it.
    (cp.root / "pyproject.toml").write_text("")
    info = cp.dbsnap("info").stdout + cp.dbsnap("info").stderr
    want = (
        "compose:   compose.yaml found (services: db, web), not used; "
        'to run the tools in it: [tool.dbsnap] compose = { db = "db", web = "web" }'
    )
    assert want in info, info


def test_compose_v1_round_trip(tmp_path: Path) -> None:
    with compose_project(tmp_path, ["docker-compose"]) as p:
        before = p.fingerprint()
        env = {"DBSNAP_COMPOSE_COMMAND": "docker-compose"}
        p.ok("save", "one", env=env)
        p.psql("DELETE FROM orders_orderitem")
        p.ok("rollback", "one", "--yes", env=env)
        assert p.fingerprint() == before


def test_dbsnap_inside_web_container_is_a_plain_local_run(cp: ComposeProject) -> None:
    before = cp.fingerprint()
    run = ["exec", "-T", "web", "python", "-m", "dbsnap"]
    # The same pyproject.toml (bind-mounted) says compose = {...}: inside a container dbsnap ignores it.
    cp.compose(*run, "save", "inside")
    cp.psql("DELETE FROM orders_orderitem")
    cp.compose(*run, "rollback", "inside", "--yes")
    assert cp.fingerprint() == before
    # doctor names the package when the image's client pg_dump is older than the server: here the web image's
    # own client is moved away and an old one stands on PATH, as in an image built with an older distribution's.
    old = "#!/bin/sh\necho 'pg_dump (PostgreSQL) 13.14'\n"
    cp.compose(
        "exec",
        "-T",
        "web",
        "sh",
        "-c",
        "mv /usr/lib/postgresql /usr/lib/postgresql.off && cat > /usr/local/bin/pg_dump && chmod 755 "
        "/usr/local/bin/pg_dump",
        input=old.encode(),
    )
    doctor = cp.compose(*run, "doctor", check=False)
    out = doctor.stdout.decode() + doctor.stderr.decode()
    assert doctor.returncode != 0, out
    line = next(ln for ln in out.splitlines() if ln.startswith("fail  pg_dump"))
    assert "13.14 is older than the PostgreSQL server (15)" in line, out
    assert "fix: install postgresql-client-15" in out, out
