"""``reset --keep-data``: fresh initial migrations, every row kept, proved against the live schema first.

Real runs of the CLI on the example shop (seeded), PostgreSQL and SQLite: afterwards every table's rows hash the
same, the schema is untouched, the history rows equal the new files, ``makemigrations --check`` is clean and
``migrate`` has nothing to apply. Drift made by altering the live database with SQL is refused with exit 7, a
difference table, and everything (database and migration files) exactly as before.
"""

from __future__ import annotations

import json
import signal

import pytest
from conftest import Project

APPS = ("accounts", "catalog", "orders")


def own_rows(p: Project) -> set[tuple[str, str]]:
    return {
        tuple(r)
        for r in p.sql("SELECT app, name FROM django_migrations WHERE app IN ('accounts', 'catalog', 'orders')")
    }


def other_rows(p: Project) -> list[tuple]:
    return sorted(
        p.sql("SELECT app, name, applied FROM django_migrations WHERE app NOT IN ('accounts', 'catalog', 'orders')")
    )


def files(p: Project) -> dict[str, list[str]]:
    return {
        app: sorted(x.name for x in (p.root / app / "migrations").glob("*.py") if x.name != "__init__.py")
        for app in APPS
    }


def data_without_history(p: Project) -> dict:
    """Schema, every table's rows and every sequence but those of django_migrations (which keep-data rewrites)."""
    fp = p.fingerprint()
    data = {t: h for t, h in fp["data"].items() if not t.endswith(("django_migrations", "sqlite_sequence"))}
    if p.pg_name:
        seqs = {s: v for s, v in fp["sequences"].items() if "django_migrations" not in s}
    else:
        seqs = sorted(p.sql("SELECT name, seq FROM sqlite_sequence WHERE name <> 'django_migrations'"))
    return {"schema": fp["schema"], "data": data, "sequences": seqs}


def whole_state(p: Project) -> tuple:
    return (p.fingerprint(), p.migration_files())


def old_state(p: Project) -> tuple:
    """Everything but django_migrations' id sequence (PostgreSQL never rolls a sequence back): the schema, every
    row (the history's with ids and applied times), every other sequence, the migration files byte for byte."""
    rows = sorted(p.sql("SELECT id, app, name, applied FROM django_migrations"))
    return (data_without_history(p), rows, p.migration_files())


def assert_keep_data_done(p: Project, before: dict, others: list) -> None:
    assert data_without_history(p) == before  # every row, the schema and the sequences: identical
    assert files(p) == {app: ["0001_initial.py"] for app in APPS}
    assert own_rows(p) == {(app, "0001_initial") for app in APPS}
    assert other_rows(p) == others  # auth, contenttypes, ...: untouched, with their applied times
    p.manage("makemigrations", "--check", "--dry-run")
    assert "No migrations to apply." in p.manage("migrate").stdout
    assert not list(p.root.rglob(".*.dbsnap-*")), "a backup or scratch copy was left behind"
    assert not (p.store / ".journal.json").exists()


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_keep_data_keeps_every_row_and_fake_applies_fresh_initials(shop: Project) -> None:
    p = shop
    before, others = data_without_history(p), other_rows(p)
    res = p.ok("reset", "--keep-data", "--yes", "--json")
    out = json.loads(res.stdout)
    assert out["keep_data"] is True
    assert [s["step"] for s in out["steps"]] == [
        "preflight", "safety snapshot", "regenerate migrations", "compare schemas", "rewrite history", "verify",
    ]  # fmt: skip
    assert out["history"] == {"default": {"deleted": 5, "inserted": 3}}
    assert_keep_data_done(p, before, others)
    if p.pg_name:
        return
    # The safety snapshot holds the old history: a rollback to it gives the old files and rows back.
    p.ok("rollback", out["safety_snapshot"], "--yes")
    assert len(own_rows(p)) == 5 and "0002_order_note.py" in files(p)["orders"]


# -- drift: refused, exit 7, every difference shown, nothing changed ----------------------------------------------

