"""Reset on what real projects have: a third-party app's squashed migrations, extensions/collations/text search
the models need, apps without models, MIGRATION_MODULES, a project guard on makemigrations; and the proof that
the fresh history builds an empty database (the semantic schema comparison)."""

from __future__ import annotations

import json
import secrets
import shutil
import textwrap
from pathlib import Path

import psycopg
import pytest
from conftest import PG, REPO, Project, fresh_pg_database, pg_project, seeded, sqlite_project

from dbsnap.context import Context
from dbsnap.pipelines.fresh_history import HistoryError, prove
from dbsnap.schema import Schema, compare
from dbsnap.settings import Settings

# Each test builds and resets a project variant (5-10 s): `make test-faults` (.ci/run) runs them.
pytestmark = pytest.mark.slow

THIRDPARTY = REPO / "examples" / "thirdparty"
EXTRAS = REPO / "examples" / "shop_extras"
PREREQ = "0000_dbsnap_prerequisites"


def add_settings(p: Project, text: str) -> None:
    with open(p.root / "shopsite" / "settings.py", "a") as f:
        f.write("\n" + textwrap.dedent(text))


def with_squashapp(p: Project) -> Project:
    """The third-party-style app, importable from outside the project (as from site-packages)."""
    add_settings(p, 'INSTALLED_APPS += ["squashapp"]\n')
    p.env["PYTHONPATH"] = str(THIRDPARTY)
    return p


def with_extras(p: Project) -> Project:
    shutil.copytree(EXTRAS, p.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md", "__pycache__"))
    add_settings(p, 'INSTALLED_APPS += ["django.contrib.postgres"]\n')
    return p


def files(p: Project, *apps: str, folder: str = "migrations") -> dict[str, list[str]]:
    return {
        app: sorted(x.name for x in (p.root / app / folder).glob("*.py") if x.name != "__init__.py") for app in apps
    }


def ctx_for(p: Project) -> Context:
    ctx = Context(settings=Settings(project=p.root))
    ctx.env.update(p.env)
    return ctx


def scratch_left(p: Project) -> list:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        return c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (p.pg_name + "%scratch%",)).fetchall()


@pytest.fixture(params=["sqlite", "postgresql"])
def squash_shop(request, tmp_path: Path) -> Project:
    """The shop with the third-party app installed, migrated and seeded: its history holds the keys the squash
    replaces (some under the app label ``legacy_squash``), not the squash itself."""
    if request.param == "sqlite":
        yield seeded(with_squashapp(sqlite_project(tmp_path / "shop")))
        return
    request.getfixturevalue("pg_server")
    with fresh_pg_database() as name:
        yield seeded(with_squashapp(pg_project(tmp_path / "shop", name)))


@pytest.fixture
def extras_pg(tmp_path: Path, pg_server) -> Project:
    """shop_extras on PostgreSQL: hstore, pg_trgm, an ICU collation, a text-search dictionary and configuration."""
    with fresh_pg_database() as name:
        yield seeded(with_extras(pg_project(tmp_path / "shop", name)))


def test_third_party_squash_is_known_history_status_and_reset(squash_shop: Project) -> None:
    p = squash_shop
    rows = {tuple(r) for r in p.sql("SELECT app, name FROM django_migrations WHERE app LIKE '%squash%'")}
    assert ("legacy_squash", "0001_initial") in rows and ("squashapp", "0003_token_note") in rows
    # Django records the keys the squash replaces (whose files are gone): known history, not stale rows.
    p.ok("save", "before")
    st = p.ok("status", "--django")
    assert "in sync: the database and the migration files agree" in st.stdout, st.stdout
    before_fp, before_files = p.fingerprint(), p.migration_files()

    res = p.ok("reset", "--yes")
    assert "note:" not in res.stdout  # the scratch build proved the fresh history on both engines
    assert files(p, "accounts", "catalog", "orders") == {
        a: ["0001_initial.py"] for a in ("accounts", "catalog", "orders")
    }
    assert "in sync" in p.ok("status", "--django").stdout
    p.manage("migrate", "--check")
    p.ok("rollback", json.loads(p.ok("list", "--json").stdout)[-1]["name"], "--yes")
    assert p.fingerprint() == before_fp and p.migration_files() == before_files


