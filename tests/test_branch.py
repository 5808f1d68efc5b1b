"""The database follows the branch: a real git repository holding the example project, two branches with
different migrations (feature/b adds a model and a data migration), switched by ``git checkout`` through the
installed post-checkout hook, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from conftest import PG, Project, set_env_file

GIT_ID = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}

TAG_MODEL = '''

class Tag(models.Model):
    """A tag (branch feature/b only)."""

    name = models.CharField(max_length=50, unique=True)
'''

TAG_MIGRATION = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_default_categories")]
    operations = [
        migrations.CreateModel(
            name="Tag",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=50, unique=True)),
            ],
        ),
    ]
"""

TAG_DATA = """from django.db import migrations


def forward(apps, schema_editor):
    Tag = apps.get_model("catalog", "Tag")
    for name in ("new", "sale"):
        Tag.objects.using(schema_editor.connection.alias).get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_tag")]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
"""


def git(p: Project, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**p.env, **GIT_ID, "HOME": str(p.root.parent), **(env or {})}
    proc = subprocess.run(["git", *args], cwd=p.root, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def checkout(p: Project, *args: str) -> list[str]:
    """``git checkout args``; the lines the hook printed."""
    proc = git(p, "checkout", *args)
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("dbsnap:")]


def make_repo(p: Project, install: bool = True) -> Project:
    """``main``: the example as it is; ``feature/b``: a Tag model, its migration and a data migration."""
    (p.root / ".gitignore").write_text("snapshots/\ndb.sqlite3*\n.env\n__pycache__/\n")
    git(p, "init", "-q", "-b", "main")
    git(p, "add", "-A")
    git(p, "commit", "-qm", "the shop")
    git(p, "checkout", "-q", "-b", "feature/b")
    with open(p.root / "catalog" / "models.py", "a") as f:
        f.write(TAG_MODEL)
    (p.root / "catalog" / "migrations" / "0003_tag.py").write_text(TAG_MIGRATION)
    (p.root / "catalog" / "migrations" / "0004_default_tags.py").write_text(TAG_DATA)
    git(p, "add", "-A")
    git(p, "commit", "-qm", "tags")
    git(p, "checkout", "-q", "main")
    if install:
        p.ok("branch", "install")
    return p


