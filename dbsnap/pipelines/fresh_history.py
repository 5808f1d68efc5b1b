"""The fresh history reset writes: whether the project lets ``makemigrations`` write it (checked in the preflight,
before anything is dropped), and the proof that it builds an empty database (part of reset's verify).

The proof migrates a scratch database (PostgreSQL: ``<live>_dbsnap_scratch_<hex>``, made like the live one from
template0; SQLite: a temp file beside the database) from nothing with the regenerated files, and compares its
schema with the reset database's semantically (:mod:`dbsnap.schema`). A history that needs something an empty
database lacks (a collation, an extension) fails to migrate there, or builds another schema: either way the
reset fails, and rolls back.
"""

from __future__ import annotations

import json

from ..context import Context
from ..project.child import MARK, script
from ..project.databases import Database
from ..project.discovery import MigrationFolder, Project
from ..project.manage_steps import manage
from ..schema import Schema, compare, explain


class HistoryError(Exception):
    """The fresh history cannot be written or does not build an empty database (``output``: what the child said)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def check_makemigrations_allowed(project: Project, folders: list[MigrationFolder]) -> None:
    """``makemigrations --dry-run`` for the apps to regenerate: a project whose own guard refuses the command
    (NetBox's ``DEVELOPER=False``) is told so, with the project's own message, before anything is dropped. Model
    changes without migrations are fine here: writing them is what reset does."""
    out = manage(project, "makemigrations", "--dry-run", "--noinput", *[f.app for f in folders])
    if out.returncode != 0:
        said = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
        raise HistoryError(
            f"the project refuses 'manage.py makemigrations' ({said[-1] if said else f'exit code {out.returncode}'})"
            "; reset regenerates migrations with it: enable what the project's guard asks for, then run reset again",
            out.stdout,
        )


def _migrate_scratch(project: Project, alias: str, target: str) -> None:
    code = script("migrate_scratch", ALIAS=json.dumps(alias)[1:-1], NAME=json.dumps(target)[1:-1])
    out = manage(project, "shell", "-c", code)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    said = line[len(MARK) :].strip() if line else ""
    if out.returncode != 0 or said != "ok":
        last = said or (out.stdout.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        raise HistoryError(f"the fresh history cannot build an empty database: {last}", out.stdout)


def scratch_schema(ctx: Context, db: Database) -> Schema:
    """The schema the migration files on disk build from nothing: a scratch database made for ``db``, migrated
    and described, removed in every case (HistoryError when the history does not build)."""
    engine = ctx.engine(db)
    target = engine.create_scratch()
    try:
        _migrate_scratch(ctx.project, db.alias, target)
        return engine.describe_schema(target)
    finally:
        engine.drop_scratch(target)


def prove(ctx: Context, db: Database) -> str | None:
    """Migrate a scratch database from nothing and compare it with the reset one; HistoryError when the history
    does not build it, or builds another schema. Returns a note when the proof could not be made (a role that
    may not create databases), None when it passed. The scratch database is removed in every case."""
    engine = ctx.engine(db)
    if not engine.can_create_scratch():
        return f"database {db.alias!r}: the role may not create databases, so no scratch build proved the history"
    diffs = compare(scratch_schema(ctx, db), engine.describe_schema())
    if diffs:
        raise HistoryError(
            f"database {db.alias!r}: the fresh history builds another schema on an empty database than the reset "
            f"one has (expected = empty database + fresh history): {explain(diffs)}"
        )
    return None
