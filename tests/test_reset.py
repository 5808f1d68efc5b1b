"""`dbsnap reset` on the example project: fresh migrations, a verified database, and the exact state back on
failure at every step."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Project

from dbsnap.context import Context
from dbsnap.pipelines.reset import ResetOptions, StepFailed, plan, verify
from dbsnap.settings import Settings


def fresh_files(p: Project) -> dict[str, list[str]]:
    return {
        app: sorted(x.name for x in (p.root / app / "migrations").glob("*.py") if x.name != "__init__.py")
        for app in ("accounts", "catalog", "orders")
    }


def safety_name(p: Project) -> str:
    [snap] = [s for s in json.loads(p.ok("list", "--json").stdout) if s["origin"] == "pre-reset"]
    assert snap["pinned"] is True
    return snap["name"]


def test_reset_regenerates_migrates_verifies_and_rolls_back_exactly(shop: Project) -> None:
    (shop.root / "catalog" / "migrations" / "README.txt").write_text("kept: not a Python file\n")
    before_fp, before_files = shop.fingerprint(), shop.migration_files()
    res = shop.ok("reset", "--yes")
    for i, step in enumerate(
        ["preflight", "safety snapshot", "drop database objects", "regenerate migrations", "migrate",
         "after-reset steps", "verify"], start=1
    ):  # fmt: skip
        assert f"[{i}/7] {step} ... done (" in res.stderr
    assert res.stdout.startswith("reset done in ")
    assert fresh_files(shop) == {
        "accounts": ["0001_initial.py"],
        "catalog": ["0001_initial.py"],
        "orders": ["0001_initial.py"],
    }
    assert (shop.root / "catalog" / "migrations" / "README.txt").exists()
    assert not list(shop.root.rglob("migrations/__pycache__"))
    rows = {
        tuple(r)
        for r in shop.sql("SELECT app, name FROM django_migrations WHERE app IN ('accounts', 'catalog', 'orders')")
    }
    assert rows == {("accounts", "0001_initial"), ("catalog", "0001_initial"), ("orders", "0001_initial")}
    assert shop.sql("SELECT count(*) FROM orders_orderitem") == [(0,)]
    shop.manage("migrate", "--check")  # nothing unapplied, as Django sees it
    name = safety_name(shop)
    assert name in res.stdout

    shop.ok("rollback", name, "--yes")
    assert shop.fingerprint() == before_fp
    assert shop.migration_files() == before_files


def test_dry_run_changes_nothing_and_lists_what_is_lost(shop: Project) -> None:
    before_fp, before_files = shop.fingerprint(), shop.migration_files()
    res = shop.ok("reset", "--dry-run")
    assert "catalog/migrations/0002_default_categories.py:38: RunPython (forward)" in res.stdout
    assert "LOST by this reset" in res.stdout
    assert res.stdout.rstrip().endswith("dry run: nothing was changed")
    data = json.loads(shop.ok("reset", "--dry-run", "--json").stdout)
    assert [(o["file"], o["operation"]) for o in data["lost_operations"]] == [
        ("catalog/migrations/0002_default_categories.py", "RunPython")
    ]
    assert shop.fingerprint() == before_fp and shop.migration_files() == before_files
    assert not shop.store.exists() or json.loads(shop.ok("list", "--json").stdout) == []


FAKE_MANAGE = """
import os, subprocess, sys
fail = os.environ.get("FAKE_FAIL_ON")
if fail and sys.argv[1:2] == [fail] and "--check" not in sys.argv:
    if os.environ.get("FAKE_MODE") == "noop":
        print("pretending to " + fail)
        sys.exit(0)
    print("Traceback (most recent call last):")
    print("django.db.utils.ProgrammingError: injected failure in " + fail)
    sys.exit(1)