def tables(p: Project) -> set[str]:
    if p.pg_name:
        return {r[0] for r in p.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    return {r[0] for r in p.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}


def add_category(p: Project, name: str) -> None:
    p.sql(f"INSERT INTO catalog_category (name, slug) VALUES ('{name}', '{name}')")


def categories(p: Project) -> set[str]:
    return {r[0] for r in p.sql("SELECT name FROM catalog_category")}


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_the_database_follows_the_branch(pg_shop: Project) -> None:
    follows_the_branch(pg_shop, rounds=1)


@pytest.mark.slow
def test_the_database_follows_the_branch_sqlite_a_few_times(sqlite_shop: Project) -> None:
    follows_the_branch(sqlite_shop, rounds=3)


@pytest.mark.slow
def test_the_database_follows_the_branch_postgresql_a_few_times(pg_shop: Project) -> None:
    follows_the_branch(pg_shop, rounds=3)


def follows_the_branch(p: Project, rounds: int) -> None:
    """migrate on feature/b, switch to main (main's schema and rows, migrate --check clean), add rows on main,
    switch back (feature/b's rows and schema), ``rounds`` more times."""
    make_repo(p)
    main_tables = tables(p)
    lines = checkout(p, "feature/b")
    assert len(lines) == 1 and "feature/b had no saved database state" in lines[0], lines
    assert "2 migration(s) to apply" in lines[0]
    p.manage("migrate", "-v0")
    b_tables = tables(p)
    assert "catalog_tag" in b_tables
    assert {r[0] for r in p.sql("SELECT name FROM catalog_tag")} == {"new", "sale"}
    b_print = p.fingerprint()

    lines = checkout(p, "main")
    assert len(lines) == 1 and "the database is now main's (kept feature/b's as branch-feature-b-" in lines[0]
    assert tables(p) == main_tables
    assert p.manage("migrate", "--check", check=False).returncode == 0
    add_category(p, "only-on-main")
    main_print = p.fingerprint()

    for _ in range(rounds):
        assert "now feature/b's" in checkout(p, "feature/b")[0]
        assert p.fingerprint() == b_print
        assert "only-on-main" not in categories(p)
        assert p.manage("migrate", "--check", check=False).returncode == 0
        assert "now main's" in checkout(p, "main")[0]
        assert p.fingerprint() == main_print

    listed = p.ok("list").stdout
    assert "branch-feature-b-" in listed and "origin" not in listed.splitlines()[1]
    status = p.ok("branch", "status").stdout
    assert "the database is main's" in status
    assert "feature/b " in status and "match the branch" in status


def test_a_file_checkout_and_a_detached_head_leave_the_database_alone(sqlite_shop: Project) -> None:
    p = make_repo(sqlite_shop)
    before = p.fingerprint()
    assert checkout(p, "feature/b", "--", "catalog/models.py") == []  # a file checkout
    git(p, "checkout", "-q", "main", "--", "catalog/models.py")
    assert checkout(p, "--detach", "feature/b") == ["dbsnap: detached HEAD: the database is left as it is"]
    assert p.fingerprint() == before
    assert not (p.store / "branch-main").exists()


@pytest.mark.slow
def test_checkout_b_marks_the_new_branch_and_keeps_the_old_state(sqlite_shop: Project) -> None:
    p = make_repo(sqlite_shop)
    lines = checkout(p, "-b", "feature/c")
    assert len(lines) == 1 and "feature/c had no saved database state: the database stays as it is" in lines[0]
    add_category(p, "on-c")
    assert "now main's" in checkout(p, "main")[0]
    assert "on-c" not in categories(p)
    assert "now feature/c's" in checkout(p, "feature/c")[0]
    assert "on-c" in categories(p)


def test_a_switch_ends_an_open_session_and_says_so(pg_shop: Project) -> None:
    p = make_repo(pg_shop)
    checkout(p, "feature/b")
    with psycopg.connect(dbname=p.pg_name, autocommit=True, **PG) as held:
        held.execute("SELECT 1")
        lines = checkout(p, "main")
        assert "now main's" in lines[0] and "ended 1 session(s)" in lines[0], lines
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
    assert "catalog_tag" not in tables(p)


@pytest.mark.slow
def test_a_session_that_cannot_be_ended_leaves_the_database_as_it_was(pg_shop: Project) -> None:
    p = pg_shop
    runner = f"{p.pg_name}_r"
    admin = psycopg.connect(dbname="postgres", autocommit=True, **PG)
    admin.execute(f'CREATE ROLE "{runner}" LOGIN CREATEDB')
    admin.execute(f'ALTER DATABASE "{p.pg_name}" OWNER TO "{runner}"')
    with psycopg.connect(dbname=p.pg_name, autocommit=True, **PG) as c:
        c.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{runner}"')
    try:
        set_env_file(p, DB_USER=runner, DBSNAP_TERMINATE_TIMEOUT="1")
        make_repo(p)
        first = checkout(p, "feature/b")
        assert "feature/b had no saved database state" in first[0], first
        before = p.fingerprint()
        # a superuser's session: a role that is not one may not end it
        with psycopg.connect(dbname=p.pg_name, autocommit=True, **PG) as held:
            held.execute("SELECT 1")
            lines = checkout(p, "main")
            assert len(lines) == 1 and lines[0].startswith("dbsnap: the database was not switched: "), lines
            assert "could not be ended within 1 s (terminate-timeout): pid" in lines[0]
            assert lines[0].endswith("run 'dbsnap branch switch main'")
            held.execute("SELECT 1")  # still there
        assert p.fingerprint() == before
        assert not (p.store / ".journal.json").exists()
        assert "the database is feature/b's" in p.ok("branch", "status").stdout
    finally:
        like = p.pg_name.replace("_", "\\_") + "%"
        for (name,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)).fetchall():
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # before the role that owns them
        admin.execute(f'DROP ROLE IF EXISTS "{runner}"')
        admin.close()


