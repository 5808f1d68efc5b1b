"""The rollback pipeline: database and migration folders back to a snapshot as one unit, all or nothing.

Order: verify checksums -> safety snapshot -> unpack migrations into staging -> restore each database beside
the live one -> swap the databases in -> swap the folders in -> verify -> drop what was replaced.

A journal in the store records every step before it is taken. Until the first folder swap the pair can only
be put back (undo); from then on it can only be finished (forward): both are the same ``recover`` function,
which the pipeline calls itself on failure and every later dbsnap command calls if a run was killed.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import faults, procs
from ..context import Context
from ..engines.base import Engine
from ..errors import ConfigError, DbsnapError, IntegrityError, Interrupted, RollbackError, failure_line, os_error_text
from ..project.databases import Database
from ..settings import restore_jobs
from ..store import confine
from ..store.archive import list_folder, unpack_folders
from ..store.fsutil import fsync_dir, remove_tree
from ..store.snapshots import MIGRATIONS_PAYLOAD, Snapshot
from . import consume as cs
from . import safety as sf
from .save import take_snapshot, unique_name

UNDO_PHASES = ("restoring", "swapping-db", "undoing")
FORWARD_PHASES = ("swapping-files", "finishing")


@dataclass
class FolderChange:
    path: str
    to_restore: int = 0  # in the snapshot, not on disk now
    to_remove: int = 0  # on disk now, not in the snapshot
    to_revert: int = 0  # in both, with other content
    exists: bool = True


@dataclass
class RollbackPlan:
    """What a rollback will replace; shown for confirmation before anything happens."""

    snapshot: Snapshot
    databases: list[Database]
    modes: dict[str, str]
    sessions: dict[str, list[str]]
    folders: list[FolderChange]
    safety: bool
    keep_safety: bool = False  # the safety snapshot is the replaced databases themselves (clone-only), not a dump
    consume: bool = False  # rename the snapshot's clone into place instead of copying it
    untouched: list[str] = field(default_factory=list)  # migration folders of today's project not in the snapshot
    # What differs between the project/databases the snapshot was taken of and today's: (what, then, now).
    foreign: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class RollbackResult:
    snapshot: str
    safety_snapshot: str | None
    databases: list[str]
    folders: list[str]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    safety_kept: bool = False  # the safety snapshot is clone-only (the replaced databases, kept by rename)
    pruned: list[str] = field(default_factory=list)  # safety snapshots removed by their retention afterwards
    rearmed: list[str] = field(default_factory=list)  # clones made again after --consume-clone


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def current_files(root: Path, folder: str) -> dict[str, str]:
    """``{relative path: sha256}`` of the files a snapshot would keep from ``folder`` right now."""
    base = root / folder
    if not base.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): _sha(p) for p in list_folder(base)}


def snapshot_files(snap: Snapshot, folder: str) -> dict[str, str]:
    prefix = folder.rstrip("/") + "/"
    return {f["path"]: f["sha256"] for f in snap.manifest["migrations"]["files"] if f["path"].startswith(prefix)}


def folder_change(root: Path, snap: Snapshot, folder: str) -> FolderChange:
    now, then = current_files(root, folder), snapshot_files(snap, folder)
    return FolderChange(
        path=folder,
        to_restore=len(then.keys() - now.keys()),
        to_remove=len(now.keys() - then.keys()),
        to_revert=sum(1 for k in now.keys() & then.keys() if now[k] != then[k]),
        exists=(root / folder).is_dir(),
    )


def targets(ctx: Context, snap: Snapshot, aliases: list[str] | None = None) -> list[Database]:
    """The live databases to restore: ``aliases`` (default: the selected ones, else all the snapshot holds),
    checked to be in the snapshot with matching engines."""
    project = ctx.project
    saved = snap.databases
    chosen = aliases or ctx.settings.databases or tuple(saved)
    out = []
    for alias in chosen:
        if alias not in saved:
            raise ConfigError(f"snapshot {snap.name!r} holds no database {alias!r} (it has: {', '.join(saved)})")
        if alias not in project.databases:
            raise ConfigError(f"snapshot {snap.name!r} holds database {alias!r}, which this project does not define")
        db = project.databases[alias]
        if db.kind != saved[alias]["engine"]:
            raise ConfigError(
                f"database {alias!r} is {db.kind} now but the snapshot holds a {saved[alias]['engine']} dump"
            )
        out.append(db)
    return out


def identity(ctx: Context, snap: Snapshot, dbs: list[Database]) -> list[tuple[str, str, str]]:
    """(what, in the snapshot, now) for each of project root, settings module and database name that differs.

    A manifest without these fields (older dbsnap) is not compared on them."""
    out = []
    saved = snap.manifest.get("project") or {}
    now = {"project root": str(ctx.project.root), "settings module": ctx.project.settings_module}
    for what, key in (("project root", "root"), ("settings module", "settings_module")):
        if saved.get(key) is not None and str(saved.get(key)) != str(now[what]):
            out.append((what, str(saved[key]), str(now[what])))
    for db in dbs:
        then = snap.databases[db.alias].get("name")
        if then is not None and then != db.name:
            out.append((f"database {db.alias}", str(then), db.name))
    return out


def saved_folders(ctx: Context, snap: Snapshot) -> list[str]:
    """The snapshot's migration folders, confined to today's project (IntegrityError otherwise)."""
    return confine.check_manifest(ctx.rules(), snap.manifest, snap.path, snap.name)


def plan(
    ctx: Context, snap: Snapshot, safety: bool = True, aliases: list[str] | None = None, consume: bool = False
) -> RollbackPlan:
    """Everything the confirmation shows; checks tools and connections, changes nothing."""
    saved = saved_folders(ctx, snap)
    dbs = targets(ctx, snap, aliases)
    modes, sessions = {}, {}
    for db in dbs:
        engine = ctx.engine(db)
        engine.preflight(for_restore=True)
        if safety:
            engine.preflight()
        modes[db.alias] = engine.restore_mode() if hasattr(engine, "restore_mode") else "swap"
        sessions[db.alias] = engine.other_sessions()
    folders = [folder_change(ctx.project.root, snap, path) for path in saved]
    untouched = [f.path for f in ctx.project.folders if f.path not in saved]
    if consume:
        cs.check_consumable(snap, dbs, modes)
    return RollbackPlan(
        snapshot=snap,
        databases=dbs,
        modes=modes,
        sessions=sessions,
        folders=folders,
        safety=safety,
        keep_safety=safety and sf.can_keep(ctx, [ctx.engine(db) for db in dbs]),
        consume=consume,
        untouched=untouched,
        foreign=identity(ctx, snap, dbs),
    )


# -- folders -------------------------------------------------------------------------------------------------


def _folder_entry(root: Path, rel: str) -> dict:
    live = root / rel
    return {
        "path": rel,
        "live": str(live),
        "staged": str(live.parent / f".{live.name}.dbsnap-new"),
        "backup": str(live.parent / f".{live.name}.dbsnap-old"),
        "existed": live.is_dir(),
    }


def _swap_folder(f: dict) -> None:
    """staged -> live, keeping the old live folder as backup. Idempotent: safe to repeat after a kill."""
    live, staged, backup = Path(f["live"]), Path(f["staged"]), Path(f["backup"])
    if not staged.exists():
        return  # already swapped
    if live.exists() and not backup.exists():
        os.rename(live, backup)
    elif live.exists():
        remove_tree(live)  # backup already holds the old folder; live is a stray copy
    os.rename(staged, live)
    fsync_dir(live.parent)


def _unswap_folder(f: dict) -> None:
    """Put the old live folder back and discard the staged one. Idempotent."""
    live, staged, backup = Path(f["live"]), Path(f["staged"]), Path(f["backup"])
    if backup.exists():
        remove_tree(live)
        os.rename(backup, live)
        fsync_dir(live.parent)
    elif not f["existed"] and live.exists() and not staged.exists():
        remove_tree(live)  # the folder did not exist before the rollback created it
    remove_tree(staged)


# -- recovery ------------------------------------------------------------------------------------------------


def _engines(ctx: Context, journal: dict) -> list[tuple[Engine, dict]]:
    out = []
    for entry in journal.get("databases", []):
        db = ctx.project.databases.get(entry["alias"])
        if db is None:
            raise RollbackError(f"cannot recover: database alias {entry['alias']!r} is no longer configured")
        engine = ctx.engine(db)

        def save_state(st: dict, entry: dict = entry) -> None:
            entry["state"] = st
            ctx.store.write_journal(journal)

        engine.checkpoint = save_state  # what recovery itself learns or changes is journaled too
        out.append((engine, entry["state"]))
    return out


def recover(ctx: Context, journal: dict) -> str:
    """Finish or undo the rollback the journal describes; return "forward" or "undone". Clears the journal."""
    engines = _engines(ctx, journal)
    phase = journal["phase"]
    if phase in UNDO_PHASES:
        for e, st in engines:
            if st.get("mode") == "transaction" and hasattr(e, "transaction_outcome"):
                # Known before anything is decided: a restore whose COMMIT was sent may still be committing.
                e.transaction_outcome(st, ctx.reporter.step)
    irreversible = any(
        st.get("mode") == "transaction" and e.is_swapped(st) for e, st in engines if phase in UNDO_PHASES
    )
    forward = phase in FORWARD_PHASES or irreversible
    if forward:
        journal["phase"] = "finishing"
        ctx.store.write_journal(journal)
        for f in journal["folders"]:
            _swap_folder(f)
        for e, st in engines:
            if not e.is_swapped(st):
                e.swap_in(st)
            e.finish(st)
        if journal.get("safety_kept"):
            sf.commit(ctx, journal["safety_kept"], engines)  # the replaced databases become the safety snapshot
        for f in journal["folders"]:
            remove_tree(Path(f["backup"]))
        faults.point("rollback.after-finish")
    else:
        journal["phase"] = "undoing"
        ctx.store.write_journal(journal)
        for f in journal["folders"]:
            _unswap_folder(f)
        for e, st in engines:
            if e.is_swapped(st):
                e.undo_swap(st)
            e.discard(st)
        sf.discard(journal.get("safety_kept"))  # the replaced databases are live again: nothing to keep
    outer = journal.get("outer")
    if outer and not forward:
        # Undone: the work this rollback was undoing (a reset's) is pending again; one atomic replace.
        ctx.store.write_journal(outer)
    else:
        ctx.store.clear_journal()
    return "forward" if forward else "undone"


def pending_journal(ctx: Context) -> dict | None:
    """The store's journal, with every path and database name in it confined to this project and store: the
    one way to read a journal before acting on it. IntegrityError (exit 6, nothing touched) otherwise."""
    journal = ctx.store.read_journal()
    if journal is None:
        return None
    try:
        return confine.check_journal(ctx.rules(), journal)
    except DbsnapError as e:
        raise IntegrityError(
            f"refusing the store's journal {ctx.store.journal_path}: {e.message}; nothing was changed",
            hint="it was not written by dbsnap for this project: check it, then remove it by hand",
        ) from e


def recover_pending(ctx: Context, quiet: bool = False) -> str | None:
    """If a killed rollback left a journal, finish or undo it now (caller holds the lock); ``quiet``: the caller
    says what happened."""
    journal = pending_journal(ctx)
    if not journal:
        return None
    try:
        outcome = recover(ctx, journal)
    except DbsnapError:
        raise
    except Exception as e:  # e.g. a psycopg error: one line and exit 8, never a traceback
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RollbackError(
            f"an interrupted rollback to {journal.get('snapshot')!r} could not be finished or undone: {first}",
            hint="the journal is kept in the store; fix the cause, then any dbsnap command retries",
        ) from e
    what = "finished" if outcome == "forward" else "undone"
    if not quiet:
        ctx.reporter.warn(f"an interrupted rollback to {journal.get('snapshot')!r} was found and {what}{_why(journal)}")
    return outcome


def _why(journal: dict) -> str:
    """What decided it, where the server did: whether an in-transaction restore had committed."""
    said = {"committed": "had committed", "aborted": "had not committed"}
    why = [
        f"the in-place restore of {e['state'].get('live')!r} {said[e['state']['outcome']]}"
        for e in journal.get("databases", [])
        if e.get("state", {}).get("outcome") in said and e["state"].get("xid")
    ]
    return f" ({'; '.join(why)})" if why else ""


# -- the pipeline --------------------------------------------------------------------------------------------


def end_sessions(ctx: Context, databases: list[Database], keep_idle: dict[str, bool] | None = None) -> None:
    """End other sessions on the databases before the safety snapshot, so it cannot hang behind their locks;
    an error naming those that could not be ended (within the bound), before anything was changed."""
    for db in databases:
        ended = ctx.engine(db).end_sessions(keep_idle=(keep_idle or {}).get(db.alias, False))
        for s in ended:
            ctx.reporter.step(f"ended session on {db.alias}: {s}")


def _verify(ctx: Context, snap: Snapshot, engines: list[Engine]) -> None:
    root = ctx.project.root
    for path in saved_folders(ctx, snap):
        now, then = current_files(root, path), snapshot_files(snap, path)
        if now != then:
            diff = sorted(set(now.items()) ^ set(then.items()))
            raise RollbackError(f"after restore, migration files differ from the snapshot: {diff[0][0]}")
    for e in engines:
        rows = e.migration_rows()
        want = snap.databases[e.db.alias]["migrations"]
        if rows != want:
            raise RollbackError(
                f"after restore, django_migrations of {e.db.alias!r} has {len(rows)} rows, the snapshot {len(want)}"
            )


def run(ctx: Context, p: RollbackPlan, outer: dict | None = None) -> RollbackResult:
    """Carry out a confirmed plan (caller holds the store lock and has verified the snapshot's checksums).

    ``outer``: the journal of the work this rollback undoes (a reset's); kept inside this rollback's journal and
    put back if the rollback is undone, so that work is never forgotten half-done.
    """
    started = time.monotonic()
    snap = p.snapshot
    safety_name = None
    end_sessions(ctx, p.databases, keep_idle={a: m == "transaction" for a, m in p.modes.items()})
    engines = [ctx.engine(db) for db in p.databases]
    kept = None  # the journal's record of a safety snapshot kept by rename (clone-only), staged now
    if p.safety:
        safety_name = unique_name(ctx, "pre-rollback")
        try:
            if p.keep_safety:
                ctx.reporter.step(f"safety snapshot of the current state: {safety_name} (kept by rename, no dump)")
                kept = sf.stage(ctx, safety_name, engines, snap.name)
                faults.point("safety.after-stage")  # staged in .tmp, no journal yet: debris for the next command
            else:
                ctx.reporter.step(f"safety snapshot of the current state: {safety_name}")
                take_snapshot(ctx, safety_name, origin="pre-rollback", note=f"before rollback to {snap.name}")
        except OSError as e:  # a full store: say what it means for the rollback, not for a save
            raise RollbackError(
                f"rollback to {snap.name!r} failed while taking the safety snapshot: {os_error_text(e)}; "
                "nothing was changed (no safety snapshot was kept)"
            ) from e
    root = ctx.project.root
    folders = saved_folders(ctx, snap)  # confined again where used: the manifest is what is on disk now
    journal: dict = {
        "snapshot": snap.name,
        "safety_snapshot": safety_name,
        "safety_kept": kept,
        "phase": "restoring",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pid": os.getpid(),
        "databases": [],
        "folders": [_folder_entry(root, path) for path in folders],
    }
    if outer is not None:
        journal["outer"] = outer
    try:
        for f in journal["folders"]:
            remove_tree(Path(f["staged"]))
        ctx.store.write_journal(journal)
    except OSError as e:
        sf.discard(kept)
        said = f" (the safety snapshot {safety_name} was kept)" if safety_name and not kept else ""
        raise RollbackError(
            f"rollback to {snap.name!r} failed before it began: {os_error_text(e)}; nothing was changed{said}"
        ) from e
    warnings: list[str] = []  # what fell back (a clone, a parallel restore): said on stderr and in --json
    try:
        ctx.reporter.step(f"unpacking {len(journal['folders'])} migration folders")
        unpack_folders(
            snap.path / MIGRATIONS_PAYLOAD,
            {f["path"]: Path(f["staged"]) for f in journal["folders"]},
            {f["path"]: Path(f["live"]) for f in journal["folders"]},
        )
        for e in engines:
            saved = snap.databases[e.db.alias]
            payload = sf.restore_source(snap, saved)
            state = e.new_restore_state(payload, saved, consume=p.consume)
            if kept:
                state = e.keep_replaced(state, *sf.keep_target(ctx, e, kept))
            if e.parallel_restore and state.get("mode") == "swap" and not state.get("clone"):
                state["jobs"] = restore_jobs(ctx.jobs, int(saved.get("raw_bytes") or 0))
                state["raw_bytes"] = int(saved.get("raw_bytes") or 0)
                state["spool_dir"] = str(ctx.store.tmp)
                short = e.spool_shortfall(state) if state["jobs"] > 1 and hasattr(e, "spool_shortfall") else None
                if short:  # decided before the line that announces the jobs, so it never contradicts it
                    state["jobs"], state["warning"] = 1, short
            entry = {"alias": e.db.alias, "state": state}
            journal["databases"].append(entry)
            ctx.store.write_journal(journal)

            def save_state(st: dict, entry: dict = entry) -> None:
                entry["state"] = st
                ctx.store.write_journal(journal)

            e.checkpoint = save_state
            source = f"from clone {state['clone']}" if state.get("clone") else "from the dump"
            if state.get("consume"):
                source = f"consuming clone {state['clone']}" if state.get("clone") else "consuming its kept file"
            elif state.get("raw"):
                source = "from its kept file"
            if state.get("jobs", 1) > 1:
                source += f", {state['jobs']} jobs"
            ctx.reporter.step(f"restoring {e.db.describe()} ({state.get('mode', 'swap')}, {source})")
            counter = ctx.reporter.progress(f"restore {e.db.alias}", payload.stat().st_size if payload else None)
            e.prepare_restore(state, counter)
            counter.close()
            if state.get("warning"):
                ctx.reporter.warn(state["warning"])
                warnings.append(state["warning"])
            faults.point("rollback.after-restore")
        journal["phase"] = "swapping-db"
        ctx.store.write_journal(journal)
        ticker = ctx.reporter.progress("swap")  # the elapsed time keeps moving through renames, checks, drops
        for e, entry in zip(engines, journal["databases"], strict=True):
            ctx.reporter.step(f"swapping in {e.db.alias}")
            ticker.phase(f"databases ({e.db.alias})")
            entry["state"] = e.swap_in(entry["state"])
            ctx.store.write_journal(journal)
            faults.point("rollback.after-db-swap")
        journal["phase"] = "swapping-files"
        ctx.store.write_journal(journal)
        ctx.reporter.step("swapping migration folders")
        ticker.phase("migration folders")
        for f in journal["folders"]:
            _swap_folder(f)
            faults.point("rollback.during-file-swap")
        ticker.phase("checking the result")
        try:
            _verify(ctx, snap, engines)
        except DbsnapError:
            journal["phase"] = "undoing"
            ctx.store.write_journal(journal)
            raise
        journal["phase"] = "finishing"
        ctx.store.write_journal(journal)
        faults.point("rollback.before-finish")
        ticker.phase("finishing (the replaced state goes)")
        recover(ctx, journal)
        ticker.close()
    except BaseException as exc:
        ctx.reporter.stop_progress()  # no progress line goes on ticking over the error
        state = _recover_after_failure(ctx, journal)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(
                f"rollback to {snap.name!r} interrupted by {procs.signal_name(exc)}; {state}",
                exit_code=procs.exit_code(exc),
            ) from None
        raise RollbackError(
            f"rollback to {snap.name!r} failed: {failure_line(exc)}; {state}",
            hint=f"the safety snapshot {safety_name} holds the state before the rollback" if safety_name else None,
        ) from exc
    return RollbackResult(
        snapshot=snap.name,
        safety_snapshot=safety_name,
        safety_kept=kept is not None,
        databases=[e.db.alias for e in engines],
        folders=[f["path"] for f in journal["folders"]],
        seconds=time.monotonic() - started,
        warnings=warnings,
    )


def _recover_after_failure(ctx: Context, journal: dict) -> str:
    try:
        outcome = recover(ctx, journal)
    except BaseException as e:  # report the state whatever went wrong
        return f"undoing it failed too ({e}); the journal is kept and the next dbsnap command will retry"
    if outcome == "forward":
        return "the database and migration folders were fully restored to the snapshot"
    return "nothing was changed (database and migration folders are as before)"
