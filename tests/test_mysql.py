"""The MySQL/MariaDB engine on a real server: an exact round trip (schema, AUTO_INCREMENT counters, rows, views,
triggers, routines, events), a swap that a kill -9 at any point leaves wholly old or wholly new, reset (also when
migrate fails halfway through non-transactional DDL), bad input, and the schema description."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import MySQLdb
import pytest
from conftest import MY, Project, fresh_mysql_database, my_admin, mysql_project, mysql_schemas

from dbsnap.engines import engine_for
from dbsnap.engines.mysql.events import DisabledEvents
from dbsnap.project.databases import Database
from dbsnap.schema import compare

PROGRAMS = [
    "CREATE TABLE gadget (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40) NOT NULL, blob_col VARBINARY(16), "
    "price DECIMAL(8,2) DEFAULT 1.50, UNIQUE KEY (name), CHECK (price >= 0)) AUTO_INCREMENT=500",
    "CREATE TABLE gadget_log (id INT AUTO_INCREMENT PRIMARY KEY, gadget_id INT, "
    "FOREIGN KEY (gadget_id) REFERENCES gadget (id) ON DELETE CASCADE)",
    "CREATE VIEW cheap_gadget AS SELECT id, name FROM gadget WHERE price < 10",
    "CREATE VIEW cheap_names AS SELECT name FROM cheap_gadget",
    "CREATE TRIGGER gadget_ai AFTER INSERT ON gadget FOR EACH ROW INSERT INTO gadget_log (gadget_id) VALUES (NEW.id)",
    "CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
    "CREATE PROCEDURE add_gadget(IN n VARCHAR(40)) INSERT INTO gadget (name) VALUES (n)",
    "CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' ENABLE DO DELETE FROM gadget_log",
    "CREATE EVENT `weekly ``odd`` name` ON SCHEDULE EVERY 1 WEEK STARTS '2030-01-01 00:00:00' DISABLE "
    "DO DELETE FROM gadget_log",
    "INSERT INTO gadget (name, blob_col) VALUES ('zéro ☃', UNHEX('00FF10')), ('one', NULL)",
]


def run_sql(p: Project, *statements: str) -> None:
    c = my_admin(p.my_name)
    try:
        for s in statements:
            c.cursor().execute(s)
    finally:
        c.close()


def with_programs(p: Project) -> Project:
    run_sql(p, *PROGRAMS)
    return p


def change_everything(p: Project) -> None:
    """What a day of development does: rows, schema, programs and migration files all change."""
    run_sql(
        p,
        "CALL add_gadget('two')",
        "DELETE FROM orders_orderitem WHERE id % 3 = 0",
        "ALTER TABLE catalog_product ADD COLUMN colour VARCHAR(10) NULL",
        "DROP VIEW cheap_names",
        "DROP TRIGGER gadget_ai",
        "CREATE OR REPLACE VIEW cheap_gadget AS SELECT id FROM gadget",
        "DROP FUNCTION twice",
        "CREATE TABLE later (x INT)",
        "INSERT INTO later VALUES (1)",
    )
    (p.root / "orders" / "migrations" / "0003_later.py").write_text("# a migration written after the snapshot\n")


def leftovers(p: Project) -> list[str]:
    """Schemas dbsnap made beside the project's and left behind."""
    assert p.my_name
    return [s for s in mysql_schemas(p.my_name) if s != p.my_name]


