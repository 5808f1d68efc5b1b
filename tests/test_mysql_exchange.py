"""MySQL/MariaDB export and import on the real server: an exported snapshot loads with the plain ``mysql`` client
into a fresh schema; a plain dump of one schema, made with ``--databases`` and gzipped as django-dbbackup writes
it, becomes a snapshot with no migration folders that a rollback restores exactly; a dump of several schemas is
refused with nothing stored. And the dump scanner whose row counts the manifest records, on both tools' layouts."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import MY, Project, fresh_mysql_database, mysql_fingerprint
from test_mysql import run_sql, with_programs

from dbsnap.engines.mysql.dumpscan import DumpScanner, rows_in_line

MY_ARGS = ["-h", MY["host"], "-P", MY["port"], "-u", MY["user"]]


def tool(*names: str) -> str:
    found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    assert found, f"none of {names} on PATH"
    return found


def test_export_loads_with_the_mysql_client_and_an_import_rolls_back_exactly(
    mysql_shop: Project, tmp_path: Path
) -> None:
    p = with_programs(mysql_shop)
    state = p.fingerprint()
    p.ok("save", "s1")
    sql = tmp_path / "s1.sql"
    out = json.loads(p.ok("export", "s1", "--to", str(sql), "--json").stdout)
    assert out["file"] == str(sql) and "mysql DBNAME < FILE" in out["format"]
    with fresh_mysql_database() as copy, sql.open("rb") as f:
        subprocess.run([tool("mariadb", "mysql"), *MY_ARGS, copy], stdin=f, check=True)
        assert mysql_fingerprint(copy) == state

    # django-dbbackup's MySQL backup is mysqldump's SQL, here gzipped and with --databases (CREATE DATABASE, USE)
    dump = tmp_path / "default-2026-01-01.mysql.gz"
    argv = [tool("mariadb-dump", "mysqldump"), *MY_ARGS, "--single-transaction", "--routines", "--triggers"]
    raw = subprocess.run([*argv, "--events", "--databases", p.my_name], check=True, capture_output=True).stdout
    assert b"\nUSE `" in raw
    dump.write_bytes(gzip.compress(raw))
    p.ok("import", str(dump), "from-dbbackup")
    show = json.loads(p.ok("show", "from-dbbackup", "--json").stdout)
    assert show["origin"] == "import" and show["migrations"]["none"] and show["migrations"]["folders"] == []
    assert show["databases"]["default"]["tables"]["gadget"] == 2

    run_sql(p, "DELETE FROM orders_orderitem", "DROP VIEW cheap_names", "CREATE TABLE later (x INT)")
    stray = p.root / "catalog" / "migrations" / "0099_stray.py"
    stray.write_text("# a migration written after the dump\n")
    files = p.migration_files()
    res = p.ok("rollback", "from-dbbackup", "--yes")
    assert "it restores the database only" in res.stderr
    assert p.fingerprint() == state
    assert p.migration_files() == files  # folders untouched: the dump had none


def test_a_dump_of_several_schemas_is_refused_and_nothing_is_stored(mysql_shop: Project, tmp_path: Path) -> None:
    p = mysql_shop
    with fresh_mysql_database() as other:
        argv = [tool("mariadb-dump", "mysqldump"), *MY_ARGS, "--databases", p.my_name, other]
        dump = tmp_path / "two.sql"
        dump.write_bytes(subprocess.run(argv, check=True, capture_output=True).stdout)
    before = sorted(x.name for x in p.store.iterdir()) if p.store.exists() else []
    res = p.dbsnap("import", str(dump), "two")
    assert res.returncode == 2 and "holds several databases" in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2 and "Traceback" not in res.stderr
    assert (sorted(x.name for x in p.store.iterdir()) if p.store.exists() else []) == before


def scan(text: bytes, chunk: int) -> DumpScanner:
    s = DumpScanner()
    for i in range(0, len(text), chunk):
        s.feed(text[i : i + chunk])
    s.close()
    return s


MARIADB_LAYOUT = b"""-- MariaDB dump 10.19
CREATE TABLE `django_migrations` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `app` varchar(255) NOT NULL,
  `name` varchar(255) NOT NULL,
  `applied` datetime(6) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB;
INSERT INTO `django_migrations` VALUES
(2,'shop','0002_it\\'s\\'),(x','2026-01-01 00:00:00.000000'),
(1,'shop','0001_initial','2026-01-01 00:00:00.000000');
CREATE TABLE `we``ird` (
  `t` text
) ENGINE=InnoDB;
INSERT INTO `we``ird` VALUES
('a\\\\'),
('),(\\n);\\''),
(NULL);
CREATE TABLE `empty` (
  `x` int
);
DELIMITER ;;
CREATE TRIGGER t AFTER INSERT ON `empty` FOR EACH ROW BEGIN
INSERT INTO `empty` VALUES
(1);
END ;;
DELIMITER ;
"""

MYSQL_LAYOUT = MARIADB_LAYOUT.replace(b"VALUES\n(", b"VALUES (").replace(b"),\n(", b"),(").replace(b"\\n);", b"\\n);")


@pytest.mark.parametrize("layout", [MARIADB_LAYOUT, MYSQL_LAYOUT], ids=["mariadb", "mysql"])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_the_dump_scanner_counts_rows_outside_strings_and_programs(layout: bytes, chunk: int) -> None:
    s = scan(layout, chunk)
    assert s.tables() == {"django_migrations": 2, "empty": 0, "we`ird": 3}
    assert s.migrations() == [["shop", "0001_initial"], ["shop", "0002_it's'),(x"]]


def test_rows_in_line_reads_escapes_as_the_dump_tool_writes_them() -> None:
    assert rows_in_line(b"(1),(2),(3);") == 3
    assert rows_in_line(b"('\\\\'),('\\''),('),(')") == 3
    assert rows_in_line(b"('a\\\\\\'),(b'),(0x2C29)") == 2
