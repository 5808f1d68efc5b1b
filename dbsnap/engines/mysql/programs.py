"""Views, triggers, stored routines and events of one schema: read as the statements that create them, dropped,
and created again in another schema.

``RENAME TABLE`` moves tables between schemas, not these: triggers refuse to change schema (so they are dropped
before the swap), routines and events belong to their schema, and views name their tables without a schema (so
the live schema's views would keep showing the new tables). The swap records both schemas' programs in the
journal before it drops anything, then installs the snapshot's in the live schema (:mod:`.restore`).

Each program is a dict: ``kind``, ``name``, ``sql`` (the CREATE statement as the server shows it, with its
DEFINER), and the session settings it was created under (``sql_mode``, ``charset``, ``collation``, and for events
``time_zone``), which change what the body means and are restored around its CREATE.
"""

from __future__ import annotations

import json
import re

import MySQLdb
import MySQLdb.cursors

from .connection import qi

# Order of creation: routines before the views and triggers that call them, events last.
KINDS = ("function", "procedure", "view", "trigger", "event")

# Python codecs for the character sets a program's statement may have been sent in.
_CODECS = {"utf8": "utf-8", "utf8mb3": "utf-8", "utf8mb4": "utf-8", "latin1": "cp1252", "ascii": "ascii"}


def _rows(conn: MySQLdb.Connection, sql: str, args: tuple = ()) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(sql, args)
    return list(cur.fetchall())


def names(conn: MySQLdb.Connection, schema: str) -> list[tuple[str, str]]:
    """(kind, name) of every program in ``schema``, in creation order (triggers in their firing order)."""
    out = [
        (kind.lower(), name)
        for kind, name in _rows(
            conn,
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
            "AND ROUTINE_TYPE IN ('FUNCTION', 'PROCEDURE') ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
            (schema,),
        )
    ]
    out += [
        ("view", r[0])
        for r in _rows(
            conn, "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY 1", (schema,)
        )
    ]
    out += [
        ("trigger", r[0])
        for r in _rows(
            conn,
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
            "ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER",
            (schema,),
        )
    ]
    out += [
        ("event", r[0])
        for r in _rows(
            conn, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s ORDER BY 1", (schema,)
        )
    ]
    return sorted(out, key=lambda kn: KINDS.index(kn[0]))


def read(conn: MySQLdb.Connection, schema: str) -> list[dict]:
    """Every program of ``schema`` as the statement that creates it. The connection's default schema is set to
    ``schema``, so the server shows names in it without the schema (the statements then fit any schema)."""
    conn.select_db(schema)
    out = []
    for kind, name in names(conn, schema):
        cur = conn.cursor(MySQLdb.cursors.DictCursor)
        cur.execute(f"SHOW CREATE {kind.upper()} {qi(name)}")
        row = cur.fetchone()
        if row is None:
            continue
        key = {
            "view": "Create View",
            "trigger": "SQL Original Statement",
            "function": "Create Function",
            "procedure": "Create Procedure",
            "event": "Create Event",
        }[kind]
        if row.get(key) is None:
            # The server hides a routine's body from a role that is neither its definer nor privileged.
            raise MySQLdb.OperationalError(1227, f"cannot read the definition of {kind} {name!r} in {schema!r}")
        program = {
            "kind": kind,
            "name": name,
            "sql": row[key],
            "charset": row.get("character_set_client") or "utf8mb4",
            "collation": row.get("collation_connection") or "utf8mb4_general_ci",
        }
        if "sql_mode" in row:
            program["sql_mode"] = row["sql_mode"]
        if kind == "event":
            program["time_zone"] = row.get("time_zone") or "SYSTEM"
        out.append(program)
    return out


def drop_all(conn: MySQLdb.Connection, schema: str, kinds: tuple[str, ...] = KINDS) -> None:
    """Drop every program of ``kinds`` in ``schema`` (idempotent)."""
    for kind, name in reversed(names(conn, schema)):
        if kind in kinds:
            conn.cursor().execute(f"DROP {kind.upper()} IF EXISTS {qi(schema)}.{qi(name)}")


