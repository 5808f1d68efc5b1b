"""``reset --keep-data``: fresh initial migrations for a database that keeps every row, proved before any row of
its history changes.

Six steps: preflight and the safety snapshot (as every reset; no session is ended: nothing is dropped), then
**regenerate** the migrations (as reset, each folder first copied aside), **compare** the schema that the new
files build on a scratch database from nothing with the live one, semantically (:mod:`dbsnap.schema`), then
**rewrite the history** (the project apps' ``django_migrations`` rows replaced by the new files' in one
transaction per database, ``Engine.replace_migration_rows``), then **verify** as reset does. The data is never
touched. When the schemas differ, nothing changes: the old migration files are put back and :class:`SchemaDrift`
(exit 7) carries every difference.

Undo is this pipeline's own, never a restore of the database (other sessions may be writing to it): the old
rows (recorded in the journal before the rewrite) and the copied folders go back. A kill -9 is recovered by the
next command from the journal: finished (verify) when every database already holds the new rows, undone
otherwise. Only the Engine interface is used, so an engine gets keep-data by implementing it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import faults, procs
from ..context import Context
from ..errors import ConfigError, DbsnapError, Interrupted, ResetError, SchemaDrift, UsageError, os_error_text
from ..report import Reporter
from ..schema import Difference, compare, not_regenerated
from ..store.fsutil import fsync_dir, remove_tree
from . import carry_sql
from . import reset as rs
from . import reset_journal as rj
from .fresh_history import HistoryError, scratch_schema
from .rollback import _folder_entry, _unswap_folder
from .save import take_snapshot

MODE = "keep-data"
STEPS = ("preflight", "safety snapshot", "regenerate migrations", "compare schemas", "rewrite history", "verify")


@dataclass
class KeepDataPlan(rs.ResetPlan):
    objects: list[tuple[str, str]] = field(default_factory=list)  # (kind, name): no migration regenerates them
    carry_sql: bool = False


@dataclass
class KeepDataResult(rs.ResetResult):
    history: dict[str, dict[str, int]] = field(default_factory=dict)  # alias -> rows deleted / inserted
    carried_sql: list[str] = field(default_factory=list)  # "trigger orders_order.stamp", written by --carry-sql
    carried_sql_file: str | None = None
    uncarried: list[Difference] = field(default_factory=list)  # in the database, not in the new history


def plan(ctx: Context, opts: rs.ResetOptions) -> KeepDataPlan:
    """Reset's plan and checks, without the drop: no sessions to end, no after-reset steps (they write data)."""
    if opts.superuser or opts.fixtures:
        raise UsageError("--keep-data never writes data: --superuser and --load do not apply")
    if not opts.auto_rollback:
        raise UsageError("--keep-data always puts the old history back on failure: --no-auto-rollback does not apply")
    base = rs.plan(ctx, opts)
    objects: list[tuple[str, str]] = []
    for db in base.databases:
        engine = ctx.engine(db)
        if not engine.can_create_scratch():
            raise ConfigError(
                f"reset --keep-data proves the new history on a scratch database, and the role of {db.alias!r} "
                "may not create databases; nothing was changed",
                hint="grant CREATEDB to the role (the scratch database is dropped afterwards)",
            )
        objects += [(k, n) for k, n, _, _ in engine.object_definitions() if (k, n) not in objects]
    fields = {k: v for k, v in vars(base).items() if k not in ("after", "sessions")}
    return KeepDataPlan(**fields, after=[], objects=objects, carry_sql=opts.carry_sql)


def _backup_folders(ctx: Context, journal: dict) -> None:
    """Copy each migration folder aside whole (staged name, then renamed to the backup name: a backup that
    exists is complete), before anything in it changes."""
    for f in journal["backups"]:
        live, staged, backup = Path(f["live"]), Path(f["staged"]), Path(f["backup"])
        remove_tree(staged)
        remove_tree(backup)  # debris: recovery has already run under this lock
        shutil.copytree(live, staged, symlinks=True)
        fsync_dir(staged)
        staged.rename(backup)
        fsync_dir(live.parent)
    faults.point("keep-data.after-backup")


