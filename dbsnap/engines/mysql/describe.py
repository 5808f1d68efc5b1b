"""MySQL/MariaDB schema as :mod:`dbsnap.schema` describes it, read from ``information_schema``, and the scratch
schemas a history is migrated into from nothing.

Per table: columns (``COLUMN_TYPE`` with length/precision/unsigned, nullability, default, ``auto_increment`` or
generated expression as identity, collation when it is not the schema's default), constraints by definition
(foreign keys with their rules, CHECK clauses; their names left out), indexes by definition without their names
(PRIMARY, UNIQUE, prefix lengths, FULLTEXT/SPATIAL, descending parts). MariaDB sequences are ``sequences``;
views, triggers, routines and events are ``extras`` (their bodies as the server keeps them).
"""

from __future__ import annotations

import secrets

import MySQLdb

from ...errors import ExternalError
from ...schema import Column, Schema, Table
from .connection import error_text, qi


def _default(value: str | None, nullable: bool, mariadb: bool) -> str | None:
    # MariaDB shows a literal default quoted ('x') and "no default" of a nullable column as the word NULL;
    # MySQL shows the bare value and NULL for none. Both are brought to MariaDB's spelling.
    if value is None or (mariadb and value == "NULL"):
        return None
    if mariadb:
        return value
    if value.upper().startswith(("CURRENT_TIMESTAMP", "NOW(")) or value.startswith("("):
        return value.lower()
    return "'" + value.replace("'", "''") + "'"


def describe(conn: MySQLdb.Connection, schema: str, mariadb: bool) -> Schema:
    cur = conn.cursor()

    def rows(sql: str, *args) -> list[tuple]:
        cur.execute(sql, (schema, *args))
        return list(cur.fetchall())

    out = Schema(engine="mysql")
    default_coll = rows("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s")
    base_coll = default_coll[0][0] if default_coll else ""
    for name, ttype in rows("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"):
        if ttype == "SEQUENCE":
            out.sequences.add(name)
        elif ttype in ("BASE TABLE", "SYSTEM VERSIONED"):
            out.tables[name] = Table()
    for table, col, ctype, nullable, default, extra, coll, gen in rows(
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, COLLATION_NAME, "
        "GENERATION_EXPRESSION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
    ):
        if table not in out.tables:
            continue
        null = nullable == "YES"
        extra = (extra or "").lower()
        ident = "auto_increment" if "auto_increment" in extra else ""
        if gen:
            ident = ("stored " if "stored" in extra or "persistent" in extra else "virtual ") + gen
        elif "on update" in extra:
            ident = extra[extra.index("on update") :].strip()
        out.tables[table].columns[col] = Column(
            ctype, null, None if gen else _default(default, null, mariadb), ident, "" if coll == base_coll else coll
        )
    fks: dict[tuple[str, str], list] = {}
    for table, cname, col, rtable, rcol, upd, dele in rows(
        "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, "
        "r.UPDATE_RULE, r.DELETE_RULE FROM information_schema.KEY_COLUMN_USAGE k "
        "JOIN information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA "
        "AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME "
        "WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL ORDER BY k.ORDINAL_POSITION"
    ):
        fks.setdefault((table, cname), []).append((col, rtable, rcol, upd, dele))
    for (table, _), parts in fks.items():
        cols = ", ".join(p[0] for p in parts)
        refs = ", ".join(p[2] for p in parts)
        rules = f"ON UPDATE {parts[0][3]} ON DELETE {parts[0][4]}"
        definition = f"FOREIGN KEY ({cols}) REFERENCES {parts[0][1]}({refs}) {rules}"
        if table in out.tables:
            out.tables[table].constraints[definition] += 1
    for table, clause in rows(
        "SELECT c.TABLE_NAME, c.CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS c "
        "WHERE c.CONSTRAINT_SCHEMA = %s AND c.TABLE_NAME IS NOT NULL"
        if mariadb
        else "SELECT t.TABLE_NAME, c.CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS c "
        "JOIN information_schema.TABLE_CONSTRAINTS t ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA "
        "AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND t.CONSTRAINT_TYPE = 'CHECK' WHERE c.CONSTRAINT_SCHEMA = %s"
    ):
        if table in out.tables:
            out.tables[table].constraints["CHECK (" + " ".join(str(clause).split()) + ")"] += 1
    indexes: dict[tuple[str, str], list] = {}
    for table, iname, non_unique, col, sub, itype, coll, expr in rows(
        "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE, COLLATION, "
        + ("NULL" if mariadb else "EXPRESSION")
        + " FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
    ):
        indexes.setdefault((table, iname), []).append((non_unique, col or f"({expr})", sub, itype, coll))
    for (table, iname), parts in indexes.items():
        if table not in out.tables:
            continue
        cols = ", ".join(f"{c}{f'({s})' if s else ''}{' DESC' if k == 'D' else ''}" for _, c, s, _, k in parts)
        kind = "PRIMARY KEY" if iname == "PRIMARY" else ("INDEX" if int(parts[0][0]) else "UNIQUE INDEX")
        using = parts[0][3]
        kind = {"FULLTEXT": "FULLTEXT INDEX", "SPATIAL": "SPATIAL INDEX"}.get(using, kind)
        out.tables[table].indexes[f"{kind} ({cols}) USING {using}"] += 1
    extras: dict[str, dict[str, str]] = {}
    for name, body in rows("SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"):
        # The server writes the schema's own name into the stored definition: taken out, so the same view in
        # another schema (a scratch copy) reads the same.
        extras.setdefault("view", {})[name] = " ".join(str(body).replace(qi(schema) + ".", "").split())
    for name, table, timing, event, body in rows(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT "
        "FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
    ):
        extras.setdefault("trigger", {})[name] = f"{timing} {event} ON {table}: " + " ".join(str(body).split())
    for kind, name, body in rows(
        "SELECT ROUTINE_TYPE, ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = %s"
    ):
        extras.setdefault(str(kind).lower(), {})[name] = " ".join(str(body or "").split())
    for name, body in rows(
        "SELECT EVENT_NAME, EVENT_DEFINITION FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"
    ):
        extras.setdefault("event", {})[name] = " ".join(str(body or "").split())
    out.extras = extras
    return out


class SchemaMixin:
    """Schema description and scratch schemas of :class:`~dbsnap.engines.mysql.engine.MySQLEngine`."""

    def describe_schema(self, target: str | None = None) -> Schema:
        schema = target or self.db.name
        conn = self.connect(None)
        try:
            return describe(conn, schema, self.is_mariadb(conn))
        except MySQLdb.Error as e:
            raise ExternalError(f"describing the schema of {schema!r} failed: {error_text(e)}") from e
        finally:
            conn.close()

    def create_scratch(self) -> str:
        """``<live>_dbsnap_scratch_<hex>``, empty, with the live schema's character set and collation."""
        name = f"{self.db.name[:40]}_dbsnap_scratch_{secrets.token_hex(3)}"
        conn = self.connect(None)
        try:
            self._create(conn, name)
        except MySQLdb.Error as e:
            raise ExternalError(f"cannot create the scratch database {name!r}: {error_text(e)}") from e
        finally:
            conn.close()
        return name

    def drop_scratch(self, target: str) -> None:
        self.drop_schema(target)
