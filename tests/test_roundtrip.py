"""Save, break everything, roll back: the database and the migration files come back exactly, together."""

from __future__ import annotations

import json
import os
import stat
import textwrap

import pytest
from conftest import PG, Project


def break_everything(p: Project) -> None:
    """What a developer does between save and rollback: data, a new migration, a stray table, file edits."""
    p.sql("DELETE FROM orders_orderitem WHERE id % 2 = 0")
    p.sql("UPDATE catalog_product SET price = price + 1")
    p.sql("INSERT INTO catalog_category (name, slug) VALUES ('Zzz', 'zzz')")
    models = p.root / "catalog" / "models.py"
    models.write_text(
        models.read_text()
        + textwrap.dedent(
            """

            class Review(models.Model):
                product = models.ForeignKey(Product, on_delete=models.CASCADE)
                stars = models.PositiveSmallIntegerField(default=5)
            """
        )
    )
    p.manage("makemigrations", "catalog", "-v0")
    p.manage("migrate", "-v0")
    p.sql("CREATE TABLE stray_after_snapshot (id integer)")
    (p.root / "orders" / "migrations" / "0002_order_note.py").write_text("# edited by hand\n")
    (p.root / "accounts" / "migrations" / "0001_initial.py").unlink()
    (p.root / "orders" / "migrations" / "0099_bogus.py").write_text("# new file\n")


def test_roundtrip_restores_fingerprint_and_files(shop: Project) -> None:
    before, files = shop.fingerprint(), shop.migration_files()
    out = shop.ok("save", "pre-reset", "--note", "before the mess")
    assert out.stdout.startswith("saved pre-reset: ")
    assert "ratio" in out.stdout
    break_everything(shop)
    assert shop.fingerprint() != before
    assert shop.migration_files() != files

    res = shop.ok("rollback", "pre-reset", "--yes")
    assert "rolled back to pre-reset" in res.stdout
    assert shop.fingerprint() == before
    assert shop.migration_files() == files
    # Django agrees: nothing unapplied, no changes to migrate beyond the model added after the snapshot.
    plan = shop.manage("showmigrations", "--plan").stdout
    assert "[ ]" not in plan
    # The safety snapshot holds the broken state, and rolling back to it brings that back too.
    listing = json.loads(shop.ok("list", "--json").stdout)
    safety = [s for s in listing if s["origin"] == "pre-rollback"]
    assert len(safety) == 1
    assert safety[0]["name"] in res.stdout
    shop.ok("rollback", safety[0]["name"], "--yes", "--no-safety-snapshot")
    assert shop.sql("SELECT count(*) FROM catalog_review") == [(0,)]
    assert (shop.root / "orders" / "migrations" / "0099_bogus.py").exists()


def test_store_layout_permissions_and_manifest(shop: Project) -> None:
    shop.ok("save", "first", "--pin")
    root = shop.store
    assert (root / ".gitignore").read_text() == "*\n"
    snap = root / "first"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(snap.stat().st_mode) == 0o700
    for f in snap.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    m = json.loads((snap / "manifest.json").read_text())
    assert m["format"] == "dbsnap-snapshot" and m["format_version"] == 1
    assert m["pinned"] is True and m["origin"] == "manual"
    db = m["databases"]["default"]
    assert db["engine"] == ("postgresql" if shop.pg_name else "sqlite")
    assert ["catalog", "0002_default_categories"] in db["migrations"]
    assert db["tables"]["orders_orderitem"] == shop.sql("SELECT count(*) FROM orders_orderitem")[0][0]
    paths = {f["path"] for f in m["migrations"]["files"]}
    assert paths == set(shop.migration_files())
    assert set(m["files"]) == {db["payload"], "migrations.tar.zst"}
    assert "password" not in json.dumps(m).lower()
    # No stray files anywhere in the store (staging cleaned, no debris).
    assert sorted(p.name for p in root.iterdir()) == [".dbsnap-store", ".gitignore", ".tmp", "first"]
    assert list((root / ".tmp").iterdir()) == []


def test_list_show_pin_delete(sqlite_shop: Project) -> None:
    p = sqlite_shop
    p.ok("save", "one")
    p.ok("save", "two", "--note", "second")
    names = [s["name"] for s in json.loads(p.ok("list", "--json").stdout)]
    assert names == ["one", "two"]
    assert json.loads(p.ok("show", "latest", "--json").stdout)["name"] == "two"
    assert "note:        second" in p.ok("show", "two").stdout
    p.ok("pin", "one")
    refused = p.dbsnap("delete", "one", "--yes")
    assert refused.returncode == 2 and "pinned" in refused.stderr
    p.ok("delete", "one", "--yes", "--force")
    p.ok("unpin", "two")
    p.ok("delete", "two", "--yes")
    assert p.ok("list").stdout.strip() == "no snapshots"