DRIFT = {
    # a column the models define, missing in the database
    "missing-column": {
        "postgresql": ["ALTER TABLE orders_order DROP COLUMN note"],
        "sqlite": ["ALTER TABLE orders_order DROP COLUMN note"],
    },
    # a column the database has and the models do not
    "extra-column": {
        "postgresql": ["ALTER TABLE orders_order ADD COLUMN legacy_code varchar(20) NULL"],
        "sqlite": ["ALTER TABLE orders_order ADD COLUMN legacy_code varchar(20) NULL"],
    },
    # NOT NULL in the models, nullable in the database
    "nullability": {"postgresql": ["ALTER TABLE orders_order ALTER COLUMN status DROP NOT NULL"]},
    # an index the models declare (the foreign key's), missing in the database
    "missing-index": {"postgresql": ["DROP INDEX {fk_index}"], "sqlite": ["DROP INDEX {fk_index}"]},
    # a unique constraint the database has and the models do not
    "extra-unique": {
        "postgresql": ["ALTER TABLE catalog_category ADD CONSTRAINT drift_name_unique UNIQUE (name)"],
        "sqlite": ["CREATE UNIQUE INDEX drift_name_unique ON catalog_category (name)"],
    },
}
EXPECT = {
    "missing-column": ("column", "orders_order.note", True, False),
    "extra-column": ("column", "orders_order.legacy_code", False, True),
    "nullability": ("column", "orders_order.status", True, True),
    "missing-index": ("index", "orders_order", True, False),
    "extra-unique": (None, "catalog_category", False, True),
}


def fk_index(p: Project) -> str:
    if p.pg_name:
        q = "SELECT indexname FROM pg_indexes WHERE tablename = 'orders_order' AND indexdef LIKE '%(customer_id)%'"
    else:
        q = "SELECT name FROM sqlite_master WHERE tbl_name = 'orders_order' AND sql LIKE 'CREATE INDEX%customer_id%'"
    [(name,)] = p.sql(q)
    return f'"{name}"'


def check_refused(p: Project, case: str, kind_: str) -> None:
    for stmt in DRIFT[case][kind_]:
        p.sql(stmt.format(fk_index=fk_index(p)) if "{" in stmt else stmt)
    before = whole_state(p)
    res = p.dbsnap("reset", "--keep-data", "--yes", "--json")  # the table on stderr, the report on stdout
    assert res.returncode == 7, res.stderr
    assert "Traceback" not in res.stderr
    assert "error: reset --keep-data refused at [4/6] compare schemas" in res.stderr, res.stderr
    assert "nothing was changed" in res.stderr
    kind, obj, has_expected, has_actual = EXPECT[case]
    rows = [ln for ln in res.stderr.splitlines() if obj in ln and not ln.startswith("error:")]
    assert rows, res.stderr
    assert "FRESH MIGRATIONS BUILD" in res.stderr and "DATABASE HAS" in res.stderr
    if kind:
        assert any(ln.startswith(kind) for ln in rows), rows
    assert any(("(absent)" in ln.split(obj, 1)[1].split("  ", 1)[-1]) != (has_expected and has_actual) for ln in rows)
    assert whole_state(p) == before  # database AND migration files exactly as they were
    assert not list(p.root.rglob(".*.dbsnap-*"))
    assert not (p.store / ".journal.json").exists()
    report = json.loads(res.stdout)
    assert report["refused"] is True and report["exit_code"] == 7
    diffs = report["differences"]["default"]
    assert any(d["object"].startswith(obj) and (d["expected"] is not None) == has_expected for d in diffs), diffs


def test_drift_a_missing_column_is_refused_nothing_changed(sqlite_shop: Project) -> None:
    check_refused(sqlite_shop, "missing-column", "sqlite")


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DRIFT))
def test_drift_is_refused_nothing_changed_postgresql(pg_shop: Project, case: str) -> None:
    check_refused(pg_shop, case, "postgresql")


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(c for c in DRIFT if "sqlite" in DRIFT[c] and c != "missing-column"))
def test_drift_is_refused_nothing_changed_sqlite(sqlite_shop: Project, case: str) -> None:
    check_refused(sqlite_shop, case, "sqlite")


# -- kill -9 during the history rewrite: wholly old or wholly new ------------------------------------------------