def install(conn: MySQLdb.Connection, schema: str, programs: list[dict]) -> None:
    """Make ``schema``'s programs exactly ``programs``: drop what is there, create each under its own session
    settings. Idempotent, so a killed run's recovery simply runs it again."""
    drop_all(conn, schema)
    conn.select_db(schema)
    cur = conn.cursor()
    cur.execute("SELECT @@SESSION.sql_mode, @@SESSION.time_zone")
    mode, zone = cur.fetchone()
    pending = list(programs)
    try:
        while pending:
            failed, first_error = [], None
            for p in pending:
                try:
                    _create(conn, p)
                except MySQLdb.Error as e:
                    # A view on a view not created yet: try it again after the others.
                    if p["kind"] != "view":
                        raise
                    failed.append(p)
                    first_error = first_error or e
            if len(failed) == len(pending):
                assert first_error is not None
                raise first_error
            pending = failed
    finally:
        cur = conn.cursor()
        cur.execute("SET NAMES utf8mb4")
        cur.execute("SET SESSION sql_mode = %s, time_zone = %s", (mode, zone))


def _create(conn: MySQLdb.Connection, p: dict) -> None:
    cur = conn.cursor()
    if "sql_mode" in p:
        cur.execute("SET SESSION sql_mode = %s", (p["sql_mode"],))
    if "time_zone" in p:
        cur.execute("SET SESSION time_zone = %s", (p["time_zone"],))
    codec = _CODECS.get(p["charset"])
    if codec is None or not re.fullmatch(r"[A-Za-z0-9_]+", p.get("collation", "")):
        codec, charset, collation = "utf-8", "utf8mb4", "utf8mb4_general_ci"
    else:
        charset, collation = p["charset"], p["collation"]
    cur.execute(f"SET character_set_client = {charset}, collation_connection = {collation}")
    try:
        cur.execute(p["sql"].encode(codec))
    finally:
        cur.execute("SET NAMES utf8mb4")


# The programs of both sides of a swap are kept on the server, in a table of the old schema (dbsnap's own) named
# with the swap's token (so no live table moved there can clash), never in the journal file: recovery creates them
# again, and SQL read back from a file on disk is not executed.
STORE_PREFIX = "dbsnap_programs_"


def store_table(old_schema: str) -> str:
    return STORE_PREFIX + old_schema.rsplit("_", 1)[-1]


def save(conn: MySQLdb.Connection, schema: str, sides: dict[str, list[dict]]) -> None:
    """Write ``sides`` ({"old": [...], "new": [...]}) into the old schema ``schema``'s program table, replacing
    it, in one transaction."""
    cur = conn.cursor()
    table = f"{qi(schema)}.{qi(store_table(schema))}"
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (side VARCHAR(3) NOT NULL, seq INT NOT NULL, program LONGTEXT NOT NULL, "
        "PRIMARY KEY (side, seq)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )
    conn.begin()
    try:
        cur.execute(f"DELETE FROM {table}")
        rows = [(side, i, json.dumps(p)) for side, progs in sides.items() for i, p in enumerate(progs)]
        if rows:
            cur.executemany(f"INSERT INTO {table} (side, seq, program) VALUES (%s, %s, %s)", rows)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def load(conn: MySQLdb.Connection, schema: str, side: str) -> list[dict] | None:
    """The programs of ``side`` kept in ``schema``; None when the table is not there."""
    cur = conn.cursor()
    table = store_table(schema)
    cur.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (schema, table))
    if not cur.fetchall():
        return None
    cur.execute(f"SELECT program FROM {qi(schema)}.{qi(table)} WHERE side = %s ORDER BY seq", (side,))
    return [json.loads(r[0]) for r in cur.fetchall()]