os.execv(sys.executable, [sys.executable, "manage.py", *sys.argv[1:]])
"""


def with_fake_manage(p: Project, tmp_path: Path, fail_on: str, mode: str = "error") -> dict:
    script = tmp_path / "fake_manage.py"
    script.write_text(FAKE_MANAGE)
    return {"DBSNAP_MANAGE": f"{sys.executable} {script}", "FAKE_FAIL_ON": fail_on, "FAKE_MODE": mode}


def assert_failed_and_restored(p: Project, res, step: str, before: tuple) -> None:
    assert res.returncode == 7, res.stderr
    assert f"reset failed at {step}" in res.stderr
    assert "rolled back to the safety snapshot pre-reset-" in res.stderr
    assert "Traceback" not in res.stderr.split("hint:")[0]
    assert (p.fingerprint(), p.migration_files()) == before
    assert not list(p.root.rglob(".*.dbsnap-*"))


def test_failure_in_drop_step_restores(shop: Project) -> None:
    before = (shop.fingerprint(), shop.migration_files())
    res = shop.dbsnap("reset", "--yes", env={"DBSNAP_FAULT": "reset.after-drop-database-objects:raise"})
    assert_failed_and_restored(shop, res, "[3/7] drop database objects", before)


def test_model_that_makemigrations_cannot_serialize_restores(shop: Project) -> None:
    models = shop.root / "catalog" / "models.py"
    models.write_text(
        models.read_text().replace(
            "class Product(models.Model):",
            "class Product(models.Model):\n    tag = models.CharField(max_length=9, default=lambda: 'x')",
            1,
        )
    )
    before = (shop.fingerprint(), shop.migration_files())
    res = shop.dbsnap("reset", "--yes")
    assert_failed_and_restored(shop, res, "[4/7] regenerate migrations", before)
    assert "Cannot serialize" in res.stderr  # the tail of makemigrations' output


def test_migrate_error_restores(shop: Project, tmp_path: Path) -> None:
    before = (shop.fingerprint(), shop.migration_files())
    res = shop.dbsnap("reset", "--yes", env=with_fake_manage(shop, tmp_path, "migrate"))
    assert_failed_and_restored(shop, res, "[5/7] migrate", before)
    assert "injected failure in migrate" in res.stderr


def test_bad_fixture_in_after_steps_restores(shop: Project) -> None:
    before = (shop.fingerprint(), shop.migration_files())
    res = shop.dbsnap("reset", "--yes", "--load", "no_such_fixture")
    assert_failed_and_restored(shop, res, "[6/7] after-reset steps", before)
    assert "no_such_fixture" in res.stderr


def test_verify_mismatch_restores(shop: Project, tmp_path: Path) -> None:
    """A migrate that does nothing and says it succeeded: verify must not believe it."""
    before = (shop.fingerprint(), shop.migration_files())
    res = shop.dbsnap("reset", "--yes", env=with_fake_manage(shop, tmp_path, "migrate", mode="noop"))
    assert_failed_and_restored(shop, res, "[7/7] verify", before)
    assert "unapplied migrations" in res.stderr and "tables missing" in res.stderr


def test_no_auto_rollback_leaves_state_and_names_snapshot(sqlite_shop: Project) -> None:
    res = sqlite_shop.dbsnap("reset", "--yes", "--no-auto-rollback", "--load", "nope")
    assert res.returncode == 7
    assert "left as it is (--no-auto-rollback); roll back with: dbsnap rollback pre-reset-" in res.stderr
    assert fresh_files(sqlite_shop)["catalog"] == ["0001_initial.py"]


def test_stale_history_rows_are_caught_by_verify(shop: Project) -> None:
    """The failure hand-written reset scripts miss: history rows for migrations that no longer exist."""
    shop.sql("INSERT INTO django_migrations (app, name, applied) VALUES ('catalog', '0099_gone', CURRENT_TIMESTAMP)")
    ctx = Context(settings=Settings(project=shop.root))
    ctx.env.update(shop.env)
    with pytest.raises(StepFailed, match=r"1 django_migrations rows without a file: catalog\.0099_gone"):
        verify(ctx, plan(ctx, ResetOptions()))


def test_refuses_without_terminal_or_yes(sqlite_shop: Project) -> None:
    before = (sqlite_shop.fingerprint(), sqlite_shop.migration_files())
    res = sqlite_shop.dbsnap("reset", stdin=subprocess_devnull())
    assert res.returncode == 2 and "no terminal; pass --yes" in res.stderr
    assert (sqlite_shop.fingerprint(), sqlite_shop.migration_files()) == before
    assert not sqlite_shop.store.exists()


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_refuses_debug_false_unless_allowed(sqlite_shop: Project) -> None:
    before = (sqlite_shop.fingerprint(), sqlite_shop.migration_files())
    res = sqlite_shop.dbsnap("reset", "--yes", env={"DJANGO_DEBUG": "0"})
    assert res.returncode == 2 and "settings.DEBUG is False" in res.stderr
    assert (sqlite_shop.fingerprint(), sqlite_shop.migration_files()) == before
    sqlite_shop.ok("reset", "--yes", "--allow-production", env={"DJANGO_DEBUG": "0"})


def test_refuses_remote_host(pg_shop: Project) -> None:
    env_file = pg_shop.root / ".env"
    env_file.write_text(env_file.read_text().replace("DB_HOST=127.0.0.1", "DB_HOST=db.example.com"))
    res = pg_shop.dbsnap("reset", "--yes")
    assert res.returncode == 2 and "db.example.com, not this machine" in res.stderr


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_single_app_and_snapshot_name(sqlite_shop: Project) -> None:
    res = sqlite_shop.ok("reset", "--yes", "--app", "orders", "--snapshot-name", "before-orders")
    files = fresh_files(sqlite_shop)
    assert files["orders"] == ["0001_initial.py"]
    assert files["catalog"] == ["0001_initial.py", "0002_default_categories.py"]  # untouched
    assert "before-orders" in res.stdout
    bad = sqlite_shop.dbsnap("reset", "--yes", "--app", "nosuchapp")
    assert bad.returncode == 2 and "nosuchapp" in bad.stderr


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_app_without_migrations_gets_none(sqlite_shop: Project) -> None:
    """An installed app that never had a migrations package is left without one (its tables via syncdb)."""
    app = sqlite_shop.root / "notes"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(
        textwrap.dedent(
            """
            from django.db import models


            class Note(models.Model):
                text = models.TextField()
            """
        )
    )
    settings = sqlite_shop.root / "shopsite" / "settings.py"
    settings.write_text(settings.read_text().replace('"orders",', '"orders",\n    "notes",', 1))
    sqlite_shop.manage("migrate", "--run-syncdb", "-v0")
    sqlite_shop.ok("reset", "--yes")
    assert not (app / "migrations").exists()
    assert sqlite_shop.sql("SELECT count(*) FROM notes_note") == [(0,)]


def test_postgres_drop_removes_every_object_and_keeps_database_settings(pg_shop: Project) -> None:
    name = pg_shop.pg_name
    for stmt in (
        "CREATE VIEW v_orders AS SELECT id FROM orders_order",
        "CREATE SEQUENCE stray_seq",
        "CREATE TYPE mood AS ENUM ('sad', 'happy')",
        "CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42'",
        "CREATE SCHEMA reporting",
        "CREATE TABLE reporting.daily (d date)",
        f"ALTER DATABASE \"{name}\" SET work_mem = '5MB'",
    ):
        pg_shop.sql(stmt)
    pg_shop.ok("reset", "--yes")
    assert pg_shop.sql(
        "SELECT to_regclass('v_orders'), to_regclass('stray_seq'), to_regtype('mood'), "
        "to_regprocedure('answer()'), to_regnamespace('reporting')"
    ) == [(None, None, None, None, None)]
    assert pg_shop.sql(
        "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        f"WHERE datname = '{name}'"
    ) == [(["work_mem=5MB"],)]


def subprocess_devnull():
    import subprocess

    return subprocess.DEVNULL


def test_plan_lists_sessions_that_will_be_terminated(pg_shop: Project) -> None:
    import psycopg
    from conftest import PG

    with psycopg.connect(dbname=pg_shop.pg_name, application_name="busy-worker", **PG) as other:
        other.execute("SELECT 1")
        res = pg_shop.ok("reset", "--dry-run")
        assert "will terminate session: pid" in res.stdout and "app busy-worker" in res.stdout