def _own_rows(ctx: Context, alias: str, apps: list[str]) -> list[list[str]]:
    return [r for r in ctx.engine(ctx.project.databases[alias]).migration_rows() if r[0] in apps]


def _new_rows(result: rs.ResetResult) -> list[tuple[str, str]]:
    """The new files as history rows, in an order migrate could have applied them (number first, then app)."""
    rows = [(app, f[:-3]) for app, files in result.migrations.items() for f in files]
    return sorted(rows, key=lambda r: (r[1][:4], list(result.migrations).index(r[0]), r[1]))


def _compare(ctx: Context, db) -> list[Difference]:
    """What the files on disk build from nothing (expected) against what database ``db`` has (actual)."""
    try:
        return compare(scratch_schema(ctx, db), ctx.engine(db).describe_schema())
    except HistoryError as e:
        raise rs.StepFailed(str(e), e.output) from e


def compare_schemas(ctx: Context, p: KeepDataPlan, result: KeepDataResult) -> None:
    """SchemaDrift unless the new files build, from nothing, the schema each database has. Objects the database
    has and no migration regenerates are listed (``result.uncarried``), or with ``--carry-sql`` written into a
    generated migration and compared again."""
    diffs = {db.alias: not_regenerated(_compare(ctx, db)) for db in p.databases}
    _refuse_drift(diffs)
    apart = {(d.kind, d.object) for _, extras in diffs.values() for d in extras}
    if p.carry_sql and apart:
        objects: list[tuple[str, str, str, str]] = []
        for db in p.databases:
            objects += [o for o in ctx.engine(db).object_definitions() if (o[0], o[1]) in apart and o not in objects]
        result.carried_sql_file = carry_sql.write(ctx.project.root, p.folders, result.migrations, objects)
        result.carried_sql = [f"{k} {n}" for k, n, _, _ in objects]
        faults.point("keep-data.after-carry-sql")
        if objects:  # the comparison includes them now: built from the carried definitions, they must match
            diffs = {db.alias: not_regenerated(_compare(ctx, db)) for db in p.databases}
            _refuse_drift(diffs)
    result.uncarried = [d for _, extras in diffs.values() for d in extras]


def _refuse_drift(diffs: dict[str, tuple[list[Difference], list[Difference]]]) -> None:
    drift = {alias: found for alias, (found, _) in diffs.items() if found}
    if drift:
        n = sum(len(v) for v in drift.values())
        raise SchemaDrift(
            f"the fresh migrations describe another schema than database {', '.join(map(repr, drift))} has "
            f"({n} difference{'s' if n != 1 else ''})",
            drift,
        )


def rewrite_history(ctx: Context, p: KeepDataPlan, result: KeepDataResult, journal: dict) -> None:
    """Replace the apps' history rows on each database in one transaction; the old rows are journaled first."""
    apps = [f.app for f in p.folders]
    new = _new_rows(result)
    journal["history"] = {
        db.alias: {"old": _own_rows(ctx, db.alias, apps), "new": [list(r) for r in new]} for db in p.databases
    }
    journal["apps"] = apps
    ctx.store.write_journal(journal)
    for db in p.databases:
        ctx.engine(db).replace_migration_rows(apps, new)
        result.history[db.alias] = {"deleted": len(journal["history"][db.alias]["old"]), "inserted": len(new)}
        faults.point("keep-data.after-history-rewrite")


def _steps(ctx: Context, p: KeepDataPlan, result: KeepDataResult, journal: dict) -> list[rs.Step]:
    return [
        rs.Step("regenerate migrations", lambda: (_backup_folders(ctx, journal), rs.regenerate(ctx, p, result))),
        rs.Step("compare schemas", lambda: compare_schemas(ctx, p, result)),
        rs.Step("rewrite history", lambda: rewrite_history(ctx, p, result, journal)),
        rs.Step("verify", lambda: result.notes.extend(rs.verify(ctx, p, prove_history=False)), rerunnable=True),
    ]


