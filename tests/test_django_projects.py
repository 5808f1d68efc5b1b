"""Django projects as they really are (issue 17): a cookiecutter-shaped project (config/settings, django-environ and
DATABASE_URL, MIGRATION_MODULES, a custom user model), the settings Django sees winning over dbsnap's reading of
.env, DATABASE_URL read by dj-database-url, and settings.py ``DBSNAP``."""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from conftest import COOKIE_FOLDERS, PG, Project, cookie_project, fresh_pg_database, sqlite_project, tree

SITES = "cookiesite/contrib/sites/migrations"
NOTES = "cookiesite/notes/db_migrations"

SEED = (
    "from django.contrib.auth import get_user_model; from django.contrib.sites.models import Site; "
    "from cookiesite.notes.models import Note; "
    "u = get_user_model().objects.create(username='ada', name='Ada'); "
    "[Note.objects.create(author=u, site=Site.objects.get(), text=f'note {i}') for i in range(5)]"
)


def folders(p: Project) -> dict[str, dict[str, str]]:
    """Every file of the example's three migration folders, with its hash (no bytecode)."""
    return {f: {k: v for k, v in tree(p.root / f).items() if "__pycache__" not in k} for f in COOKIE_FOLDERS}


def django_says(p: Project, expr: str) -> str:
    """What ``manage.py shell`` prints for ``expr``: what the application itself sees."""
    return p.manage("shell", "-v", "0", "-c", f"print({expr})").stdout.strip()


def cookie_cycle(p: Project, thorough: bool) -> None:
    """save / status / rollback / reset / status on the cookiecutter-shaped project, as a user would run them;
    ``thorough`` adds the reset's plan as text and a rollback to the reset's safety snapshot."""
    p.manage("migrate", "-v0")
    p.manage("shell", "-v", "0", "-c", SEED)
    info = json.loads(p.ok("info", "--json").stdout)
    assert [(a["app"], a["migrations"], a["owned"]) for a in info["apps"]] == [
        ("sites", SITES, False),
        ("users", "cookiesite/users/migrations", True),
        ("notes", NOTES, True),
    ]
    assert info["settings_module"] == "config.settings.local" and info["differences"] == []
    before = (p.fingerprint(), folders(p))
    p.ok("save", "cc1")

    # The case: the sites migration deleted (git rm), rows deleted; status sees it, rollback restores it.
    (p.root / SITES / "0004_alter_options_ordering_domain.py").unlink()
    p.sql("DELETE FROM notes_note")
    status = json.loads(p.dbsnap("status", "--json").stdout)
    assert status["files"]["removed"] == [f"{SITES}/0004_alter_options_ordering_domain.py"]
    assert ["sites", "0004_alter_options_ordering_domain"] in status["databases"]["default"]["stale"]
    assert status["in_sync"] is False
    p.ok("rollback", "cc1", "--yes")
    assert (p.fingerprint(), folders(p)) == before
    assert json.loads(p.ok("status", "--json").stdout)["in_sync"] is True

    # Reset: the project's own apps regenerated into the folders Django uses; sites kept as it is, and said why.
    if thorough:
        text = p.ok("reset", "--dry-run").stdout
        assert f"keep {SITES} as it is" in text and "regenerating would drop the project's edits" in text
    started = time.time()
    res = json.loads(p.ok("reset", "--yes", "--json").stdout)
    assert [k["migrations"] for k in res["kept"]] == [SITES]
    assert [a["migrations"] for a in res["apps"]] == ["cookiesite/users/migrations", NOTES]
    after = folders(p)
    assert after[SITES] == before[1][SITES]
    assert sorted(after[NOTES]) == sorted(before[1][NOTES])  # makemigrations writes the same two files again...
    fresh = [f for f in (p.root / NOTES).glob("0*.py")] + [p.root / "cookiesite/users/migrations/0001_initial.py"]
    assert all(f.stat().st_mtime >= started - 1 for f in fresh)  # ...into the folder Django uses, written now
    assert not (p.root / "cookiesite" / "notes" / "migrations").exists()
    assert p.sql("SELECT domain, name FROM django_site") == [("example.com", "cookiesite")]  # sites' own RunPython
    assert p.sql("SELECT count(*) FROM notes_note") == [(0,)]
    assert json.loads(p.ok("status", "--json").stdout)["in_sync"] is True
    if thorough:
        # The reset's safety snapshot holds the moved folders too: rolling back to it brings all of it back.
        p.ok("rollback", res["safety_snapshot"], "--yes")
        assert (p.fingerprint(), folders(p)) == before


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_cookiecutter_project_sqlite(tmp_path) -> None:
    cookie_cycle(cookie_project(tmp_path / "cookiesite"), thorough=False)