# Two dbsnap runs each (the kill, then the recovering command): `make test-faults` (.ci/run) runs them.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "expect"),
    [
        ("keep-data.during-history-rewrite", "old"),  # inside the transaction, before COMMIT
        ("keep-data.after-history-rewrite", "new"),  # committed: only verify was left, so it is finished
        ("keep-data.after-backup", "old"),  # folders copied aside, nothing regenerated yet
        ("keep-data.after-regenerate-migrations", "old"),
        ("keep-data.after-compare-schemas", "old"),
        ("keep-data.before-verify", "new"),
    ],
)
def test_kill9_during_the_history_rewrite_leaves_old_or_new(shop: Project, point: str, expect: str) -> None:
    p = shop
    before_all, before, others = old_state(p), data_without_history(p), other_rows(p)
    res = p.dbsnap("reset", "--keep-data", "--yes", env={"DBSNAP_FAULT": point})
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert (p.store / ".journal.json").exists()
    nxt = p.dbsnap("status")
    assert "Traceback" not in nxt.stderr, nxt.stderr
    said = [ln for ln in nxt.stderr.splitlines() if ln.startswith("warning: an interrupted reset --keep-data")]
    assert len(said) == 1, nxt.stderr
    if expect == "old":
        assert "undone" in said[0], said
        assert old_state(p) == before_all
        assert not list(p.root.rglob(".*.dbsnap-*"))
    else:
        assert "finished" in said[0], said
        assert_keep_data_done(p, before, others)


# -- RunSQL objects: listed by the plan, carried with --carry-sql, compared -----------------------------------------

RUNSQL_PG = [
    ("CREATE EXTENSION IF NOT EXISTS citext", "DROP EXTENSION IF EXISTS citext"),
    (
        "CREATE FUNCTION orders_stamp() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN NEW.note := 'stamped; ' || NEW.note; RETURN NEW; END $$",
        "DROP FUNCTION IF EXISTS orders_stamp()",
    ),
    (
        "CREATE TRIGGER orders_stamp BEFORE INSERT ON orders_order FOR EACH ROW EXECUTE FUNCTION orders_stamp()",
        "DROP TRIGGER IF EXISTS orders_stamp ON orders_order",
    ),
    (
        "CREATE VIEW orders_paid AS SELECT id, customer_id FROM orders_order WHERE status = 'paid'",
        "DROP VIEW orders_paid",
    ),
]
RUNSQL_SQLITE = [
    (
        "CREATE TRIGGER orders_stamp AFTER INSERT ON orders_order BEGIN "
        "UPDATE orders_order SET note = 'stamped; ' || note WHERE id = NEW.id; END",
        "DROP TRIGGER IF EXISTS orders_stamp",
    ),
    (
        "CREATE VIEW orders_paid AS SELECT id, customer_id FROM orders_order WHERE status = 'paid'",
        "DROP VIEW orders_paid",
    ),
]

RUNSQL_MIGRATION = """
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("orders", "0002_order_note")]
    operations = [migrations.RunSQL({sql!r}, reverse_sql={reverse!r})]
"""


def with_runsql(p: Project) -> Project:
    """The shop with a migration whose RunSQL makes what no makemigrations writes, applied to its database."""
    stmts = RUNSQL_PG if p.pg_name else RUNSQL_SQLITE
    text = RUNSQL_MIGRATION.format(sql=[s for s, _ in stmts], reverse=[r for _, r in reversed(stmts)])
    (p.root / "orders" / "migrations" / "0003_stamp.py").write_text(text)
    p.manage("migrate", "-v0")
    return p


def stamped(p: Project) -> str:
    """Insert an order through the trigger (SQL, as another client would) and return its note."""
    [(customer,)] = p.sql("SELECT min(id) FROM accounts_user")
    p.sql(
        "INSERT INTO orders_order (customer_id, created_at, status, note) "
        f"VALUES ({customer}, CURRENT_TIMESTAMP, 'paid', 'n')"
    )
    [(note,)] = p.sql("SELECT note FROM orders_order ORDER BY id DESC LIMIT 1")
    return note


