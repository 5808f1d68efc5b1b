"""The reset pipeline: snapshot, then drop, regenerate and migrate, then verify; roll back by itself on failure.

Seven named steps, each reported with its time. Everything after the safety snapshot is undone by rolling back
to it when a step fails (unless the caller asks not to): database and migration folders return together.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

from .. import faults, procs
from ..context import Context
from ..errors import ConfigError, DbsnapError, Interrupted, ResetError, UsageError, os_error_text
from ..project.compose import on_local_bridge
from ..project.databases import Database
from ..project.discovery import MigrationFolder
from ..project.manage_steps import debug_from_manage, manage, verify_state
from ..project.migration_scan import LostOperation, lost_operations
from ..report import Reporter
from ..schema import Prerequisite
from ..settings import read_pyproject
from ..store.fsutil import remove_tree
from ..store.snapshots import validate_name
from . import prerequisites as carry
from . import reset_journal as rj
from . import rollback as rb
from .fresh_history import HistoryError, check_makemigrations_allowed, prove
from .save import take_snapshot, unique_name

STEPS = (
    "preflight",
    "safety snapshot",
    "drop database objects",
    "regenerate migrations",
    "migrate",
    "after-reset steps",
    "verify",
)


@dataclass
class ResetOptions:
    apps: tuple[str, ...] = ()
    snapshot_name: str | None = None
    allow_production: bool = False
    auto_rollback: bool = True
    superuser: bool = False
    fixtures: tuple[str, ...] = ()
    keep_data: bool = False  # reset --keep-data (pipelines.keep_data): history rewritten, data never touched
    carry_sql: bool = False  # with keep_data: write RunSQL objects the new history lacks into a migration


@dataclass
class ResetPlan:
    databases: list[Database]
    folders: list[MigrationFolder]
    lost: list[LostOperation]
    after: list[list[str]]
    safety_name: str
    sessions: dict[str, list[str]] = field(default_factory=dict)
    carried: list[Prerequisite] = field(default_factory=list)  # recreated by the generated prerequisites migration
    # Migration folders of apps the project does not own (MIGRATION_MODULES): saved in the safety snapshot, applied
    # as they are by the migrate, never regenerated (see plan()).
    kept: list[MigrationFolder] = field(default_factory=list)

    @property
    def confirm_word(self) -> str:
        """What the user types to confirm: the (first) database's name, as the issue asks."""
        db = self.databases[0]
        return Path(db.name).name if db.kind == "sqlite" else db.name


@dataclass
class ResetResult:
    safety_snapshot: str
    steps: list[tuple[str, float]] = field(default_factory=list)
    migrations: dict[str, list[str]] = field(default_factory=dict)
    lost: list[LostOperation] = field(default_factory=list)
    carried: list[Prerequisite] = field(default_factory=list)  # as read just before the drop
    carried_file: str | None = None  # the generated prerequisites migration, relative to the project root
    notes: list[str] = field(default_factory=list)  # what verify could not prove (said, not hidden)


class StepFailed(Exception):
    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def is_local_host(host: str) -> bool:
    """Local: a Unix socket, localhost, a loopback address, a single-label name (a compose service), or an
    address on one of this machine's bridge networks (a container here, e.g. a compose db service's IP)."""
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback or on_local_bridge(host)
    except ValueError:
        return "." not in host


def _after_commands(ctx: Context, opts: ResetOptions) -> list[list[str]]:
    cmds: list[list[str]] = []
    if opts.superuser:
        cmds.append(["createsuperuser", "--noinput"])
    cmds += [["loaddata", f] for f in opts.fixtures]
    extra = read_pyproject(ctx.root).get("reset", {}).get("after", []) if ctx.root else []
    if not isinstance(extra, list):
        raise ConfigError("[tool.dbsnap.reset] after must be a list of manage.py command lines")
    cmds += [shlex.split(str(c)) for c in extra]
    return cmds