@pytest.mark.slow
def test_cookiecutter_project_postgresql(tmp_path, pg_server) -> None:
    with fresh_pg_database() as name:
        cookie_cycle(cookie_project(tmp_path / "cookiesite", name), thorough=True)


def test_migration_modules_dbsnap_leaves_alone_are_listed_with_the_reason(tmp_path) -> None:
    p = sqlite_project(tmp_path / "shop")
    with open(p.root / "shopsite" / "settings.py", "a") as f:
        f.write(
            "\nMIGRATION_MODULES = {'auth': None, 'contenttypes': 'django.contrib.contenttypes.migrations',"
            " 'orders': 'orders.gone_migrations'}\n"
        )
    info = json.loads(p.ok("info", "--json").stdout)
    assert [a["app"] for a in info["apps"]] == ["accounts", "catalog"]
    reasons = {n["app"]: n["reason"] for n in info["not_managed"]}
    assert reasons["auth"] == "migrations disabled (MIGRATION_MODULES maps it to None)"
    assert (
        reasons["contenttypes"].startswith("in installed packages (")
        and "never writes there" in reasons["contenttypes"]
    )
    assert reasons["orders"] == "MIGRATION_MODULES names a module that does not exist"
    assert (
        "not managed contenttypes: django.contrib.contenttypes.migrations: in installed packages" in p.ok("info").stdout
    )


# -- the settings Django sees win -------------------------------------------------------------------------------


def test_env_file_the_settings_never_read(sqlite_shop: Project, pg_db: str) -> None:
    """(a) A project whose settings never read .env, with a .env naming a (real) PostgreSQL database: Django uses
    SQLite, so does dbsnap, info/doctor show the difference, and the database of .env is never touched."""
    p = sqlite_shop
    settings = p.root / "shopsite" / "settings.py"
    settings.write_text(settings.read_text().replace('load_dotenv(BASE_DIR / ".env")\n', ""))
    (p.root / ".env").write_text(f"DB_NAME={pg_db}\nDB_HOST={PG['host']}\nDB_PORT={PG['port']}\n")
    django = django_says(p, "__import__('django.db').db.connection.settings_dict['NAME']")
    assert django == str(p.root / "db.sqlite3")
    info = json.loads(p.ok("info", "--json").stdout)
    assert [(db["engine"], db["name"]) for db in info["databases"]] == [("sqlite", django)]
    (diff,) = info["differences"]
    assert diff.startswith(f"DB_NAME in .env says postgresql '{pg_db}'") and "dbsnap uses the settings'" in diff
    assert "difference: DB_NAME in .env" in p.ok("info").stdout
    doctor = json.loads(p.dbsnap("doctor", "--json").stdout)
    (check,) = [c for c in doctor["checks"] if c["name"] == "settings"]
    assert check["status"] == "warn" and "DB_NAME in .env says" in check["detail"]
    before = p.fingerprint()
    p.ok("save", "a")
    p.sql("DELETE FROM orders_orderitem")
    p.ok("rollback", "a", "--yes")
    assert p.fingerprint() == before
    with psycopg.connect(dbname=pg_db, autocommit=True, **PG) as c:
        assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_database_url_django_environ_does_not_expand(tmp_path) -> None:
    """(b) django-environ leaves ``${DBN}`` in DATABASE_URL as it is (python-dotenv would expand it): dbsnap
    targets the database named ``${DBN}``, as the application does, and says where its own reading differs."""
    p = cookie_project(tmp_path / "cookiesite")
    (p.root / ".env").write_text(f"DBN=ccdb\nDATABASE_URL=postgres://postgres@{PG['host']}:{PG['port']}/${{DBN}}\n")
    django = django_says(p, "__import__('django.db').db.connection.settings_dict['NAME']")
    assert django == "${DBN}"
    info = json.loads(p.ok("info", "--json").stdout)
    assert [d["name"] for d in info["databases"]] == [django]
    (diff,) = info["differences"]
    assert diff.startswith("DATABASE_URL in .env says postgresql 'ccdb'") and "'${DBN}'" in diff


