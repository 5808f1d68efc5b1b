"""export and import: a snapshot restored by plain pg_restore, a plain dump (gzipped too, as django-dbbackup
writes them) taken as a snapshot and rolled back to, database only."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PG, Project, fresh_pg_database, pg_fingerprint, sqlite_fingerprint

PG_ARGS = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"]]


@pytest.mark.slow
def test_an_exported_snapshot_is_restored_by_plain_pg_restore(pg_shop: Project, tmp_path: Path) -> None:
    pg_shop.ok("save", "s1")
    state = pg_shop.fingerprint()
    dump = tmp_path / "s1.dump"
    out = json.loads(pg_shop.ok("export", "s1", "--to", str(dump), "--json").stdout)
    assert out["file"] == str(dump) and dump.read_bytes().startswith(b"PGDMP")
    assert pg_shop.dbsnap("export", "s1", "--to", str(dump)).returncode == 2  # never overwritten unasked
    with fresh_pg_database() as copy:
        subprocess.run(["pg_restore", *PG_ARGS, "--no-owner", "-d", copy, str(dump)], check=True)
        assert pg_fingerprint(copy) == state


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt, gz",
    [("-Fc", True), ("-Fp", False), ("-Fp", True)],  # dbbackup: PgDumpBinaryConnector, PgDumpConnector, --compress
    ids=["custom-gzip", "plain-sql", "plain-sql-gzip"],
)
def test_a_pg_dump_is_imported_and_rolled_back_to_database_only(
    pg_shop: Project, tmp_path: Path, fmt: str, gz: bool
) -> None:
    state = pg_shop.fingerprint()
    dump = tmp_path / ("shop.dump" + (".gz" if gz else ""))
    raw = subprocess.run(["pg_dump", fmt, *PG_ARGS, pg_shop.pg_name], check=True, capture_output=True).stdout
    dump.write_bytes(gzip.compress(raw) if gz else raw)
    pg_shop.ok("import", str(dump), "from-dbbackup")
    show = json.loads(pg_shop.ok("show", "from-dbbackup", "--json").stdout)
    assert show["origin"] == "import" and show["migrations"]["none"] and show["migrations"]["folders"] == []
    assert show["imported"]["format"].startswith("plain SQL" if fmt == "-Fp" else "pg_dump custom")
    pg_shop.ok("verify", "from-dbbackup")

    pg_shop.sql("DELETE FROM orders_orderitem")
    stray = pg_shop.root / "catalog" / "migrations" / "0099_stray.py"
    stray.write_text("# a migration written after the dump\n")
    files = pg_shop.migration_files()
    out = pg_shop.ok("rollback", "from-dbbackup", "--yes")
    assert "it restores the database only" in out.stderr
    assert pg_shop.fingerprint() == state
    assert pg_shop.migration_files() == files  # folders untouched: the dump had none


@pytest.mark.slow
def test_sqlite_export_and_import_round_trip(sqlite_shop: Project, tmp_path: Path) -> None:
    sqlite_shop.ok("save", "s1")
    state = sqlite_shop.fingerprint()
    exported = tmp_path / "s1.sqlite3"
    sqlite_shop.ok("export", "s1", "--to", str(exported))
    assert sqlite_fingerprint(exported) == state
    bad = tmp_path / "notes.txt"
    bad.write_text("CREATE TABLE x (a int);\n")
    proc = sqlite_shop.dbsnap("import", str(bad), "x")
    assert proc.returncode == 2 and "not a dump dbsnap can import" in proc.stderr
    shutil.copy(exported, tmp_path / "copy.sqlite3")
    sqlite_shop.sql("DELETE FROM orders_orderitem")
    sqlite_shop.ok("import", str(tmp_path / "copy.sqlite3"), "imported")
    sqlite_shop.ok("rollback", "imported", "--yes")
    assert sqlite_shop.fingerprint() == state


@pytest.mark.slow
def test_a_plain_sql_dump_that_does_not_load_is_refused_whole(pg_shop: Project, tmp_path: Path) -> None:
    raw = subprocess.run(["pg_dump", *PG_ARGS, pg_shop.pg_name], check=True, capture_output=True, text=True).stdout
    dump = tmp_path / "broken.sql"
    dump.write_text(raw + "\nINSERT INTO no_such_table VALUES (1);\n")
    proc = pg_shop.dbsnap("import", str(dump), "broken")
    assert proc.returncode == 6 and "the SQL dump does not load" in proc.stderr and "no_such_table" in proc.stderr
    assert not (pg_shop.store / "broken").exists()
    leftovers = pg_shop_scratch_databases()
    assert leftovers == [], leftovers


def pg_shop_scratch_databases() -> list[str]:
    import psycopg

    with psycopg.connect(host=PG["host"], port=PG["port"], user=PG["user"], dbname="postgres") as c:
        return [r[0] for r in c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dbsnap_import_%'")]