def plan(ctx: Context, opts: ResetOptions) -> ResetPlan:
    """Build the plan and check everything that can be checked without changing anything."""
    project = ctx.project
    dbs = ctx.databases()
    by_app = {f.app: f for f in project.regenerable}
    if opts.apps:
        moved = {f.app for f in project.folders if not f.owned}
        unknown = [a for a in opts.apps if a not in by_app]
        if unknown and unknown[0] in moved:
            raise UsageError(
                f"app {unknown[0]!r} is not the project's own (its migrations are moved into the project by "
                "MIGRATION_MODULES): reset keeps them as they are"
            )
        if unknown:
            raise UsageError(
                f"app {unknown[0]!r} is not one of the project's apps with a migrations package "
                f"({', '.join(by_app) or 'none'}); reset never adds migrations to an app that has none"
            )
        folders = [by_app[a] for a in opts.apps]
    else:
        folders = list(project.regenerable)
    if not folders:
        raise ConfigError("no migration folders of the project's own apps were found", hint="run 'dbsnap info'")
    if not opts.allow_production:
        debug = project.debug if project.debug is not None else debug_from_manage(project)
        if debug is False:
            raise UsageError(
                "refusing to reset: settings.DEBUG is False (this looks like production)",
                hint="pass --allow-production if this really is a disposable database",
            )
        remote = [db for db in dbs if db.kind != "sqlite" and not is_local_host(db.host)]
        if remote:
            raise UsageError(
                f"refusing to reset: database {remote[0].name!r} is on {remote[0].host}, not this machine",
                hint="pass --allow-production if this really is a disposable database",
            )
    name = validate_name(opts.snapshot_name) if opts.snapshot_name else unique_name(ctx, "pre-reset")
    if ctx.store.exists(name):
        raise UsageError(f"snapshot {name!r} already exists", hint="choose another --snapshot-name")
    return ResetPlan(
        sessions={db.alias: ctx.engine(db).other_sessions() for db in dbs},
        databases=dbs,
        folders=folders,
        lost=lost_operations(project.root, [(f.app, f.path) for f in folders]),
        after=_after_commands(ctx, opts),
        safety_name=name,
        carried=carry.merge([ctx.engine(db).prerequisites() for db in dbs]),
        # A contrib or third-party app's migrations moved into the project are its upstream history plus the
        # project's own edits (cookiecutter's sites: a data migration setting the domain). makemigrations would
        # write them again from models the project does not own and drop those edits, and the package's future
        # migrations would no longer follow them; so they stay as they are and are migrated like any other.
        kept=[f for f in project.folders if not f.owned],
    )


def preflight(ctx: Context, p: ResetPlan) -> None:
    """Databases reachable with the tools a save and an automatic rollback need; manage.py runnable."""
    for db in p.databases:
        engine = ctx.engine(db)
        engine.preflight()
        engine.preflight(for_restore=True)
    out = manage(ctx.project, "check")
    if out.returncode != 0:
        raise StepFailed("manage.py check fails before anything was changed", out.stdout)
    try:
        check_makemigrations_allowed(ctx.project, p.folders)
    except HistoryError as e:
        raise StepFailed(str(e), e.output) from e


def delete_migration_modules(root: Path, folder: str) -> list[str]:
    """Remove the migration modules of one folder: keep ``__init__.py`` and non-Python files, drop caches."""
    base = root / folder
    removed = []
    for path in sorted(base.iterdir()):
        if path.name == "__pycache__":
            remove_tree(path)
        elif path.is_file() and path.suffix in (".py", ".pyc") and path.name != "__init__.py":
            path.unlink()
            removed.append(path.name)
    return removed


def _check(out, what: str) -> str:
    if out.returncode != 0:
        raise StepFailed(f"{what} failed (exit code {out.returncode})", out.stdout)
    return out.stdout


@dataclass
class Step:
    """One step after the safety snapshot. ``rerunnable``: running it again after a kill is safe (a read-only
    check, or nothing to do), so a reset killed when only such steps were left is finished rather than undone."""

    name: str
    fn: Callable[[], object]
    rerunnable: bool = False


# ``on_step(i, name, secs)``: secs None when step i starts, its duration when it is done, FAILED when it failed
# (said before the automatic rollback reports its own lines).
FAILED = -1.0


def regenerate(ctx: Context, p: ResetPlan, result: ResetResult) -> None:
    """Delete the chosen apps' migration modules, run makemigrations for them together, write the carried
    prerequisites; ``result.migrations`` gets the new files of each app."""
    project = ctx.project
    for f in p.folders:
        delete_migration_modules(project.root, f.path)
    faults.point("reset.during-regenerate")
    _check(manage(project, "makemigrations", "--noinput", *[f.app for f in p.folders]), "makemigrations")
    faults.point("reset.after-makemigrations")
    result.carried_file = carry.write(project.root, p.folders, result.carried)
    faults.point("reset.after-carry-write")
    for f in p.folders:
        result.migrations[f.app] = sorted(
            x.name for x in (project.root / f.path).glob("*.py") if x.name != "__init__.py"
        )