@pytest.mark.sweep
@pytest.mark.parametrize(
    ("point", "live"),
    [
        ("branch.mid-switch", "feature/b"),
        ("branch.after-database", "main"),
        ("branch.after-commit", "main"),
    ],
)
def test_a_kill_during_a_switch_leaves_one_state_live(shop: Project, point: str, live: str) -> None:
    p = make_repo(shop, install=False)
    git(p, "checkout", "-q", "feature/b")
    assert "feature/b had no saved database state" in p.ok("branch", "switch", "feature/b").stdout
    p.manage("migrate", "-v0")
    b_print = p.fingerprint()
    git(p, "checkout", "-q", "main")
    killed = p.dbsnap("branch", "switch", "main", env={"DBSNAP_FAULT": point})
    assert killed.returncode == -9
    recovered = p.ok("list")
    assert "an interrupted switch of the database from feature/b to main was found" in recovered.stderr
    assert f"the database holds {live}'s state" in recovered.stderr
    assert ("catalog_tag" in tables(p)) == (live == "feature/b")
    if live == "feature/b":
        assert p.fingerprint() == b_print
    status = p.ok("branch", "status").stdout
    assert f"the database is {live}'s" in status
    other = "main" if live == "feature/b" else "feature/b"
    assert f"\n{other} " in status
    # and it goes on working: the next switch finds every state where the store says it is
    assert p.ok("branch", "switch", other).returncode == 0
    assert ("catalog_tag" in tables(p)) == (other == "feature/b")


@pytest.mark.sweep
@pytest.mark.parametrize("point", ["branch.after-database", "branch.before-finish"])
def test_a_kill_while_keeping_by_a_copy(shop: Project, point: str) -> None:
    p = make_repo(shop, install=False)
    before = p.fingerprint()
    git(p, "checkout", "-q", "feature/b")
    killed = p.dbsnap("branch", "switch", "feature/b", env={"DBSNAP_FAULT": point})
    assert killed.returncode == -9
    done = point == "branch.before-finish"
    recovered = p.ok("branch", "status")
    assert ("finished" if done else "undone") in recovered.stderr
    assert f"the database is {'feature/b' if done else '(not marked)'}'s" in recovered.stdout
    assert ("\nmain " in recovered.stdout) == done
    assert p.fingerprint() == before
    assert [x.name for x in p.store.iterdir() if x.name.startswith(".branch-new")] == []


@pytest.mark.slow
def test_a_branch_with_no_saved_state(sqlite_shop: Project) -> None:
    p = make_repo(sqlite_shop)
    git(p, "branch", "feature/empty")  # made without checking it out: no state
    lines = checkout(p, "feature/empty")
    assert "feature/empty had no saved database state: the database stays as it is, now feature/empty's" in lines[0]
    assert "(main's kept as branch-main, by a copy)" in lines[0]
    assert p.manage("migrate", "--check", check=False).returncode == 0


def test_a_foreign_hook_is_refused_chained_and_put_back(sqlite_shop: Project) -> None:
    p = make_repo(sqlite_shop, install=False)
    hook = p.root / ".git" / "hooks" / "post-checkout"
    mark = p.root / "foreign-ran"
    hook.write_text(f'#!/bin/sh\necho "$3" >> {mark}\nexit 3\n')
    hook.chmod(0o755)
    refused = p.dbsnap("branch", "install")
    assert refused.returncode == 2
    assert "is not dbsnap's; nothing was changed" in refused.stderr and "--chain" in refused.stderr
    assert "dbsnap" not in hook.read_text()
    assert "runs " in p.ok("branch", "install", "--chain").stdout
    proc = git(p, "checkout", "feature/b", check=False)
    assert proc.returncode == 1  # git's answer to the foreign hook's failure, as without dbsnap
    assert mark.read_text() == "1\n"
    assert any("feature/b had no saved database state" in ln for ln in proc.stderr.splitlines())
    assert "hook: installed" in p.ok("branch", "status").stdout
    p.ok("branch", "uninstall")
    assert hook.read_text() == f'#!/bin/sh\necho "$3" >> {mark}\nexit 3\n'
    assert not (hook.parent / "post-checkout.dbsnap-chained").exists()