def run(
    ctx: Context, p: KeepDataPlan, on_step: Callable[[int, str, float | None], None] | None = None
) -> KeepDataResult:
    """Carry out a confirmed plan (the caller holds the store lock); every step after the safety snapshot is
    journaled before it is taken, so a killed run is finished or undone by the next dbsnap command."""
    result = KeepDataResult(safety_snapshot=p.safety_name, lost=p.lost, carried=p.carried)
    report = on_step or (lambda i, name, secs: None)
    journal: dict | None = None
    current = 0

    def step(i: int, name: str, fn: Callable[[], object]) -> None:
        nonlocal current
        current = i
        report(i, name, None)
        t0 = time.monotonic()
        if journal is not None:
            rj.started(ctx.store, journal, name)
            faults.point(f"keep-data.before-{name.replace(' ', '-')}")
        loud, ctx.reporter = ctx.reporter, Reporter()
        try:
            fn()
        finally:
            ctx.reporter = loud
        if journal is not None:
            rj.completed(ctx.store, journal, name)
        faults.point(f"keep-data.after-{name.replace(' ', '-')}")
        result.steps.append((name, time.monotonic() - t0))
        report(i, name, time.monotonic() - t0)

    n = len(STEPS)
    try:
        step(1, "preflight", lambda: rs.preflight(ctx, p))
        # Nothing is dropped: the other sessions go on (a dump and SQLite's backup read a consistent copy).
        snap = lambda: take_snapshot(  # noqa: E731
            ctx, p.safety_name, origin="pre-reset", pin=True, note="safety snapshot before reset --keep-data"
        )
        step(2, "safety snapshot", snap)
    except rs.StepFailed as e:
        what = f"[{current}/{n}] {STEPS[current - 1]}"
        raise ResetError(
            f"reset --keep-data failed at {what}: {e}; nothing was changed", hint=rs._tail(e.output)
        ) from e
    except KeyboardInterrupt as e:
        raise Interrupted(
            f"reset --keep-data interrupted by {procs.signal_name(e)} at [{current}/{n}] {STEPS[current - 1]}; "
            "nothing was changed",
            exit_code=procs.exit_code(e),
        ) from None
    except OSError as e:
        why = os_error_text(e)
        raise ResetError(f"reset --keep-data failed at [2/{n}] safety snapshot: {why}; nothing was changed") from e
    backups = [_folder_entry(ctx.project.root, f.path) for f in p.folders]
    try:
        journal = rj.begin(
            ctx.store,
            safety_snapshot=p.safety_name,
            steps=[(name, name == "verify") for name in STEPS[2:]],
            numbering=STEPS,
            databases=[db.alias for db in p.databases],
            folders=[[f.app, f.path] for f in p.folders],
            after=[],
            auto_rollback=True,
            extra={"mode": MODE, "backups": backups, "carry_sql": p.carry_sql},
        )
        for i, s in enumerate(_steps(ctx, p, result, journal), start=3):
            step(i, s.name, s.fn)
        _finish(ctx, journal)
    except BaseException as exc:
        if current:
            report(current, STEPS[current - 1], rs.FAILED)
        raise _fail(ctx, p, current, exc, journal) from exc
    return result


def _finish(ctx: Context, journal: dict) -> None:
    for f in journal["backups"]:
        remove_tree(Path(f["backup"]))
    ctx.store.clear_journal()


def undo(ctx: Context, journal: dict) -> None:
    """Put the old history rows (where they were replaced) and the old migration folders back; clear the
    journal. Idempotent: a kill during an undo is undone again by the next command."""
    apps = journal.get("apps", [])
    for alias, rows in journal.get("history", {}).items():
        engine = ctx.engine(ctx.project.databases[alias])
        old = [tuple(r) for r in rows["old"]]
        if {tuple(r) for r in _own_rows(ctx, alias, apps)} != set(old):
            engine.replace_migration_rows(apps, old)
    for f in journal["backups"]:
        _unswap_folder(f)
    ctx.store.clear_journal()