def changing_steps(ctx: Context, p: ResetPlan, result: ResetResult) -> list[Step]:
    """The steps after the safety snapshot, in order; each is journaled before it is taken."""
    project = ctx.project

    def drop() -> None:
        # What the fresh history must create again, read the moment before it goes.
        result.carried = carry.merge([ctx.engine(db).prerequisites() for db in p.databases])
        faults.point("reset.after-prerequisites-read")
        for db in p.databases:
            ctx.engine(db).drop_everything()

    return [
        Step("drop database objects", drop),
        Step("regenerate migrations", lambda: regenerate(ctx, p, result)),
        Step(
            "migrate",
            lambda: [
                _check(manage(project, "migrate", "--noinput", "--run-syncdb", "--database", db.alias), "migrate")
                for db in p.databases
            ],
        ),
        Step(
            "after-reset steps",
            lambda: [_check(manage(project, *cmd), "manage.py " + " ".join(cmd)) for cmd in p.after],
            rerunnable=not p.after,  # createsuperuser or loaddata twice is not the same as once
        ),
        Step("verify", lambda: result.notes.extend(verify(ctx, p)), rerunnable=True),
    ]


def _slug(name: str) -> str:
    return name.replace(" ", "-")


def run(
    ctx: Context,
    p: ResetPlan,
    opts: ResetOptions,
    on_step: Callable[[int, str, float | None], None] | None = None,
) -> ResetResult:
    """Carry out a confirmed plan; the caller holds the store lock.

    From the safety snapshot on, every step is recorded in the store's journal before it is taken and after it
    completes, so a killed reset is rolled back (or finished) by the next dbsnap command.
    """
    result = ResetResult(safety_snapshot=p.safety_name, lost=p.lost)
    report = on_step or (lambda i, name, secs: None)
    step_no = 0
    journal: dict | None = None

    def step(name: str, fn: Callable[[], object]) -> object:
        nonlocal step_no
        step_no = STEPS.index(name) + 1
        report(step_no, name, None)
        t0 = time.monotonic()
        if journal is not None:
            rj.started(ctx.store, journal, name)
            faults.point(f"reset.before-{_slug(name)}")
        # Each step is one line; the save and rollback machinery underneath stays silent.
        loud, ctx.reporter = ctx.reporter, Reporter()
        try:
            value = fn()
        finally:
            ctx.reporter = loud
        if journal is not None:
            rj.completed(ctx.store, journal, name)
        faults.point(f"reset.after-{_slug(name)}")
        secs = time.monotonic() - t0
        result.steps.append((name, secs))
        report(step_no, name, secs)
        return value

    try:
        step("preflight", lambda: preflight(ctx, p))
    except StepFailed as e:
        raise ResetError(
            f"reset failed at [1/{len(STEPS)}] preflight: {e}; nothing was changed", hint=_tail(e.output)
        ) from e
    except KeyboardInterrupt as e:
        raise _interrupted(e, f"at [1/{len(STEPS)}] preflight; nothing was changed") from None

    def safety() -> object:
        # Sessions are ended first (a drop needs their locks anyway): the snapshot never hangs behind them.
        rb.end_sessions(ctx, p.databases, keep_idle={db.alias: True for db in p.databases})
        return take_snapshot(ctx, p.safety_name, origin="pre-reset", pin=True, note="safety snapshot before reset")

    try:
        step("safety snapshot", safety)
    except KeyboardInterrupt as e:
        raise _interrupted(e, f"at [2/{len(STEPS)}] safety snapshot; nothing was changed") from None
    except OSError as e:
        raise ResetError(
            f"reset failed at [2/{len(STEPS)}] safety snapshot: {os_error_text(e)}; nothing was changed "
            "(the database and migration files were not touched, no snapshot was kept)"
        ) from e
    steps = changing_steps(ctx, p, result)
    try:
        journal = rj.begin(
            ctx.store,
            safety_snapshot=p.safety_name,
            steps=[(s.name, s.rerunnable) for s in steps],
            numbering=STEPS,
            databases=[db.alias for db in p.databases],
            folders=[[f.app, f.path] for f in p.folders],
            after=p.after,
            auto_rollback=opts.auto_rollback,
        )
        for s in steps:
            step(s.name, s.fn)
        ctx.store.clear_journal()
    except BaseException as exc:
        if step_no:
            report(step_no, STEPS[step_no - 1], FAILED)
        raise _fail(ctx, p, opts, step_no, exc, journal) from exc
    return result


def verify(ctx: Context, p: ResetPlan, prove_history: bool = True) -> list[str]:
    """check passes; no model changes; no unapplied migrations; history rows == files; every model table exists;
    the fresh history builds an empty database with the same schema (unless ``prove_history`` is False: the
    caller proved it already). Returns what could not be proved."""
    project = ctx.project
    _check(manage(project, "check"), "manage.py check")
    out = manage(project, "makemigrations", "--check", "--dry-run")
    if out.returncode != 0:
        raise StepFailed("makemigrations --check finds model changes without migrations", out.stdout)
    for db in p.databases:
        state = verify_state(project, db.alias)
        problems = []
        if state["stale"]:
            problems.append(f"{len(state['stale'])} django_migrations rows without a file: {_pairs(state['stale'])}")
        if state["unapplied"]:
            problems.append(f"{len(state['unapplied'])} unapplied migrations: {_pairs(state['unapplied'])}")
        if state["missing_tables"]:
            problems.append(f"tables missing: {', '.join(state['missing_tables'][:5])}")
        if problems:
            raise StepFailed(f"database {db.alias!r}: " + "; ".join(problems))
    notes: list[str] = []
    for db in p.databases if prove_history else []:
        try:
            note = prove(ctx, db)
        except HistoryError as e:
            raise StepFailed(str(e), e.output) from e
        notes += [note] if note else []
    return notes