def test_round_trip_is_exact_and_ends_other_sessions(mysql_shop: Project) -> None:
    p = with_programs(mysql_shop)
    before, files = p.fingerprint(), p.migration_files()
    saved = json.loads(p.ok("save", "base", "--json").stdout)
    assert saved["name"] == "base"
    manifest = json.loads((p.store / "base" / "manifest.json").read_text())
    db = manifest["databases"]["default"]
    assert db["engine"] == "mysql" and db["tables"]["gadget"] == 2 and db["tables"]["gadget_log"] == 2
    assert ["orders", "0002_order_note"] in db["migrations"]
    assert "password" not in json.dumps(manifest).lower()

    change_everything(p)
    assert p.fingerprint() != before
    other = my_admin(p.my_name)  # an application still connected
    res = p.ok("rollback", "base", "--yes")
    assert "ended session on default: id " in res.stderr
    with pytest.raises(MySQLdb.OperationalError):
        other.cursor().execute("SELECT 1")
    assert p.fingerprint() == before
    assert p.migration_files() == files
    assert not (p.root / "orders" / "migrations" / "0003_later.py").exists()
    assert leftovers(p) == []
    # The restored programs work on the restored tables: the trigger fires, the routines run.
    run_sql(p, "CALL add_gadget('three')")
    assert p.sql("SELECT twice(21), count(*) FROM gadget_log") == [(42, 3)]
    assert p.ok("verify", "base", "--deep").returncode == 0
    assert "in sync" in p.ok("status").stdout
    [safety] = [s["name"] for s in json.loads(p.ok("list", "--json").stdout) if s["origin"] == "pre-rollback"]
    diff = json.loads(p.ok("diff", "base", safety, "--json").stdout)
    assert "later" in json.dumps(diff)  # the table made after the snapshot, kept in the safety snapshot


def test_kill_after_rename_is_undone_by_the_next_command(mysql_shop: Project) -> None:
    p = with_programs(mysql_shop)
    p.ok("save", "base")
    change_everything(p)
    after, files_after = p.fingerprint(), p.migration_files()
    res = p.dbsnap("rollback", "base", "--yes", env={"DBSNAP_FAULT": "mysql.after-rename:kill"})
    assert res.returncode == -9
    assert p.fingerprint() != after  # tables swapped, programs not yet installed: recovery must finish it
    rec = p.ok("list")  # the database swap was not complete: undone, wholly as before
    assert "was found and undone" in rec.stderr
    assert (p.fingerprint(), p.migration_files()) == (after, files_after)
    assert leftovers(p) == []