def _fail(ctx: Context, p: KeepDataPlan, step_no: int, exc: BaseException, journal: dict | None) -> DbsnapError:
    where = f"[{step_no}/{len(STEPS)}] {STEPS[step_no - 1]}"
    why, output = rs.failure_text(exc)
    if journal is None:
        state = f"nothing was changed; the safety snapshot {p.safety_name} was kept"
    else:
        try:
            undo(ctx, journal)
            state = (
                "nothing was changed: the migration files and the history rows are as before, the data was never "
                f"touched; the safety snapshot {p.safety_name} was kept"
            )
        except BaseException as e:  # say the state whatever went wrong
            msg = e.message if isinstance(e, DbsnapError) else str(e) or type(e).__name__
            state = f"putting the old history back failed too ({msg}); the journal is kept: the next command retries"
    if isinstance(exc, SchemaDrift):
        hint = "make the database and the models agree (a migration, or SQL), then run it again"
        return SchemaDrift(f"reset --keep-data refused at {where}: {why}; {state}", exc.differences, hint=hint)
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(f"reset --keep-data {why} at {where}; {state}", exit_code=procs.exit_code(exc))
    return ResetError(f"reset --keep-data failed at {where}: {why}; {state}", hint=rs._tail(output))


def recover_pending(ctx: Context, journal: dict) -> str:
    """Finish or undo a keep-data reset a killed run left (the caller holds the lock): finished when the rewrite
    committed on every database and verify passes, undone otherwise; said in one line."""
    where = rj.where(journal)
    missing = [a for a in journal["databases"] if a not in ctx.project.databases]
    if missing:
        raise ConfigError(f"cannot recover the interrupted reset --keep-data: alias {missing[0]!r} is not configured")
    if not rj.remaining(journal):  # verified; killed while removing the copies: finishing is all that is left
        _finish(ctx, journal)
        ctx.reporter.warn(f"an interrupted reset --keep-data (stopped {where}) was found and finished")
        return "finished"
    apps = journal.get("apps", [])
    history = journal.get("history", {})
    rewritten = bool(history) and all(
        {tuple(r) for r in _own_rows(ctx, alias, apps)} == {tuple(r) for r in rows["new"]}
        for alias, rows in history.items()
    )
    why = ""
    if rewritten:
        by_app = {f.app: f for f in ctx.project.folders}
        p = KeepDataPlan(
            databases=[ctx.project.databases[a] for a in journal["databases"]],
            folders=[by_app[app] for app, _ in journal["folders"] if app in by_app],
            lost=[],
            after=[],
            safety_name=journal["safety_snapshot"],
        )
        try:
            loud, ctx.reporter = ctx.reporter, Reporter()
            try:
                rs.verify(ctx, p, prove_history=False)
            finally:
                ctx.reporter = loud
        except Exception as e:  # a failing check: undone instead, and said
            why = f"; finishing it failed ({e.message if isinstance(e, DbsnapError) else e})"
        else:
            _finish(ctx, journal)
            ctx.reporter.warn(
                f"an interrupted reset --keep-data (stopped {where}) was found and finished: the new history rows "
                f"were committed and verified; its safety snapshot is {journal['safety_snapshot']}"
            )
            return "finished"
    try:
        undo(ctx, journal)
    except DbsnapError as e:
        raise ResetError(
            f"an interrupted reset --keep-data (stopped {where}) could not be undone: {e.message}",
            hint="the journal is kept in the store; fix the cause, then any dbsnap command retries",
        ) from e
    ctx.reporter.warn(
        f"an interrupted reset --keep-data (stopped {where}) was found and undone{why}: the migration files and "
        "history rows are as before, the data was never touched"
    )
    return "rolled back"