def test_extensions_collation_and_text_search_are_carried(extras_pg: Project) -> None:
    p = extras_pg
    before_fp, before_files = p.fingerprint(), p.migration_files()
    plan = p.ok("reset", "--dry-run").stdout
    assert (
        "carried: hstore, pg_trgm, collation natural_sort, text search dictionary shop_simple, "
        "text search configuration shop_search" in plan
    ), plan
    assert "0002_search_extras.py:17: HStoreExtension (carried)" in plan, plan
    assert "0002_search_extras.py:19: CreateCollation (natural_sort) (carried)" in plan

    res = p.ok("reset", "--yes")
    assert f"carried into accounts/migrations/{PREREQ}.py: hstore, pg_trgm, collation natural_sort" in res.stdout
    assert "note:" not in res.stdout
    assert files(p, "accounts", "catalog", "orders") == {
        "accounts": [f"{PREREQ}.py", "0001_initial.py"],
        "catalog": ["0001_initial.py"],
        "orders": ["0001_initial.py"],
    }
    for app in ("accounts", "catalog", "orders"):
        assert f"('accounts', '{PREREQ}')" in (p.root / app / "migrations" / "0001_initial.py").read_text()
    prereq = (p.root / "accounts" / "migrations" / f"{PREREQ}.py").read_text()
    assert "HStoreExtension()" in prereq and "CreateCollation('natural_sort', locale='und-u-kn-true'" in prereq
    # What the application's queries use works; makemigrations still finds nothing to write.
    assert p.sql(
        "SELECT to_tsvector('shop_search', 'the Running')::text, ('a=>1'::hstore -> 'a'), similarity('abc', 'abd') > 0"
    ) == [("'running':2", "1", True)]
    assert p.sql("SELECT 'a10' < 'a9' COLLATE natural_sort") == [(False,)]
    p.manage("makemigrations", "--check", "--dry-run")
    assert scratch_left(p) == []

    p.ok("rollback", json.loads(p.ok("list", "--json").stdout)[-1]["name"], "--yes")
    assert p.fingerprint() == before_fp and p.migration_files() == before_files


def test_proof_fails_a_history_that_needs_what_an_empty_database_lacks(extras_pg: Project) -> None:
    """The issue's silent case: a collation the live database has but the history no longer creates."""
    p = extras_pg
    mig = p.root / "accounts" / "migrations" / "0002_search_extras.py"
    mig.write_text(
        mig.read_text().replace('CreateCollation("natural_sort", provider="icu", locale="und-u-kn-true"),', "")
    )
    ctx = ctx_for(p)
    [db] = ctx.databases()
    with pytest.raises(
        HistoryError, match=r'cannot build an empty database: .*collation "natural_sort" .*does not exist'
    ):
        prove(ctx, db)
    assert scratch_left(p) == []


@pytest.fixture
def nocreatedb_extras(tmp_path: Path, pg_server) -> Project:
    role = f"dbsnap_r_{secrets.token_hex(3)}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        c.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        with fresh_pg_database(owner=role) as name:
            yield seeded(with_extras(pg_project(tmp_path / "shop", name, role)))
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
            c.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_transaction_mode_rollback_with_collation_and_text_search(nocreatedb_extras: Project) -> None:
    p = nocreatedb_extras
    p.ok("save", "before")
    before_fp, before_files = p.fingerprint(), p.migration_files()
    p.sql("CREATE COLLATION stray_sort (provider = icu, locale = 'und')")
    p.sql("CREATE TEXT SEARCH CONFIGURATION stray_search (COPY = simple)")
    p.sql("SELECT lo_create(0)")
    res = p.ok("rollback", "before", "--yes")
    assert "[transaction]" in res.stderr
    assert p.fingerprint() == before_fp and p.migration_files() == before_files
    assert p.sql("SELECT count(*) FROM pg_collation WHERE collname = 'stray_sort'") == [(0,)]
    assert p.sql("SELECT count(*) FROM pg_largeobject_metadata") == [(0,)]
    # Reset as this role: the prerequisites are carried; no scratch database can be made, and the result says so.
    res = p.ok("reset", "--yes")
    assert "carried into accounts/migrations/0000_dbsnap_prerequisites.py" in res.stdout
    assert "note: database 'default': the role may not create databases" in res.stdout


# -- the semantic schema comparison ---------------------------------------------------------------------------

DRIFT = {
    "sqlite": [
        "ALTER TABLE orders_order ADD COLUMN extra integer NULL",
        "CREATE INDEX drift_idx ON orders_order (note)",
    ],
    "postgresql": [
        "ALTER TABLE orders_order ADD COLUMN extra integer NULL",
        "CREATE INDEX drift_idx ON orders_order (note)",
        "ALTER TABLE orders_order ALTER COLUMN note DROP NOT NULL",
    ],
}