@pytest.mark.slow
def test_core_hooks_path_and_a_second_worktree_with_the_same_database(sqlite_shop: Project, tmp_path: Path) -> None:
    p = make_repo(sqlite_shop, install=False)
    git(p, "config", "core.hooksPath", ".githooks")
    assert str(p.root / ".githooks" / "post-checkout") in p.ok("branch", "install").stdout
    checkout(p, "feature/b")
    other = tmp_path / "other"
    # a second worktree whose settings point at the same SQLite file as the first
    env = {**p.env, "SQLITE_PATH": str(p.root / "db.sqlite3")}
    proc = subprocess.run(
        ["git", "worktree", "add", "-q", str(other), "-b", "feature/w", "main"],
        cwd=p.root,
        env={**env, **GIT_ID},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("dbsnap:")]
    assert len(line) == 1 and "is also the one of worktree" in line[0] and str(p.root) in line[0], line
    assert "now feature/b's" not in line[0]
    assert p.ok("branch", "status").stdout.count("the database is feature/b's") == 1


@pytest.mark.slow
def test_branch_retention_keeps_the_recent_ones(sqlite_shop: Project) -> None:
    p = make_repo(sqlite_shop)
    for name in ("c1", "c2", "c3"):
        checkout(p, "-b", name)
    checkout(p, "main")  # states: main?, c1, c2, c3 (main is live)
    states = [ln.split()[0] for ln in p.ok("branch", "status").stdout.splitlines()[3:]]
    assert states == ["c1", "c2", "c3"], states
    dry = p.ok("branch", "prune", "--keep-branches", "1", "--dry-run").stdout
    assert "would remove branch-c1: beyond keep-branches 1" in dry and "would remove branch-c2" in dry
    git(p, "branch", "-D", "c3")
    assert p.ok("branch", "prune", "--grace", "1h").stdout == "no branch state to remove\n"
    removed = p.ok("branch", "prune", "--keep-branches", "0", "--grace", "1h").stdout
    assert "removed branch-c1" in removed and "removed branch-c2" in removed and "c3" not in removed
    p.ok("save", "s1")
    pruned = p.ok("prune", "--keep-last", "1", "--yes")
    assert "branch-c3" not in pruned.stdout
    assert (p.store / "branch-c3").is_dir()


@pytest.mark.slow
def test_branch_switch_by_hand_and_the_one_line_on_error(sqlite_shop: Project) -> None:
    p = make_repo(sqlite_shop)
    checkout(p, "feature/b")
    p.manage("migrate", "-v0")
    (p.store / "branch-main" / "db-default.sqlite3").unlink()  # main's state damaged
    lines = checkout(p, "main")
    assert len(lines) == 1 and "its file db-default.sqlite3 is missing" in lines[0]
    assert lines[0].endswith("run 'dbsnap branch switch main'")
    assert "catalog_tag" in tables(p)  # left as it was
    res = p.dbsnap("branch", "switch", "main")
    assert res.returncode == 6 and "is missing" in res.stderr


@pytest.mark.slow
def test_the_hook_is_bounded_and_undoes_what_it_began(sqlite_shop: Project) -> None:
    p = make_repo(sqlite_shop)
    checkout(p, "feature/b")
    p.manage("migrate", "-v0")
    before = p.fingerprint()
    slow = {"DBSNAP_FAULT": "branch.mid-switch:sleep", "DBSNAP_FAULT_SECONDS": "60", "DBSNAP_BRANCH_TIMEOUT": "2"}
    started = time.monotonic()
    proc = git(p, "checkout", "main", env=slow)
    assert time.monotonic() - started < 15
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("dbsnap:")]
    assert lines == [
        "dbsnap: the database was not switched: it took longer than 2 s (branch-timeout); "
        "run 'dbsnap branch switch main'"
    ], lines
    assert p.fingerprint() == before
    assert not (p.store / ".journal.json").exists()
    assert "now main's" in p.ok("branch", "switch", "main").stdout
    assert "catalog_tag" not in tables(p)