def test_pin_keeps_manifest_seal(sqlite_shop: Project) -> None:
    from dbsnap.store.snapshots import Store

    sqlite_shop.ok("save", "x")
    sqlite_shop.ok("pin", "x")
    store = Store(sqlite_shop.store)
    store.verify_checksums(store.get("x"))  # pinning is the one change the seal allows


def test_info_lists_project_without_password(pg_shop: Project) -> None:
    env_file = pg_shop.root / ".env"
    env_file.write_text(env_file.read_text() + "DB_PASSWORD=s3cret-do-not-print\n")
    out = pg_shop.ok("info").stdout
    assert "settings:  shopsite.settings (settings)" in out
    assert f"postgresql {pg_shop.pg_name} on {PG['host']}:{PG['port']} user postgres" in out
    for app, n in (("accounts", 1), ("catalog", 2), ("orders", 2)):
        assert f"app {app}: {app}/migrations ({n} migrations)" in out
    assert "store:" in out and "(0 snapshots)" in out
    data = json.loads(pg_shop.ok("info", "--json").stdout)
    assert "s3cret" not in json.dumps(data) and "s3cret" not in out


def test_fallback_when_settings_cannot_import(sqlite_shop: Project) -> None:
    """Settings that need a package only the container has: DB_* variables and a scan of the tree."""
    settings = sqlite_shop.root / "shopsite" / "settings.py"
    settings.write_text("import package_only_in_docker  # noqa\n" + settings.read_text())
    (sqlite_shop.root / ".env").write_text(f"DB_ENGINE=sqlite3\nDB_NAME={sqlite_shop.root / 'db.sqlite3'}\n")
    before = sqlite_shop.fingerprint()
    res = sqlite_shop.ok("save", "fb")
    assert "could not be imported" in res.stderr and "package_only_in_docker" in res.stderr
    sqlite_shop.sql("DELETE FROM orders_orderitem")
    (sqlite_shop.root / "orders" / "migrations" / "0002_order_note.py").unlink()
    sqlite_shop.ok("rollback", "fb", "--yes")
    assert sqlite_shop.fingerprint() == before
    assert (sqlite_shop.root / "orders" / "migrations" / "0002_order_note.py").exists()


def test_own_apps_only(sqlite_shop: Project, tmp_path) -> None:
    """Apps installed in a virtualenv inside the project are not the project's own."""
    info = json.loads(sqlite_shop.ok("info", "--json").stdout)
    assert [a["app"] for a in info["apps"]] == ["accounts", "catalog", "orders"]
    assert not any("django" in a["migrations"] for a in info["apps"])


def test_discovery_follows_app_labels_and_migration_modules(sqlite_shop: Project) -> None:
    """Discovery reads AppConfig labels and MIGRATION_MODULES like Django does (without django.setup())."""
    root = sqlite_shop.root
    settings = root / "shopsite" / "settings.py"
    text = settings.read_text().replace('"catalog",', '"catalog.apps.ShopCatalogConfig",')
    settings.write_text(text + '\nMIGRATION_MODULES = {"shopcat": "catalog.schema_history"}\n')
    (root / "catalog" / "apps.py").write_text(
        (root / "catalog" / "apps.py").read_text()
        + '\n\nclass ShopCatalogConfig(CatalogConfig):\n    label = "shopcat"\n'
    )
    (root / "catalog" / "migrations").rename(root / "catalog" / "schema_history")
    info = json.loads(sqlite_shop.ok("info", "--json").stdout)
    assert [(a["app"], a["migrations"], a["files"]) for a in info["apps"]] == [
        ("accounts", "accounts/migrations", 1),
        ("shopcat", "catalog/schema_history", 2),
        ("orders", "orders/migrations", 2),
    ]


def test_discovery_of_apps_inside_a_project_package(sqlite_shop: Project) -> None:
    """The cookiecutter-django layout: apps as modules of one project package (``shopapps.orders``)."""
    root = sqlite_shop.root
    (root / "shopapps").mkdir()
    (root / "shopapps" / "__init__.py").write_text("")
    (root / "orders").rename(root / "shopapps" / "orders")
    apps_py = root / "shopapps" / "orders" / "apps.py"
    apps_py.write_text(apps_py.read_text().replace('name = "orders"', 'name = "shopapps.orders"'))
    settings = root / "shopsite" / "settings.py"
    settings.write_text(settings.read_text().replace('"orders",', '"shopapps.orders",'))
    info = json.loads(sqlite_shop.ok("info", "--json").stdout)
    assert info["discovery"] == "settings"
    assert [(a["app"], a["migrations"]) for a in info["apps"]] == [
        ("accounts", "accounts/migrations"),
        ("catalog", "catalog/migrations"),
        ("orders", "shopapps/orders/migrations"),
    ]