def check_runsql_carried(p: Project) -> None:
    with_runsql(p)
    kinds = {"trigger", "view"} | ({"function"} if p.pg_name else set())
    plan = json.loads(p.ok("reset", "--keep-data", "--carry-sql", "--dry-run", "--json").stdout)
    listed = {(o["kind"], o["name"]) for o in plan["objects"]}
    assert {k for k, _ in listed} == kinds, listed
    assert ("trigger", "orders_order.orders_stamp" if p.pg_name else "orders_stamp") in listed
    assert any(op["operation"] == "RunSQL" for op in plan["lost_operations"])
    if p.pg_name:
        assert {"kind": "extension", "name": "citext"} in plan["carried"]
    before = data_without_history(p)
    res = p.ok("reset", "--keep-data", "--carry-sql", "--yes", "--json")
    out = json.loads(res.stdout)
    assert data_without_history(p) == before
    assert out["not_carried"] == []
    assert {c.split(" ", 1)[0] for c in out["carried_sql"]} == kinds
    carried = p.root / out["carried_sql_file"]
    assert carried.name == "0002_dbsnap_carried_sql.py" and carried.parent == p.root / "orders" / "migrations"
    assert "CREATE TRIGGER orders_stamp" in carried.read_text()
    assert own_rows(p) >= {("orders", "0002_dbsnap_carried_sql"), ("accounts", "0001_initial")}
    p.manage("makemigrations", "--check", "--dry-run")
    assert "No migrations to apply." in p.manage("migrate").stdout
    assert stamped(p) == "stamped; n"  # the live trigger is the one it was


@pytest.mark.slow
def test_runsql_trigger_and_view_are_listed_and_carried_sqlite(sqlite_shop: Project) -> None:
    check_runsql_carried(sqlite_shop)


@pytest.mark.slow
def test_runsql_trigger_function_view_and_extension_are_carried_postgresql(pg_shop: Project) -> None:
    check_runsql_carried(pg_shop)


@pytest.mark.slow
def test_runsql_objects_without_carry_sql_are_listed_not_lost_silently(sqlite_shop: Project) -> None:
    p = with_runsql(sqlite_shop)
    res = p.ok("reset", "--keep-data", "--yes")
    assert "not in the new history (kept in the database; --carry-sql writes them into a migration):" in res.stdout
    assert "  trigger orders_stamp" in res.stdout and "  view orders_paid" in res.stdout
    assert stamped(p) == "stamped; n"  # kept in the database all the same


# -- the comparison itself (pure, no database) ----------------------------------------------------------------------


def test_comparison_counts_duplicates_lists_extras_apart_and_renders_a_table() -> None:
    from collections import Counter

    from dbsnap.schema import Column, Schema, Table, compare, not_regenerated, table

    def schema(constraints: list[str], extras: dict) -> Schema:
        cols = {"id": Column("bigint", False, identity="d"), "name": Column("varchar(100)", False)}
        return Schema("postgresql", {"t": Table(cols, Counter(constraints), Counter())}, extras=extras)

    fresh = schema(["PRIMARY KEY (id)", "UNIQUE (name)"], {})
    live = schema(["PRIMARY KEY (id)", "UNIQUE (name)", "UNIQUE (name)"], {"trigger": {"t.stamp": "CREATE ..."}})
    assert compare(fresh, Schema.from_dict(fresh.to_dict())) == []
    drift, apart = not_regenerated(compare(fresh, live))
    assert [d.describe() for d in drift] == ["constraint t: unexpected (UNIQUE (name))"]
    assert [(d.kind, d.object) for d in apart] == [("trigger", "t.stamp")]
    lines = table(drift, expected="FRESH", actual="DB").splitlines()
    assert lines[0].split() == ["KIND", "OBJECT", "FRESH", "DB"]
    assert lines[1].split() == ["constraint", "t", "(absent)", "UNIQUE", "(name)"]


# -- real-project shapes: a third-party squashed app, a serial column -----------------------------------------------


@pytest.mark.slow
def test_keep_data_with_a_third_party_squashed_app_leaves_its_rows(tmp_path, pg_server) -> None:
    from conftest import fresh_pg_database, pg_project, seeded
    from test_reset_real import with_squashapp

    with fresh_pg_database() as name:
        p = seeded(with_squashapp(pg_project(tmp_path / "shop", name)))
        before, others = data_without_history(p), other_rows(p)
        assert any(r[0] in ("squashapp", "legacy_squash") for r in others)
        p.ok("reset", "--keep-data", "--yes")
        assert_keep_data_done(p, before, others)