def test_schema_comparison_explains_drift_and_ignores_names(shop: Project) -> None:
    ctx = ctx_for(shop)
    [db] = ctx.databases()
    engine = ctx.engine(db)
    expected = engine.describe_schema()
    assert compare(expected, Schema.from_dict(json.loads(json.dumps(expected.to_dict())))) == []
    if shop.pg_name:  # renaming an index changes nothing that counts
        [(index,)] = shop.sql(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'orders_order' AND indexname LIKE '%customer%'"
        )
        shop.sql(f'ALTER INDEX "{index}" RENAME TO renamed_index')
        assert compare(expected, engine.describe_schema()) == []
    for stmt in DRIFT[db.kind]:
        shop.sql(stmt)
    found = [d.describe() for d in compare(expected, engine.describe_schema())]
    kinds = {d.split(" ", 1)[0] for d in found}
    assert any(d.lower().startswith("column orders_order.extra: unexpected (integer null") for d in found), found
    assert any(d.startswith("index orders_order: unexpected (") and "(note)" in d for d in found), found
    if shop.pg_name:
        assert "column orders_order.note: expected text NOT NULL, found text NULL" in found, found
    assert kinds == {"column", "index"}


# -- apps without models, MIGRATION_MODULES, a guard on makemigrations (SQLite: the project side) ----------------

LEGACY_0001 = """
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False))],
        ),
    ]
"""

LEGACY_0002 = """
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("legacy", "0001_initial")]
    operations = [migrations.DeleteModel(name="Note")]
"""


def test_reset_with_an_app_that_has_no_models_left(sqlite_shop: Project) -> None:
    p = sqlite_shop
    app = p.root / "legacy"
    (app / "migrations").mkdir(parents=True)
    for name in ("__init__.py", "models.py", "migrations/__init__.py"):
        (app / name).write_text("")
    (app / "migrations" / "0001_initial.py").write_text(LEGACY_0001)
    (app / "migrations" / "0002_delete_note.py").write_text(LEGACY_0002)
    add_settings(p, 'INSTALLED_APPS += ["legacy"]\n')
    p.manage("migrate", "-v0")
    p.ok("reset", "--yes")
    assert files(p, "legacy") == {"legacy": []}
    assert p.sql("SELECT count(*) FROM django_migrations WHERE app = 'legacy'") == [(0,)]


def test_reset_with_migration_modules(sqlite_shop: Project) -> None:
    p = sqlite_shop
    (p.root / "catalog" / "migrations").rename(p.root / "catalog" / "db_migrations")
    add_settings(p, 'MIGRATION_MODULES = {"catalog": "catalog.db_migrations"}\n')
    before_fp = p.fingerprint()
    plan = p.ok("reset", "--dry-run").stdout
    assert "regenerate catalog/db_migrations (2 migrations deleted" in plan, plan
    p.ok("reset", "--yes")
    assert files(p, "catalog", folder="db_migrations") == {"catalog": ["0001_initial.py"]}
    assert not (p.root / "catalog" / "migrations").exists()
    p.ok("rollback", json.loads(p.ok("list", "--json").stdout)[-1]["name"], "--yes")
    assert p.fingerprint() == before_fp
    assert files(p, "catalog", folder="db_migrations") == {"catalog": ["0001_initial.py", "0002_default_categories.py"]}


GUARD = """
from django.core.management.base import CommandError
from django.core.management.commands.makemigrations import Command as Base
import os



class Command(Base):
    def handle(self, *args, **options):
        if not os.environ.get("SHOP_DEVELOPER"):
            raise CommandError("This command is available for development purposes only: set SHOP_DEVELOPER=1")
        return super().handle(*args, **options)
"""


def test_makemigrations_refused_by_the_project_is_said_in_the_preflight(sqlite_shop: Project) -> None:
    p = sqlite_shop
    (p.root / "catalog" / "management" / "commands" / "makemigrations.py").write_text(GUARD)
    before_fp, before_files = p.fingerprint(), p.migration_files()
    res = p.dbsnap("reset", "--yes")
    assert res.returncode == 7, res.stderr
    assert (
        "reset failed at [1/7] preflight: the project refuses 'manage.py makemigrations' (CommandError: This "
        "command is available for development purposes only: set SHOP_DEVELOPER=1)"
    ) in res.stderr, res.stderr
    assert "nothing was changed" in res.stderr and "Traceback" not in res.stderr
    assert p.fingerprint() == before_fp and p.migration_files() == before_files
    assert not p.store.exists() or json.loads(p.ok("list", "--json").stdout) == []  # no safety snapshot either
