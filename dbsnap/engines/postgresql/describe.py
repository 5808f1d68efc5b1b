"""PostgreSQL for reset's proof and prerequisites: the schema as :mod:`dbsnap.schema` describes it, the
extensions/collations/text-search objects a fresh history must create again, and the scratch database a history
is migrated into from nothing."""

from __future__ import annotations

import secrets

import psycopg

from ... import faults
from ...errors import ExternalError
from ...schema import Column, Prerequisite, Schema, Table
from ..base import first_line
from .create import create_like, db_props
from .statements import OBJECT_DEFINITIONS_SQL, PREREQUISITES_SQL, SCHEMA_SQL


class SchemaMixin:
    """Schema description and scratch databases of :class:`~dbsnap.engines.postgresql.engine.PostgreSQLEngine`."""

    def prerequisites(self) -> list[Prerequisite]:
        with self.connect() as conn:
            return [Prerequisite(kind, name, facts) for kind, name, facts in conn.execute(PREREQUISITES_SQL)]

    def describe_schema(self, target: str | None = None) -> Schema:
        schema = Schema(engine="postgresql")
        with self.connect(target) as conn:
            try:
                q = {k: conn.execute(v).fetchall() for k, v in SCHEMA_SQL.items()}
                prereq = conn.execute(PREREQUISITES_SQL).fetchall()
            except psycopg.Error as e:
                raise ExternalError(
                    f"describing the schema of {target or self.db.name!r} failed: {first_line(e)}"
                ) from e
        for (name,) in q["tables"]:
            schema.tables[name] = Table()
        for table, col, ctype, nullable, default, ident, coll, owns_seq in q["columns"]:
            if owns_seq and not ident and (default or "").startswith("nextval("):
                # A serial column: its default names its sequence, and names do not count (a renamed table
                # keeps the old sequence name); what counts is that the column counts by itself.
                default, ident = None, "serial"
            schema.tables[table].columns[col] = Column(ctype, nullable, default, ident, coll)
        for table, definition in q["constraints"]:
            schema.tables[table].constraints[definition] += 1
        for table, definition in q["indexes"]:
            schema.tables[table].indexes[definition] += 1
        schema.sequences = {r[0] for r in q["sequences"]}
        extras: dict[str, dict[str, str]] = {}
        for kind, name, definition in q["views"]:
            extras.setdefault(kind, {})[name] = definition
        for kind, rows in (("function", q["functions"]), ("trigger", q["triggers"])):
            for name, definition in rows:
                extras.setdefault(kind, {})[name] = definition
        for kind, name, facts in prereq:
            # The ICU library's collation version is the server's, not the history's: it does not count.
            facts = {k: v for k, v in facts.items() if k != "collversion"}
            extras.setdefault(kind, {})[name] = ", ".join(f"{k}={v}" for k, v in sorted(facts.items()))
        schema.extras = extras
        return schema

    def object_definitions(self) -> list[tuple[str, str, str, str]]:
        with self.connect() as conn:
            try:
                return [tuple(r) for r in conn.execute(OBJECT_DEFINITIONS_SQL)]
            except psycopg.Error as e:
                raise ExternalError(f"reading the definitions of {self.db.name!r} failed: {first_line(e)}") from e

    def replace_migration_rows(self, apps: list[str], rows: list[tuple[str, str]]) -> None:
        """One transaction (``psycopg``'s block commits at its end, rolls back on any error; a killed client's
        open transaction is rolled back by the server)."""
        outside = sorted({a for a, _ in rows} - set(apps))
        if outside:
            raise ValueError(f"rows of apps not being replaced: {outside}")
        try:
            with self.connect(autocommit=False) as conn:
                conn.execute("DELETE FROM django_migrations WHERE app = ANY(%s)", (list(apps),))
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, now())",
                        [(a, n) for a, n in rows],
                    )
                faults.point("keep-data.during-history-rewrite")  # inside the transaction, before COMMIT
        except psycopg.Error as e:
            raise ExternalError(
                f"rewriting django_migrations of {self.db.name!r} failed (nothing was changed): {first_line(e)}"
            ) from e

    def can_create_scratch(self) -> bool:
        return self.restore_mode() == "swap"

    def create_scratch(self) -> str:
        """``<live>_dbsnap_scratch_<hex>``, empty (from template0), with the live database's owner and locale."""
        name = f"{self.db.name[:40]}_dbsnap_scratch_{secrets.token_hex(3)}"
        with self.maintenance() as conn:
            props = db_props(conn, self.db.name)
            if props is None:
                raise ExternalError(f"database {self.db.name!r} does not exist at {self.where()}")
            try:
                create_like(conn, props, name, server_major=self.server_major())
            except psycopg.Error as e:
                raise ExternalError(f"cannot create the scratch database {name!r}: {first_line(e)}") from e
        return name

    def drop_scratch(self, target: str) -> None:
        self._drop(target)