def test_discovery_falls_back_to_django_setup(sqlite_shop: Project) -> None:
    """An app that only imports while Django loads apps makes the fast path fail: django.setup() finds it all."""
    init = sqlite_shop.root / "orders" / "__init__.py"
    init.write_text(
        init.read_text() + "\nfrom django.apps import apps\n\nif not apps.loading:\n    raise RuntimeError('outside')\n"
    )
    info = json.loads(sqlite_shop.ok("info", "--json").stdout)
    assert [a["app"] for a in info["apps"]] == ["accounts", "catalog", "orders"]
    assert info["discovery"] == "settings"  # not the scan that a failing child falls back to


@pytest.mark.parametrize("via", ["flag", "env"])
def test_store_location(sqlite_shop: Project, tmp_path, via: str) -> None:
    where = tmp_path / "elsewhere"
    if via == "flag":
        sqlite_shop.ok("--store", str(where), "save", "s")
    else:
        sqlite_shop.ok("save", "s", env={"DBSNAP_DIR": str(where)})
    assert (where / "s" / "manifest.json").is_file()
    assert not (sqlite_shop.root / "snapshots").exists()


def test_python_dash_m_and_version(sqlite_shop: Project) -> None:
    from dbsnap import __version__

    assert sqlite_shop.ok("--version").stdout.strip() == f"dbsnap, version {__version__}"
    assert os.access(sqlite_shop.root / "manage.py", os.R_OK)


def test_postgres_database_properties_survive_rollback(pg_shop: Project) -> None:
    """Owner, encoding, database-level settings, grants and comment belong to the live database: kept."""
    import secrets

    import psycopg
    from conftest import PG

    role = f"dbsnap_g_{secrets.token_hex(3)}"
    name = pg_shop.pg_name
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        c.execute(f'CREATE ROLE "{role}"')
        c.execute(f"ALTER DATABASE \"{name}\" SET work_mem = '7MB'")
        c.execute(f'ALTER DATABASE "{name}" SET search_path TO "$user", public')
        c.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{name}" TO "{role}"')
        c.execute(f"COMMENT ON DATABASE \"{name}\" IS 'shop db'")

    def props() -> tuple:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
            return c.execute(
                "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, "
                "(SELECT array_agg(a::text ORDER BY a::text) FROM unnest(d.datacl) a), "
                "shobj_description(d.oid, 'pg_database'), "
                "(SELECT setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0) "
                "FROM pg_database d WHERE datname = %s",
                (name,),
            ).fetchone()

    try:
        before = props()
        pg_shop.ok("save", "s")
        pg_shop.sql("DELETE FROM orders_orderitem")
        pg_shop.ok("rollback", "s", "--yes", "--no-safety-snapshot")
        assert props() == before
        assert before[6] == ["work_mem=7MB", 'search_path="$user", public']
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
            c.execute(f'REVOKE ALL ON DATABASE "{name}" FROM "{role}"')
            c.execute(f'DROP ROLE "{role}"')


def test_sqlite_save_while_the_application_writes(sqlite_shop: Project) -> None:
    """The backup API gives a consistent copy even while another connection keeps writing."""
    import sqlite3
    import threading

    db = sqlite_shop.root / "db.sqlite3"
    stop = threading.Event()

    def writer() -> None:
        c = sqlite3.connect(db, timeout=30)
        i = 0
        while not stop.is_set():
            c.execute("INSERT INTO catalog_category (name, slug) VALUES (?, ?)", (f"w{i}", f"w{i}"))
            c.commit()
            i += 1
        c.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        sqlite_shop.ok("save", "busy")
    finally:
        stop.set()
        t.join()
    m = json.loads((sqlite_shop.store / "busy" / "manifest.json").read_text())
    counted = m["databases"]["default"]["tables"]["catalog_category"]
    sqlite_shop.ok("rollback", "busy", "--yes", "--no-safety-snapshot")
    assert sqlite_shop.sql("PRAGMA integrity_check") == [("ok",)]
    assert sqlite_shop.sql("SELECT count(*) FROM catalog_category") == [(counted,)]


def test_rollback_names_migration_folders_the_snapshot_does_not_hold(sqlite_shop: Project) -> None:
    """An app added after the snapshot keeps its files; the plan says so instead of silently ignoring it."""
    sqlite_shop.ok("save", "before-notes")
    app = sqlite_shop.root / "notes"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "models.py").write_text(
        "from django.db import models\n\n\nclass Note(models.Model):\n    text = models.TextField()\n"
    )
    settings = sqlite_shop.root / "shopsite" / "settings.py"
    settings.write_text(settings.read_text().replace('"orders",', '"orders",\n    "notes",', 1))
    sqlite_shop.manage("makemigrations", "notes", "-v0")
    sqlite_shop.manage("migrate", "-v0")
    res = sqlite_shop.ok("rollback", "before-notes", "--yes")
    assert "left as it is (not in the snapshot): notes/migrations" in res.stderr
    assert (app / "migrations" / "0001_initial.py").exists()
    assert "[ ] 0001_initial" in sqlite_shop.manage("showmigrations", "notes").stdout