@pytest.mark.slow
def test_a_serial_column_is_described_without_its_sequence_name(pg_shop: Project) -> None:
    from test_reset_real import ctx_for

    p = pg_shop
    p.sql("CREATE TABLE legacy_thing (id serial PRIMARY KEY, n integer)")
    p.sql("ALTER TABLE legacy_thing RENAME TO legacy_renamed")  # the sequence keeps the old name
    ctx = ctx_for(p)
    [db] = ctx.databases()
    col = ctx.engine(db).describe_schema().tables["legacy_renamed"].columns["id"]
    assert (col.identity, col.default) == ("serial", None)
    assert ctx.engine(db).describe_schema().tables["orders_order"].columns["id"].identity == "d"


CIRCULAR = {
    "alpha/models.py": (
        "from django.db import models\n\n\nclass A(models.Model):\n"
        "    b = models.ForeignKey('beta.B', null=True, on_delete=models.SET_NULL, related_name='+')\n"
    ),
    "beta/models.py": (
        "from django.db import models\n\n\nclass B(models.Model):\n"
        "    a = models.ForeignKey('alpha.A', null=True, on_delete=models.SET_NULL, related_name='+')\n"
        "    label = models.CharField(max_length=20, default='')\n"
    ),
}


LONG_STEP = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("beta", {prev!r})]
    operations = [
        migrations.AlterField("b", "label", models.CharField(max_length=20, default="", help_text={text!r})),
    ]
"""


@pytest.mark.slow
def test_keep_data_with_circular_foreign_keys_and_a_long_history(sqlite_shop: Project) -> None:
    """Two apps pointing at each other (makemigrations splits one into 0001/0002), and a history of 150 more
    migrations on top: the fresh history is fake-applied, every row kept."""
    from test_reset_real import add_settings

    p = sqlite_shop
    for rel, text in CIRCULAR.items():
        app = p.root / rel.split("/")[0]
        (app / "migrations").mkdir(parents=True)
        for name in ("__init__.py", "migrations/__init__.py"):
            (app / name).write_text("")
        (p.root / rel).write_text(text)
    add_settings(p, 'INSTALLED_APPS += ["alpha", "beta"]\n')
    p.manage("makemigrations", "alpha", "beta")
    folder = p.root / "beta" / "migrations"
    prev = max(x.stem for x in folder.glob("0*.py"))
    for i in range(int(prev[:4]) + 1, int(prev[:4]) + 151):  # a long history: the label's help text, 150 times
        (folder / f"{i:04d}_label_{i}.py").write_text(LONG_STEP.format(prev=prev, text=f"label, version {i}"))
        prev = f"{i:04d}_label_{i}"
    models = p.root / "beta" / "models.py"
    models.write_text(models.read_text().replace("default='')", f"default='', help_text='label, version {i}')"))
    p.manage("migrate", "-v0")
    p.sql("INSERT INTO alpha_a (id, b_id) VALUES (1, NULL)")
    p.sql("INSERT INTO beta_b (id, a_id, label) VALUES (1, 1, 'x')")
    p.sql("UPDATE alpha_a SET b_id = 1")
    before = data_without_history(p)
    assert len(list(folder.glob("0*.py"))) >= 151
    out = json.loads(p.ok("reset", "--keep-data", "--yes", "--json").stdout)
    assert data_without_history(p) == before
    fresh = {app: names for app, names in out["migrations"].items() if app in ("alpha", "beta")}
    assert sorted(n for names in fresh.values() for n in names) == [
        "0001_initial.py",
        "0001_initial.py",
        "0002_initial.py",
    ]
    rows = {tuple(r) for r in p.sql("SELECT app, name FROM django_migrations WHERE app IN ('alpha', 'beta')")}
    assert rows == {(a, n[:-3]) for a, names in fresh.items() for n in names}
    p.manage("makemigrations", "--check", "--dry-run")
    assert "No migrations to apply." in p.manage("migrate").stdout


@pytest.mark.slow
@pytest.mark.parametrize("point", ["keep-data.before-compare-schemas", "keep-data.during-history-rewrite"])
def test_sigterm_undoes_it_and_exits_143(sqlite_shop: Project, point: str) -> None:
    p = sqlite_shop
    before = old_state(p)
    res = p.dbsnap("reset", "--keep-data", "--yes", env={"DBSNAP_FAULT": point + ":term"})
    assert res.returncode == 143, res.stderr
    assert "interrupted by SIGTERM" in res.stderr and "nothing was changed" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert old_state(p) == before
    assert not (p.store / ".journal.json").exists()
    assert not list(p.root.rglob(".*.dbsnap-*"))
