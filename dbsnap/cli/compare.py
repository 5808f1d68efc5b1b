"""The comparison commands, read-only: status (live state against a snapshot) and diff (two snapshots)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from .. import api
from ..report import human_bytes
from .common import Obj, json_opt, out

if TYPE_CHECKING:
    from ..pipelines import compare


def _mig(r: tuple[str, str]) -> str:
    return f"{r[0]}.{r[1]}"


def _rows_json(rows: Iterable[tuple[str, str]]) -> list[list[str]]:
    return [list(r) for r in rows]


def _files_json(f: compare.FileChanges) -> dict:
    return {"added": f.added, "removed": f.removed, "changed": f.changed}


def _file_lines(f: compare.FileChanges, indent: str = "  ") -> list[str]:
    lines = [f"{indent}added    {p}" for p in f.added]
    lines += [f"{indent}removed  {p}" for p in f.removed]
    lines += [f"{indent}changed  {p}" for p in f.changed]
    return lines


def _counted(what: str, items: list, sign: str, fmt=_mig) -> list[str]:
    return [f"  {what}: {len(items) or 'none'}"] + [f"    {sign} {fmt(x)}" for x in items]


# -- status ---------------------------------------------------------------------------------------------------


def status_json(s: compare.Status) -> dict:
    return {
        "store": s.store,
        "snapshot": {"name": s.snapshot, "created_at": s.created_at} if s.snapshot else None,
        "files": _files_json(s.files) if s.files is not None else None,
        "new_folders": s.new_folders,
        "missing_folders": s.missing_folders,
        "databases": {
            d.alias: {
                "engine": d.engine,
                "applied": d.applied,
                "in_snapshot": d.in_snapshot,
                "migrations_added": _rows_json(d.migrations_added) if d.in_snapshot else None,
                "migrations_removed": _rows_json(d.migrations_removed) if d.in_snapshot else None,
                "unapplied": _rows_json(d.unapplied),
                "stale": _rows_json(d.stale),
                "missing_tables": d.missing_tables,
                "in_sync": d.in_sync,
            }
            for d in s.databases
        },
        "missing_databases": s.missing_databases,
        "checked_by": s.checked_by,
        "files_reason": s.files_reason,
        "in_sync": s.in_sync,
    }


def status_text(s: compare.Status) -> str:
    lines = []
    if s.snapshot is None:
        lines.append(f"no snapshot in {s.store}: only checking whether the database and the migration files agree")
    else:
        lines.append(f"status against snapshot {s.snapshot} (taken {s.created_at})")
        assert s.files is not None
        f = s.files
        if f.empty:
            lines.append(f"migration files: unchanged since {s.snapshot}")
        else:
            lines.append(
                f"migration files since {s.snapshot}: "
                f"{len(f.added)} added, {len(f.removed)} removed, {len(f.changed)} changed"
            )
            lines += _file_lines(f)
        lines += [f"  new folder      {p} (not in the snapshot)" for p in s.new_folders]
        lines += [f"  missing folder  {p} (in the snapshot, gone now)" for p in s.missing_folders]
        lines += [f"database {a}: in the snapshot, no longer defined by the project" for a in s.missing_databases]
    for d in s.databases:
        lines.append(f"database {d.alias} ({d.engine}): {d.applied} applied migrations")
        if s.snapshot is not None:
            if not d.in_snapshot:
                lines.append(f"  not in snapshot {s.snapshot}")
            else:
                lines += _counted(f"applied since {s.snapshot}", d.migrations_added, "+")
                lines += _counted(f"no longer applied since {s.snapshot}", d.migrations_removed, "-")
        lines += _counted("unapplied (file, no row)", d.unapplied, "!")
        lines += _counted("applied with no file (row, no file)", d.stale, "!")
        if d.missing_tables is not None:
            lines += _counted("model tables missing", d.missing_tables, "!", fmt=str)
    scope = (
        "every app, by Django's MigrationLoader"
        if s.checked_by == "django"
        else f"the project's own apps, from the files: {s.files_reason}"
    )
    if s.in_sync:
        lines.append(f"in sync: the database and the migration files agree ({scope})")
    else:
        lines.append(f"OUT OF SYNC: the database and the migration files disagree ({scope})")
    return "\n".join(lines)


@click.command()
@click.option("--against", metavar="NAME", help="Compare with this snapshot instead of the newest ('latest').")
@click.option(
    "--django/--files",
    "use_django",
    default=None,
    help="--django: ask Django's MigrationLoader (a manage.py child process): every app, django.contrib "
    "included, and missing model tables; the default whenever the project's settings import. --files: read the "
    "project's own apps' migration files only (faster, no manage.py); the fallback when the settings do not import.",
)
@json_opt
@click.pass_obj
def status(obj: Obj, against: str | None, use_django: bool | None, as_json: bool) -> None:
    """Show the live state against the newest snapshot (or --against NAME): migration files added, removed or
    changed since; migrations applied or unapplied since; and whether the database and the migration files agree
    right now (unapplied migrations, applied migrations whose file is gone).

    A report: exits 0 whatever it finds (non-zero only when it cannot look). Works without any snapshot.

    \b
    Example:
      dbsnap status
      dbsnap status --against pre-reset --json | jq .in_sync
      dbsnap status --files        # the own apps' files only, without a manage.py child
    """
    result = api.status(obj.ctx("status", as_json=as_json), against, use_django=use_django)
    out(status_json(result) if as_json else status_text(result), as_json)


# -- diff -----------------------------------------------------------------------------------------------------


def _side_json(s: compare.Side) -> dict:
    return {
        "name": s.name,
        "created_at": s.created_at,
        "origin": s.origin,
        "pinned": s.pinned,
        "note": s.note,
        "bytes": s.bytes,
        "files": s.files,
        "migration_files": s.migration_files,
    }


def diff_json(d: compare.Diff) -> dict:
    data = {
        "a": _side_json(d.a),
        "b": _side_json(d.b),
        "files": _files_json(d.files),
        "databases": {
            x.alias: {
                "engine_a": x.engine_a,
                "engine_b": x.engine_b,
                "migrations_added": _rows_json(x.migrations_added),
                "migrations_removed": _rows_json(x.migrations_removed),
                "tables": {
                    t.table: {"a": t.before, "b": t.after, "delta": t.delta, "change": t.kind} for t in x.tables
                },
                "tables_unchanged": x.tables_unchanged,
            }
            for x in d.databases
        },
    }
    if d.patches is not None:
        data["patches"] = d.patches
    return data


def _columns(rows: list[tuple[str, ...]], right: set[int] | None = None) -> list[str]:
    right = right or set()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def diff_text(d: compare.Diff) -> str:
    a, b = d.a, d.b
    head: list[tuple[str, ...]] = [
        ("", a.name, b.name),
        ("created", a.created_at, b.created_at),
        ("origin", a.origin, b.origin),
        ("pinned", "yes" if a.pinned else "no", "yes" if b.pinned else "no"),
        ("size", human_bytes(a.bytes), human_bytes(b.bytes)),
    ]
    for fname in dict.fromkeys([*a.files, *b.files]):
        sa, sb = a.files.get(fname), b.files.get(fname)
        head.append((f"  {fname}", "-" if sa is None else human_bytes(sa), "-" if sb is None else human_bytes(sb)))
    if a.note or b.note:
        head.append(("note", a.note, b.note))
    lines = _columns(head)
    f = d.files
    if f.empty:
        lines.append("migration files: identical")
    else:
        lines.append(f"migration files: {len(f.added)} added, {len(f.removed)} removed, {len(f.changed)} changed")
        lines += _file_lines(f)
    for x in d.databases:
        if x.engine_a is None or x.engine_b is None:
            where = b.name if x.engine_a is None else a.name
            lines.append(f"database {x.alias} ({x.engine_a or x.engine_b}): only in {where}")
        elif x.engine_a != x.engine_b:
            lines.append(f"database {x.alias}: {x.engine_a} in {a.name}, {x.engine_b} in {b.name}")
        else:
            lines.append(f"database {x.alias} ({x.engine_a}):")
        n_add, n_rm = len(x.migrations_added), len(x.migrations_removed)
        lines.append(f"  django_migrations: {n_add} added, {n_rm} removed")
        lines += [f"    + {_mig(r)}" for r in x.migrations_added]
        lines += [f"    - {_mig(r)}" for r in x.migrations_removed]
        kinds = [t.kind for t in x.tables]
        lines.append(
            f"  row counts: {kinds.count('changed')} tables changed, {kinds.count('added')} added, "
            f"{kinds.count('removed')} removed ({x.tables_unchanged} unchanged)"
        )
        if x.tables:
            rows = [
                (
                    f"    {t.table}",
                    "-" if t.before is None else str(t.before),
                    "->",
                    "-" if t.after is None else str(t.after),
                    f"{t.delta:+d}" + ("" if t.kind == "changed" else f" (table {t.kind})"),
                )
                for t in x.tables
            ]
            lines += _columns(rows, right={1, 3})
    return "\n".join(lines)


@click.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--patch", "-p", is_flag=True, help="Also print a unified diff of each changed migration file.")
@json_opt
@click.pass_obj
def diff(obj: Obj, a: str, b: str, patch: bool, as_json: bool) -> None:
    """Compare snapshots A and B ('latest' = the newest): migration files added, removed or changed,
    django_migrations rows added or removed, per-table row counts, sizes and dates.

    Works on the store alone (no project or database needed). --patch reads both migration archives and prints
    a unified diff of each changed file ('patch -p1' applies it in the project root).

    \b
    Example:
      dbsnap diff pre-reset latest
      dbsnap diff nightly-1 nightly-2 --patch
      dbsnap diff pre-reset latest --json | jq .files
    """
    result = api.diff(obj.ctx("diff", as_json=as_json), a, b, patch=patch)
    if as_json:
        out(diff_json(result), True)
        return
    text = diff_text(result)
    if result.patches:
        text += "\n\n" + "".join(result.patches[p] for p in result.files.changed).rstrip("\n")
    out(text, False)