def _pairs(rows: list[list[str]]) -> str:
    shown = ", ".join(f"{a}.{n}" for a, n in rows[:5])
    return shown + (" ..." if len(rows) > 5 else "")


def _tail(output: str, lines: int = 12) -> str | None:
    rows = [ln for ln in (output or "").rstrip().splitlines() if ln.strip()]
    return "\n".join(rows[-lines:]) if rows else None


def _interrupted(exc: BaseException, what: str) -> Interrupted:
    return Interrupted(f"reset interrupted by {procs.signal_name(exc)} {what}", exit_code=procs.exit_code(exc))


def rollback_to_safety(ctx: Context, journal: dict) -> None:
    """Put database and migration folders back to the reset's safety snapshot, all or nothing.

    The rollback's own journal carries this reset's journal along: if it is killed too, undoing it brings this
    journal back, so the next command rolls back again instead of forgetting the half-reset state.
    """
    rj.rolling_back(ctx.store, journal)
    snap = ctx.store.get(journal["safety_snapshot"])
    ctx.store.verify_checksums(snap)
    rb.run(ctx, rb.plan(ctx, snap, safety=False, aliases=journal["databases"]), outer=journal)


def failure_text(exc: BaseException) -> tuple[str, str]:
    """Why a step failed, in words, and the child's output when it was a manage.py step's."""
    if isinstance(exc, KeyboardInterrupt):
        why = f"interrupted by {procs.signal_name(exc)}"
    elif isinstance(exc, DbsnapError):
        why = exc.message
    elif isinstance(exc, OSError):
        why = os_error_text(exc)
    else:
        why = str(exc) or type(exc).__name__
    return why, exc.output if isinstance(exc, StepFailed) else ""


def _fail(
    ctx: Context, p: ResetPlan, opts: ResetOptions, step_no: int, exc: BaseException, journal: dict | None
) -> DbsnapError:
    """Roll back to the safety snapshot (unless disabled) and describe what happened."""
    where = f"[{step_no}/{len(STEPS)}] {STEPS[step_no - 1]}" if step_no else "after the safety snapshot"
    why, output = failure_text(exc)
    stopped = procs.exit_code(exc) if isinstance(exc, KeyboardInterrupt) else 0  # a signal's exit code
    if journal is None:  # the journal could not even be written: nothing after the snapshot was done
        state = f"nothing was changed; the safety snapshot {p.safety_name} was kept"
    elif not opts.auto_rollback:
        ctx.store.clear_journal()  # the user asked for the state as it is: no later command may undo it
        state = f"left as it is (--no-auto-rollback); roll back with: dbsnap rollback {p.safety_name}"
    else:
        try:
            ctx.reporter.step(f"rolling back to the safety snapshot {p.safety_name}")
            rollback_to_safety(ctx, journal)
            state = f"rolled back to the safety snapshot {p.safety_name}: database and migration files are as before"
        except BaseException as e:  # report the state whatever went wrong
            msg = e.message if isinstance(e, DbsnapError) else (os_error_text(e) if isinstance(e, OSError) else str(e))
            if isinstance(e, (Interrupted, KeyboardInterrupt)):
                stopped = e.exit_code if isinstance(e, Interrupted) else procs.exit_code(e)
            kept = ctx.store.read_journal() is not None
            if kept:  # the rollback was undone in order and the reset's journal is back
                state = (
                    f"the automatic rollback to {p.safety_name} did not complete ({msg.split('; ')[0]}); the "
                    f"reset's journal is kept: the next dbsnap command rolls back to {p.safety_name} again"
                )
            else:
                state = f"the automatic rollback failed too ({msg}); restore with: dbsnap rollback {p.safety_name}"
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(f"reset {why} at {where}; {state}", exit_code=stopped)
    if stopped:  # the automatic rollback was stopped by a signal: exit as the signal says
        return Interrupted(f"reset failed at {where}: {why}; {state}", hint=_tail(output), exit_code=stopped)
    return ResetError(f"reset failed at {where}: {why}; {state}", hint=_tail(output))
