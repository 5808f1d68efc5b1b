"""`dbsnap status` and `dbsnap diff` on the example project after a known set of changes, and the pure comparisons
they are built on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Project

from dbsnap.pipelines.changes import (
    FileChanges,
    TableChange,
    file_changes,
    history_problems,
    row_changes,
    table_changes,
    unified_patch,
)
from dbsnap.project.migration_scan import disk_migrations

EDITED = "orders/migrations/0001_initial.py"
DELETED = "catalog/migrations/0002_default_categories.py"
ADDED = "accounts/migrations/0002_user_nickname.py"
DELETED_APPLIED = "orders/migrations/0002_order_note.py"
EDIT_LINE = "# reviewed by test_compare"


def status_json(p: Project, *args: str) -> dict:
    res = p.ok("status", "--json", *args)
    return json.loads(res.stdout)


def make_known_changes(p: Project) -> dict[str, int]:
    """Edit one migration file, delete one (and its row), add one through a model change + makemigrations +
    migrate, insert and delete rows. Returns the expected row-count changes."""
    with open(p.root / EDITED, "a") as f:
        f.write(EDIT_LINE + "\n")
    (p.root / DELETED).unlink()
    p.sql("DELETE FROM django_migrations WHERE app = 'catalog' AND name = '0002_default_categories'")
    models = p.root / "accounts" / "models.py"
    phone = '    phone = models.CharField(max_length=32, blank=True, default="")\n'
    text = models.read_text()
    assert phone in text
    models.write_text(
        text.replace(phone, phone + '    nickname = models.CharField(max_length=50, blank=True, default="")\n')
    )
    p.manage("makemigrations", "accounts", "-v0")
    assert (p.root / ADDED).is_file()
    p.manage("migrate", "-v0")
    p.sql("INSERT INTO catalog_category (name, slug) VALUES ('Test compare category', 'test-compare')")
    ids = ", ".join(str(r[0]) for r in p.sql("SELECT id FROM orders_order ORDER BY id LIMIT 5"))
    [(items,)] = p.sql(f"SELECT count(*) FROM orders_orderitem WHERE order_id IN ({ids})")
    assert items > 0
    p.sql(f"DELETE FROM orders_orderitem WHERE order_id IN ({ids})")
    p.sql(f"DELETE FROM orders_order WHERE id IN ({ids})")
    return {"catalog_category": 1, "orders_order": -5, "orders_orderitem": -items}


def check_status_and_diff(p: Project) -> None:
    p.ok("save", "s1")
    deltas = make_known_changes(p)

    # status: exactly those files, the new applied row (and the removed one), no disagreement
    st = status_json(p)
    assert st["snapshot"]["name"] == "s1"
    assert st["files"] == {"added": [ADDED], "removed": [DELETED], "changed": [EDITED]}
    assert st["new_folders"] == [] and st["missing_folders"] == []
    db = st["databases"]["default"]
    assert db["in_snapshot"] is True
    assert db["migrations_added"] == [["accounts", "0002_user_nickname"]]
    assert db["migrations_removed"] == [["catalog", "0002_default_categories"]]
    assert db["unapplied"] == [] and db["stale"] == []
    assert st["in_sync"] is True and st["checked_by"] == "django"  # the settings import: Django's loader
    res = p.ok("status")
    assert res.stdout.splitlines()[1:5] == [
        "migration files since s1: 1 added, 1 removed, 1 changed",
        f"  added    {ADDED}",
        f"  removed  {DELETED}",
        f"  changed  {EDITED}",
    ]
    assert "    + accounts.0002_user_nickname\n" in res.stdout
    assert res.stdout.rstrip().splitlines()[-1].startswith("in sync: ")

    # an applied migration's file deleted: a row with no file, still exit 0 (it is a report)
    (p.root / DELETED_APPLIED).unlink()
    st = status_json(p)
    assert st["databases"]["default"]["stale"] == [["orders", "0002_order_note"]]
    assert st["databases"]["default"]["unapplied"] == []
    assert st["files"]["removed"] == sorted([DELETED, DELETED_APPLIED])
    assert st["in_sync"] is False
    res = p.ok("status", "--against", "s1")
    assert "  applied with no file (row, no file): 1\n    ! orders.0002_order_note\n" in res.stdout
    assert res.stdout.rstrip().splitlines()[-1].startswith("OUT OF SYNC: ")

    # diff s1 s2: the same files, the row counts of the touched tables, the django_migrations rows
    p.ok("save", "s2")
    d = json.loads(p.ok("diff", "s1", "s2", "--json", "--patch").stdout)
    assert d["files"] == {"added": [ADDED], "removed": sorted([DELETED, DELETED_APPLIED]), "changed": [EDITED]}
    dd = d["databases"]["default"]
    assert dd["migrations_added"] == [["accounts", "0002_user_nickname"]]
    assert dd["migrations_removed"] == [["catalog", "0002_default_categories"]]
    assert {t: v["delta"] for t, v in dd["tables"].items()} == deltas
    assert all(v["change"] == "changed" and v["b"] - v["a"] == v["delta"] for v in dd["tables"].values())
    assert dd["tables_unchanged"] > 5
    assert d["a"]["name"] == "s1" and d["b"]["name"] == "s2"
    assert d["a"]["created_at"] < d["b"]["created_at"]
    for side in ("a", "b"):
        assert d[side]["bytes"] == sum(d[side]["files"].values()) > 0
        assert "migrations.tar.zst" in d[side]["files"]
    assert list(d["patches"]) == [EDITED]
    assert f"\n+{EDIT_LINE}\n" in d["patches"][EDITED]

    res = p.ok("diff", "s1", "latest", "--patch")
    out = res.stdout
    assert "migration files: 1 added, 2 removed, 1 changed\n" in out
    assert "  django_migrations: 1 added, 1 removed\n    + accounts.0002_user_nickname\n" in out
    assert "  row counts: 3 tables changed, 0 added, 0 removed" in out
    assert f"--- s1/{EDITED}\n+++ s2/{EDITED}\n" in out
    assert f"\n+{EDIT_LINE}\n" in out
    assert res.stderr == ""
    assert "--- s1/" not in p.ok("diff", "s1", "s2").stdout  # no patch unless asked


@pytest.mark.slow  # the main suite's 6-minute budget: runs in make test-faults
def test_status_and_diff_after_known_changes_sqlite(sqlite_shop: Project) -> None:
    check_status_and_diff(sqlite_shop)


def test_status_and_diff_after_known_changes_postgresql(pg_shop: Project) -> None:
    check_status_and_diff(pg_shop)


def test_status_without_snapshot_and_with_django(sqlite_shop: Project) -> None:
    p = sqlite_shop
    res = p.ok("status")
    assert res.stdout.startswith(f"no snapshot in {p.store}: ")
    assert "since" not in res.stdout
    st = status_json(p)
    assert st["snapshot"] is None and st["files"] is None and st["in_sync"] is True
    assert not p.store.exists()  # a report creates nothing

    # a django.contrib row removed: invisible to the file check, reported by Django's loader
    p.sql("DELETE FROM django_migrations WHERE app = 'sessions'")
    files = status_json(p, "--files")
    assert files["in_sync"] is True and files["checked_by"] == "files"
    assert files["files_reason"] == "asked for with --files"
    st = status_json(p)  # the default, since the settings import
    db = st["databases"]["default"]
    assert st["checked_by"] == "django"
    assert db["unapplied"] == [["sessions", "0001_initial"]]
    assert db["stale"] == [] and db["missing_tables"] == []
    assert st["in_sync"] is False

    # a file never applied, and a row of an own app with no file, without any snapshot
    (p.root / "orders" / "migrations" / "0003_extra.py").write_text(
        "from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
        "    dependencies = [('orders', '0002_order_note')]\n    operations = []\n"
    )
    p.sql("INSERT INTO django_migrations (app, name, applied) VALUES ('catalog', '0009_gone', '2026-01-01')")
    for how, also in (("--files", []), ("--django", [["sessions", "0001_initial"]])):
        db = status_json(p, how)["databases"]["default"]
        assert sorted(db["unapplied"]) == sorted([["orders", "0003_extra"], *also]), how
        assert db["stale"] == [["catalog", "0009_gone"]], how


def test_status_against_pg_snapshot_is_in_sync(pg_shop: Project) -> None:
    pg_shop.ok("save", "base")
    st = status_json(pg_shop, "--against", "latest")
    assert st["snapshot"]["name"] == "base"
    assert st["files"] == {"added": [], "removed": [], "changed": []}
    db = st["databases"]["default"]
    assert db["engine"] == "postgresql" and db["applied"] > 20
    assert db["migrations_added"] == db["migrations_removed"] == db["unapplied"] == db["stale"] == []
    assert st["in_sync"] is True
    assert "migration files: unchanged since base\n" in pg_shop.ok("status").stdout


def test_unknown_snapshot_names_exit_3(sqlite_shop: Project) -> None:
    p = sqlite_shop
    res = p.dbsnap("diff", "latest", "latest")
    assert res.returncode == 3 and res.stdout == ""
    assert res.stderr.startswith("error: no snapshots in ")
    p.ok("save", "base")
    for args in (("diff", "base", "bsae"), ("diff", "nope", "base", "--json"), ("status", "--against", "bsae")):
        res = p.dbsnap(*args)
        assert res.returncode == 3, args
        assert res.stdout == ""
        assert "not found" in res.stderr and "Traceback" not in res.stderr
    assert "hint: did you mean base?" in p.dbsnap("diff", "base", "bsae").stderr
    res = p.ok("diff", "base", "latest")
    assert "migration files: identical\n" in res.stdout
    assert "django_migrations: 0 added, 0 removed" in res.stdout


# -- the pure comparisons ------------------------------------------------------------------------------------


def test_file_row_and_table_changes() -> None:
    assert file_changes({"a": "1", "b": "2", "c": "3"}, {"b": "2", "c": "9", "d": "4"}) == FileChanges(
        added=["d"], removed=["a"], changed=["c"]
    )
    assert file_changes({}, {}).empty
    before = [["x", "0001"], ["y", "0001"], ["x", "0002"]]
    after = [["x", "0001"], ["z", "0001"], ["x", "0003"], ["z", "0001"]]
    assert row_changes(before, after) == ([("z", "0001"), ("x", "0003")], [("y", "0001"), ("x", "0002")])
    changes = table_changes({"a": 1, "b": 2, "c": 3}, {"b": 2, "c": 5, "d": 0})
    assert changes == [TableChange("a", 1, None), TableChange("c", 3, 5), TableChange("d", None, 0)]
    assert [(t.kind, t.delta) for t in changes] == [("removed", -1), ("changed", 2), ("added", 0)]


def test_history_problems_and_squashed_migrations(tmp_path: Path) -> None:
    mig = tmp_path / "shop" / "migrations"
    mig.mkdir(parents=True)
    for name in ("__init__.py", "0001_initial.py", "_helper.py", "~0002_tmp.py"):
        (mig / name).write_text("")
    (mig / "0001_squashed_0003_x.py").write_text(
        "from django.db import migrations\n\nclass Migration(migrations.Migration):\n"
        "    replaces = [('shop', '0002_a'), ('shop', '0003_x')]\n    operations = []\n"
    )
    (mig / "notes.txt").write_text("not a migration")
    disk = disk_migrations(tmp_path, [("shop", "shop/migrations"), ("gone", "gone/migrations")])
    assert disk == {
        ("shop", "0001_initial"): [],
        ("shop", "0001_squashed_0003_x"): [("shop", "0002_a"), ("shop", "0003_x")],
    }
    rows = [
        ["auth", "0001_initial"],
        ["shop", "0001_initial"],
        ["shop", "0002_a"],
        ["shop", "0003_x"],
        ["gone", "0001"],
    ]
    # the squash counts as applied (all it replaces is); its replaced rows are not stale; other apps not judged
    assert history_problems(rows, disk, {"shop", "gone"}) == ([], [("gone", "0001")])
    assert history_problems(rows[:3], disk, {"shop"}) == ([("shop", "0001_squashed_0003_x")], [])
    assert history_problems([], disk, {"shop"}) == ([("shop", "0001_initial"), ("shop", "0001_squashed_0003_x")], [])


def test_unified_patch() -> None:
    text = unified_patch("app/migrations/0001.py", b"a\nb\n", b"a\nc", "s1", "s2")
    assert text.splitlines() == [
        "--- s1/app/migrations/0001.py",
        "+++ s2/app/migrations/0001.py",
        "@@ -1,2 +1,2 @@",
        " a",
        "-b",
        "+c",
        "\\ No newline at end of file",
    ]
    assert unified_patch("x.bin", b"\xff\x00", b"\x00", "s1", "s2") == "Binary files s1/x.bin and s2/x.bin differ\n"
    assert unified_patch("same.py", b"a\n", b"a\n") == ""


@pytest.mark.parametrize("command", ["status", "diff"])
def test_help_has_examples(command: str) -> None:
    from click.testing import CliRunner

    from dbsnap.cli import cli

    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0 and "Example:" in res.output and f"dbsnap {command}" in res.output