def event_status(schema: str) -> dict[str, str]:
    c = my_admin(schema)
    try:
        cur = c.cursor()
        cur.execute("SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (schema,))
        return dict(cur.fetchall())
    finally:
        c.close()


@pytest.mark.slow  # the main suite's budget: make test-faults runs it
def test_events_are_disabled_in_the_scratch_schema_and_enabled_again_live(mysql_shop: Project) -> None:
    """The event scheduler must not run the snapshot's events on the scratch schema while it is filled and swapped:
    they are created there disabled, and the live schema gets them with the status they were saved with."""
    p = with_programs(mysql_shop)
    assert event_status(p.my_name) == {"nightly": "ENABLED", "weekly `odd` name": "DISABLED"}
    before = p.fingerprint()
    p.ok("save", "base")
    change_everything(p)
    run_sql(p, "ALTER EVENT nightly DISABLE")
    res = p.dbsnap("rollback", "base", "--yes", env={"DBSNAP_FAULT": "mysql.before-drop-triggers:kill"})
    assert res.returncode == -9
    [scratch] = [s for s in leftovers(p) if "_dbsnap_new_" in s]
    assert event_status(scratch) == {"nightly": "DISABLED", "weekly `odd` name": "DISABLED"}
    assert "was found and undone" in p.ok("list").stderr
    p.ok("rollback", "base", "--yes")
    assert event_status(p.my_name) == {"nightly": "ENABLED", "weekly `odd` name": "DISABLED"}
    assert p.fingerprint() == before
    assert leftovers(p) == []


EVENT_DUMP = (
    b"INSERT INTO `t` VALUES ('/*!50106 EVENT `no` ON SCHEDULE x ON COMPLETION PRESERVE ENABLE DO');\n"
    b"DELIMITER ;;\n"
    b"/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `a``b` ON SCHEDULE EVERY 1 DAY "
    b"STARTS '2030-01-01 00:00:00' ON COMPLETION NOT PRESERVE ENABLE DO DELETE FROM t */ ;;\n"
    b"/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `off` ON SCHEDULE EVERY 1 DAY "
    b"STARTS '2030-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE ON SLAVE DO BEGIN\nSELECT 'ENABLE DO';\nEND */ ;;\n"
    b"DELIMITER ;\n"
)


def test_the_event_filter_disables_each_enabled_event_wherever_the_chunks_are_cut() -> None:
    expected = EVENT_DUMP.replace(b"NOT PRESERVE ENABLE DO DELETE", b"NOT PRESERVE DISABLE DO DELETE")
    assert expected != EVENT_DUMP
    for size in [1, 2, 7, 15, 16, 64, len(EVENT_DUMP)]:
        f = DisabledEvents()
        out = b"".join(f.chunks(EVENT_DUMP[i : i + size] for i in range(0, len(EVENT_DUMP), size)))
        # The first line is a row whose text looks like an event: only a line that starts an event is touched.
        assert (out, f.enabled) == (expected, ["a`b"]), size


ROLLBACK_POINTS = [
    "mysql.after-create-scratch",
    "rollback.after-restore",
    "mysql.before-drop-triggers",
    "mysql.before-rename",
    "mysql.after-rename",
    "mysql.after-programs",
    "rollback.after-db-swap",
    "rollback.during-file-swap",
    "rollback.before-finish",
    "rollback.after-finish",
]


@pytest.mark.sweep
@pytest.mark.parametrize("point", ROLLBACK_POINTS)
def test_kill_at_every_point_of_the_swap_is_wholly_old_or_new(mysql_shop: Project, point: str) -> None:
    p = with_programs(mysql_shop)
    p.ok("save", "base")
    want_new, new_files = p.fingerprint(), p.migration_files()
    change_everything(p)
    old, old_files = p.fingerprint(), p.migration_files()
    res = p.dbsnap("rollback", "base", "--yes", env={"DBSNAP_FAULT": f"{point}:kill"})
    assert res.returncode == -9, res.stderr
    p.ok("list")  # any locked command recovers first
    state = (p.fingerprint(), p.migration_files())
    assert state in ((old, old_files), (want_new, new_files)), point
    assert p.store.joinpath("journal.json").exists() is False
    assert leftovers(p) == []


@pytest.mark.sweep
def test_kill_during_undo_is_undone_by_the_next_command(mysql_shop: Project) -> None:
    """A rollback that fails right after its swap is undone; a kill inside that undo is undone again next time."""
    p = with_programs(mysql_shop)
    p.ok("save", "base")
    change_everything(p)
    old, old_files = p.fingerprint(), p.migration_files()
    res = p.dbsnap(
        "rollback", "base", "--yes", env={"DBSNAP_FAULT": "rollback.after-db-swap:raise,mysql.after-unrename:kill"}
    )
    assert res.returncode == -9, res.stderr
    p.ok("list")
    assert (p.fingerprint(), p.migration_files()) == (old, old_files)
    assert leftovers(p) == []


def test_a_reset_whose_migrate_fails_halfway_brings_back_the_exact_state(mysql_shop: Project) -> None:
    p = with_programs(mysql_shop)
    before = (p.fingerprint(), p.migration_files())
    models = p.root / "orders" / "models.py"
    # A model the server refuses at CREATE TABLE (its table name is longer than 64 characters): migrate creates
    # the accounts and catalog tables and orders' first, then fails, leaving half a schema (DDL is not
    # transactional).
    models.write_text(
        models.read_text() + "\n\nclass Voucher(models.Model):\n    code = models.TextField()\n\n"
        "    class Meta:\n        db_table = 'voucher_" + "x" * 60 + "'\n"
    )
    res = p.dbsnap("reset", "--yes")
    assert res.returncode == 7, res.stderr
    assert "reset failed at [5/7] migrate" in res.stderr
    assert "Incorrect table name 'voucher_" in res.stderr  # the server's refusal, after the other apps' tables
    assert "rolled back to the safety snapshot pre-reset-" in res.stderr
    assert (p.fingerprint(), p.migration_files()) == before
    assert leftovers(p) == []


@pytest.mark.slow
def test_reset_on_the_example_project(mysql_shop: Project) -> None:
    p = with_programs(mysql_shop)
    before = (p.fingerprint(), p.migration_files())
    res = p.ok("reset", "--yes")
    assert "[7/7] verify ... done (" in res.stderr
    rows = set(p.sql("SELECT app, name FROM django_migrations WHERE app IN ('accounts', 'catalog', 'orders')"))
    assert rows == {("accounts", "0001_initial"), ("catalog", "0001_initial"), ("orders", "0001_initial")}
    assert p.sql("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
                 "TABLE_NAME IN ('gadget', 'gadget_log')") == [(0,)]  # fmt: skip
    assert p.sql("SELECT count(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()") == [(0,)]
    assert leftovers(p) == []
    [safety] = [s["name"] for s in json.loads(p.ok("list", "--json").stdout) if s["origin"] == "pre-reset"]
    p.ok("rollback", safety, "--yes")
    assert (p.fingerprint(), p.migration_files()) == before


# -- bad input: one line and an exit code each, nothing changed ------------------------------------------------


def one_error_line(res: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert res.returncode == code, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def test_bad_credentials_server_and_tools_fail_with_one_line(mysql_shop: Project, tmp_path: Path) -> None:
    p = mysql_shop
    p.ok("save", "base")
    before, store = p.fingerprint(), sorted(x.name for x in p.store.iterdir())
    env_file = (p.root / ".env").read_text()
    (p.root / ".env").write_text(env_file + "DB_PASSWORD=wrong\n")
    one_error_line(p.dbsnap("save", "x"), 5, "cannot connect to MySQL", "Access denied")
    (p.root / ".env").write_text(env_file.replace(f"DB_PORT={MY['port']}", "DB_PORT=1"))
    one_error_line(p.dbsnap("rollback", "base", "--yes"), 5, "cannot connect to MySQL", ":1 ")
    (p.root / ".env").write_text(env_file)
    one_error_line(p.dbsnap("save", "x", env={"DBSNAP_MYSQLDUMP": str(tmp_path / "no-such-dump")}), 5, "not found")
    bare = tmp_path / "bin"
    bare.mkdir()
    one_error_line(p.dbsnap("rollback", "base", "--yes", env={"PATH": str(bare)}), 5, "not found on PATH")
    assert p.fingerprint() == before
    assert sorted(x.name for x in p.store.iterdir()) == store


def test_role_without_privileges_is_refused_before_anything_changes(mysql_shop: Project) -> None:
    p = with_programs(mysql_shop)
    p.ok("save", "base")
    change_everything(p)
    before, files = p.fingerprint(), p.migration_files()
    user = f"dbsnap_t_{p.my_name[-8:]}"
    run_sql(
        p,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'",
        f"GRANT SELECT, LOCK TABLES ON `{p.my_name}`.* TO '{user}'@'%'",
    )
    try:
        env = (p.root / ".env").read_text().replace(f"DB_USER={MY['user']}", f"DB_USER={user}")
        (p.root / ".env").write_text(env + "DB_PASSWORD=pw\n")
        line = one_error_line(p.dbsnap("rollback", "base", "--yes"), 5, "may not create dbsnap's scratch schemas")
        assert "nothing was changed" in line
        res = p.dbsnap("doctor")
        assert "warn  default: scratch schemas" in res.stdout and "GRANT ALL ON" in res.stdout
        assert p.fingerprint() == before and p.migration_files() == files
        assert leftovers(p) == []
    finally:
        run_sql(p, f"DROP USER IF EXISTS '{user}'@'%'")


@pytest.mark.slow  # the main suite's budget: make test-faults runs it
def test_privileges_held_through_a_default_role_count(mysql_shop: Project) -> None:
    """information_schema shows an account's own grants only: a user whose every privilege comes from its default
    role (and a role granted to that role) must be able to roll back, and doctor must say so."""
    p = with_programs(mysql_shop)
    p.ok("save", "base")
    before = p.fingerprint()
    change_everything(p)
    tag = p.my_name[-8:]
    user, role, inner = f"dbsnap_u_{tag}", f"dbsnap_r_{tag}", f"dbsnap_i_{tag}"
    pattern = p.my_name[:40].replace("_", "\\_") + "\\_dbsnap\\_%"
    run_sql(
        p,
        f"CREATE ROLE {role}",
        f"CREATE ROLE {inner}",
        f"GRANT ALL ON `{p.my_name}`.* TO {role}",
        f"GRANT ALL ON `{pattern}`.* TO {inner}",
        f"GRANT PROCESS, CONNECTION ADMIN ON *.* TO {role}",
        f"GRANT SELECT ON mysql.proc TO {role}",  # the programs' definer is root: the dump tool reads them there
        f"GRANT {inner} TO {role}",
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'",
        f"GRANT {role} TO '{user}'@'%'",
        f"SET DEFAULT ROLE {role} FOR '{user}'@'%'",
    )
    try:
        env = (p.root / ".env").read_text().replace(f"DB_USER={MY['user']}", f"DB_USER={user}")
        (p.root / ".env").write_text(env + "DB_PASSWORD=pw\n")
        doctor = p.dbsnap("doctor").stdout
        for check in ("default: scratch schemas", "default: live schema", "default: terminate sessions"):
            assert f"ok    {check}" in doctor, doctor
        # The programs were made by root: recreating them with their definer is what this role may not do yet.
        assert "warn  default: definers" in doctor and "GRANT SET USER ON *.*" in doctor, doctor
        line = one_error_line(p.dbsnap("rollback", "base", "--yes"), 8, "SET USER")
        assert "nothing was changed" in line
        run_sql(p, f"GRANT SET USER ON *.* TO {role}")
        assert "ok    default: definers" in p.dbsnap("doctor").stdout
        p.ok("rollback", "base", "--yes")
        assert p.fingerprint() == before
        assert leftovers(p) == []
    finally:
        run_sql(p, f"DROP USER IF EXISTS '{user}'@'%'", f"DROP ROLE IF EXISTS {role}", f"DROP ROLE IF EXISTS {inner}")


# -- the engine's library face ---------------------------------------------------------------------------------


def engine(name: str):
    db = Database(alias="default", kind="mysql", name=name, host=MY["host"], port=MY["port"], user=MY["user"])
    return engine_for(db, {"PATH": "/usr/bin:/bin"})


def test_describe_schema_sees_what_counts_and_scratch_is_dropped(mysql_shop: Project) -> None:
    p = with_programs(mysql_shop)
    e = engine(p.my_name)
    live = e.describe_schema()
    gadget = live.tables["gadget"]
    assert gadget.columns["id"].identity == "auto_increment"
    assert gadget.columns["price"].default == "1.50" and gadget.columns["price"].type == "decimal(8,2)"
    assert "UNIQUE INDEX (name) USING BTREE" in gadget.indexes
    assert any(
        c.startswith("FOREIGN KEY (gadget_id) REFERENCES gadget(id)") for c in live.tables["gadget_log"].constraints
    )
    assert set(live.extras) >= {"view", "trigger", "function", "procedure", "event"}
    # A copy in a scratch schema reads the same; a changed column is named.
    scratch = e.create_scratch()
    try:
        from conftest import copy_mysql_schema

        copy_mysql_schema(p.my_name, scratch)
        assert compare(live, e.describe_schema(scratch)) == []
        run_sql(p, "ALTER TABLE gadget MODIFY name VARCHAR(40) NULL")
        diffs = compare(e.describe_schema(scratch), e.describe_schema())
        assert [d.object for d in diffs] == ["gadget.name"]
    finally:
        e.drop_scratch(scratch)
    assert leftovers(p) == []


def test_replace_migration_rows_is_one_transaction(mysql_shop: Project, monkeypatch) -> None:
    p = mysql_shop
    e = engine(p.my_name)
    before = p.sql("SELECT app, name FROM django_migrations ORDER BY id")
    monkeypatch.setenv("DBSNAP_FAULT", "mysql.before-migration-rows-commit:raise")
    with pytest.raises(RuntimeError):
        e.replace_migration_rows(["orders", "catalog"], [("orders", "0001_squashed")])
    assert p.sql("SELECT app, name FROM django_migrations ORDER BY id") == before
    monkeypatch.delenv("DBSNAP_FAULT")
    e.replace_migration_rows(["orders", "catalog"], [("orders", "0001_squashed"), ("catalog", "0001_initial")])
    rows = p.sql("SELECT app, name FROM django_migrations WHERE app IN ('orders', 'catalog') ORDER BY id")
    assert rows == [("orders", "0001_squashed"), ("catalog", "0001_initial")]
    assert e.migration_rows() == [list(r) for r in p.sql("SELECT app, name FROM django_migrations ORDER BY id")]


@pytest.mark.slow
def test_example_project_migrates_from_nothing_on_mysql(mysql_server, tmp_path: Path) -> None:
    """The README's commands: a fresh schema, migrate, seed, save, rollback."""
    with fresh_mysql_database() as name:
        p = mysql_project(tmp_path / "shop", name)
        p.manage("migrate", "-v0")
        p.manage("seed", "--scale", "1")
        fp = p.fingerprint()
        p.ok("save", "first")
        p.manage("seed", "--scale", "1")
        started = time.monotonic()
        p.ok("rollback", "first", "--yes")
        assert time.monotonic() - started < 60
        assert p.fingerprint() == fp


@pytest.mark.slow  # main-suite budget: make test-faults runs it
def test_save_under_concurrent_writes_records_the_counts_of_its_dump(mysql_shop: Project) -> None:
    """The row counts in the manifest are those of the dump itself, however busy the application is: verify
    --deep restores the dump and compares them."""
    p = with_programs(mysql_shop)
    stop = threading.Event()
    written = []

    def writer() -> None:
        c = my_admin(p.my_name)
        try:
            while not stop.is_set():
                c.cursor().execute("INSERT INTO gadget (name) VALUES (%s)", (f"w{len(written)}",))
                written.append(1)
        finally:
            c.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.2)
        p.ok("save", "busy")
        done = len(written)
    finally:
        stop.set()
        t.join()
    assert done > 20  # the writer really ran during the save
    assert "ok      busy (deep)" in p.ok("verify", "busy", "--deep").stdout
    tables = json.loads((p.store / "busy" / "manifest.json").read_text())["databases"]["default"]["tables"]
    assert 2 < tables["gadget"] == tables["gadget_log"] < 2 + len(written)  # the trigger's rows with their own


@pytest.mark.slow  # main-suite budget: make test-faults runs it
def test_a_session_holding_a_lock_is_named_after_the_bound(mysql_shop: Project) -> None:
    p = mysql_shop
    holder = my_admin(p.my_name)
    try:
        holder.cursor().execute("LOCK TABLES orders_order WRITE")
        started = time.monotonic()
        res = p.dbsnap("save", "x", env={"DBSNAP_DB_LOCK_TIMEOUT": "1"})
        line = one_error_line(res, 5, "gave up after 1 s (db-lock-timeout)", "nothing was changed")
        assert f"id {holder.thread_id()} " in line
        assert time.monotonic() - started < 20
    finally:
        holder.close()
    assert not (p.store / "x").exists()