# -- DATABASE_URL in the fallback, read by dj-database-url -------------------------------------------------------

GIS = "django.contrib.gis.db.backends"
URLS = [
    (
        "postgres://u:pw@db.example:5433/shop?sslmode=disable&connect_timeout=3",
        {"engine": "postgresql", "name": "shop", "host": "db.example", "port": "5433", "user": "u"},
        {"sslmode": "disable", "connect_timeout": 3},
    ),
    ("pgsql://u@db.example/shop", {"engine": "postgresql", "django_engine": "django.db.backends.postgresql"}, {}),
    ("postgis://u@db.example/shop", {"engine": "postgresql", "django_engine": f"{GIS}.postgis"}, {}),
    ("postgres://u@%2Fvar%2Frun%2Fpostgresql/shop", {"host": "/var/run/postgresql", "name": "shop"}, {}),
]


@pytest.fixture
def fallback(tmp_path) -> Project:
    """The example with settings that cannot be imported here: the database comes from DATABASE_URL."""
    p = sqlite_project(tmp_path / "shop")
    p.env["DJANGO_SETTINGS_MODULE"] = "nope.settings"
    return p


@pytest.mark.parametrize(("url", "fields", "options"), URLS, ids=["query", "pgsql", "postgis", "socket"])
def test_database_url_parsed_like_django_settings(fallback: Project, url, fields, options) -> None:
    res = fallback.ok("info", "--json", env={"DATABASE_URL": url})
    assert "could not be imported" in res.stderr
    (db,) = json.loads(res.stdout)["databases"]
    assert {k: db[k] for k in fields} == fields
    assert db["options"] == options
    assert "pw" not in res.stdout


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgres://u@db.example:notaport/shop", "DATABASE_URL cannot be parsed"),
        ("mongodb://u@db.example/shop", "DATABASE_URL has an unknown scheme 'mongodb'"),
    ],
    ids=["port", "scheme"],
)
def test_database_url_it_cannot_parse_is_exit_4(fallback: Project, url, words) -> None:
    res = fallback.dbsnap("info", env={"DATABASE_URL": url})
    assert res.returncode == 4, res.stderr
    assert f"error: {words}" in res.stderr and "unexpected" not in res.stderr and "Traceback" not in res.stderr


# -- settings.py DBSNAP ------------------------------------------------------------------------------------------


def test_settings_dbsnap_dict_and_its_precedence(tmp_path) -> None:
    """flag > environment > settings.py DBSNAP > pyproject [tool.dbsnap] > default, for any key dbsnap knows."""
    p = sqlite_project(tmp_path / "shop")

    def store(*args: str, **env: str) -> str:
        return json.loads(p.ok(*args, "info", "--json", env=env).stdout)["store"]

    (p.root / "pyproject.toml").write_text('[tool.dbsnap]\nstore = "from-pyproject"\n')
    assert store() == str(p.root / "from-pyproject")
    with open(p.root / "shopsite" / "settings.py", "a") as f:
        f.write('\nDBSNAP = {"STORE": "from-settings", "retention": {"keep_last": 1}}\n')
    assert store() == str(p.root / "from-settings")
    assert store(DBSNAP_DIR=str(p.root / "from-env")) == str(p.root / "from-env")
    assert store("--store", str(p.root / "from-flag"), DBSNAP_DIR=str(p.root / "from-env")) == str(p.root / "from-flag")
    # A table: settings.py retention is the policy prune uses (and says so).
    pruned = json.loads(p.ok("prune", "--dry-run", "--json").stdout)
    assert (pruned["policy"], pruned["source"]) == ("keep 1 latest snapshot", "settings.py DBSNAP['retention']")
