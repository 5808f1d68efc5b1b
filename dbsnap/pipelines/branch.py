"""The database follows the branch: on a switch A -> B, A's live database is kept as A's branch state and B's
state is put in place, by renames (PostgreSQL: ``keep_as_clone`` / ``put_clone_in_place``; SQLite: the file moved
into the store and back). A branch without a state gets the database as it is, and A's state is kept by a copy.

All or nothing, as a rollback: a journal in the store (kind ``branch-switch``) is written before each phase.
``preparing`` and ``copying`` can only be undone; ``switching`` is finished when every database holds B's state
and undone otherwise (judged from the server and the files, not from the journal alone); ``finishing`` (the
databases are switched, the store is catching up) is only finished. Killed at any moment, the next dbsnap command
leaves A's state or B's state live, and says which.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import faults, procs
from ..context import Context
from ..engines.base import Engine
from ..errors import ConfigError, DbsnapError, IntegrityError, Interrupted, RollbackError, failure_line
from ..project import git
from ..store import confine
from ..store.archive import pack_folders
from ..store.fsutil import atomic_write, fsync_dir, private_dir, remove_tree, sha256_file
from ..store.seal import load_key, make_seal
from ..store.snapshots import MANIFEST, MIGRATIONS_PAYLOAD, Snapshot, dump_manifest
from . import branch_state as bs
from .save import manifest_head, migrations_entry

KIND = "branch-switch"
DRAFT = "draft.json"


@dataclass
class SwitchResult:
    """What a switch did. ``action``: ``switched`` (B's state put in place), ``started`` (B had none: the
    database stays, A's kept by a copy), ``marked`` (nothing to keep: the database is now marked as B's) or
    ``none`` (it already was B's)."""

    to_branch: str
    from_branch: str | None
    action: str
    kept: str | None = None
    consumed: str | None = None
    sessions: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)  # B's recorded migration files vs those on disk
    to_apply: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pruned: list[str] = field(default_factory=list)  # branch states removed by retention after the switch


def _engines(ctx: Context) -> list[Engine]:
    engines = [ctx.engine(db) for db in ctx.databases()]
    for e in engines:
        if e.kind not in ("postgresql", "sqlite"):
            raise ConfigError(f"the database follows the branch on PostgreSQL and SQLite; {e.db.alias!r} is {e.kind}")
    return engines


def _oid(e: Engine, name: str) -> int | None:
    return e._oid_of(name)  # type: ignore[attr-defined]


def _facts(e: Engine) -> tuple[str | None, int, list[list[str]]]:
    """(server version, database bytes, django_migrations rows) of the live database: one connection, since the
    hook's time is mostly connections and child processes."""
    if e.kind == "sqlite":
        return sqlite3.sqlite_version, Path(e.db.name).stat().st_size, e.migration_rows()
    with e.connect() as conn:  # type: ignore[attr-defined]
        version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        return version, size, e._migration_rows(conn)  # type: ignore[attr-defined]


def _check_target(ctx: Context, snap: Snapshot, engines: list[Engine]) -> dict[str, dict]:
    """B's state, confined and present, per alias: ``{"db", "oid"}`` or ``{"path", "sha256"}``; IntegrityError
    (nothing changed) when it is damaged or its clone or file vanished."""
    rules = ctx.rules()
    out = {}
    for e in engines:
        saved = snap.databases.get(e.db.alias)
        if not isinstance(saved, dict) or saved.get("engine") != e.kind:
            raise IntegrityError(f"the state {snap.name!r} holds no {e.kind} database {e.db.alias!r}")
        if e.kind == "postgresql":
            clone = saved.get("clone") or {}
            name = confine.derived_db_name(rules, e.db.alias, clone.get("name"), f"snapshot {snap.name!r}")
            if not e.clone_ok(clone):  # type: ignore[attr-defined]
                raise IntegrityError(f"the state {snap.name!r}: its database {name} is missing or was replaced")
            out[e.db.alias] = {"db": name, "oid": int(clone["oid"])}
        else:
            f = saved.get("file") or {}
            fname = confine.check_payload(f.get("name"), snap.path, f"snapshot {snap.name!r}")
            if not (snap.path / fname).is_file():
                raise IntegrityError(f"the state {snap.name!r}: its file {fname} is missing")
            out[e.db.alias] = {"path": str(snap.path / fname), "sha256": f.get("sha256")}
    return out


# -- the pipeline ----------------------------------------------------------------------------------------------


def switch(
    ctx: Context,
    to_branch: str,
    *,
    previous: str | None = None,
    old_commit: str | None = None,
    new_commit: str | None = None,
) -> SwitchResult:
    """Make the live databases ``to_branch``'s (caller holds the store lock). ``previous``: whose state the live
    databases are when no marker says so; ``old_commit``/``new_commit``: the checkout's, to tell which migration
    files the kept state belongs to (git has already replaced them)."""
    started = time.monotonic()
    engines = _engines(ctx)
    root = ctx.project.root
    top = git.toplevel(root)
    keys = {bs.db_key(e.db) for e in engines}
    other = bs.other_worktree(top, keys)
    if other is not None:
        raise ConfigError(
            f"the database is also the one of worktree {other[0]} (branch {other[1] or 'detached'}): switching it "
            "here would switch it there too; nothing was changed",
            hint="give each worktree its own database name (DB_NAME or DATABASE_URL in its .env)",
        )
    current = bs.marked_branch(ctx.store, keys) or previous
    result = SwitchResult(to_branch=to_branch, from_branch=current, action="none")
    if current == to_branch:
        return result
    head = new_commit or git.commit_of(top, "HEAD")
    if current is None:
        bs.write_marker(ctx.store, keys, to_branch, root, head)
        result.action = "marked"
        return result
    target = bs.find_state(ctx.store, to_branch, keys)
    put = _check_target(ctx, target, engines) if target is not None else {}
    kept = bs.name_for(ctx.store, current, keys)
    old_commit = old_commit or git.commit_of(top, f"refs/heads/{current}")
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    staged = ctx.store.root / f".branch-new-{secrets.token_hex(4)}"
    entries = []
    for e in engines:
        entry: dict = {"alias": e.db.alias, "kind": e.kind}
        if e.kind == "postgresql":
            entry |= {"live": e.db.name, "keep_db": e.clone_name(ctx.store.root, kept, stamp)}  # type: ignore
            entry["keep_oid"] = _oid(e, e.db.name)
            if entry["keep_oid"] is None:
                raise ConfigError(f"database {e.db.name!r} does not exist; nothing was changed")
            if target is not None:
                entry |= {"put_db": put[e.db.alias]["db"], "put_oid": put[e.db.alias]["oid"]}
        else:
            live = Path(e.db.name)
            if not live.is_file():
                raise ConfigError(f"SQLite database {live} does not exist; nothing was changed")
            entry |= {"live_path": str(live), "keep_path": str(staged / f"db-{e.db.alias}.sqlite3")}
            entry["keep_id"] = _identity(live)
            if target is not None:
                entry |= {"put_path": put[e.db.alias]["path"], "put_sha": put[e.db.alias]["sha256"]}
        entries.append(entry)
    journal = {
        "kind": KIND,
        "phase": "preparing",
        "mode": "switch" if target is not None else "copy",
        "from": current,
        "to": to_branch,
        "kept": kept,
        "consumed": target.name if target is not None else None,
        "staged": str(staged),
        "created_at": stamp,
        "old_commit": old_commit,
        "new_commit": head,
        "pid": os.getpid(),
        "databases": entries,
    }
    for e in engines:  # bounded; named in the error before anything changed
        result.sessions += [f"{e.db.alias}: {s}" for s in e.end_sessions()]
    ctx.store.write_journal(journal)
    try:
        _prepare(ctx, journal, engines, top)
        journal["phase"] = "switching" if target is not None else "copying"
        ctx.store.write_journal(journal)
        for e, entry in zip(engines, journal["databases"], strict=True):
            if target is not None:
                _switch(e, entry)
            else:
                _copy(ctx, e, entry)
            ctx.store.write_journal(journal)
            faults.point("branch.after-database")
        journal["phase"] = "finishing"
        ctx.store.write_journal(journal)
        faults.point("branch.before-finish")
        finish(ctx, journal, switched=True)
    except BaseException as exc:
        state = _recover_after_failure(ctx, journal)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(
                f"switching the database to {to_branch} interrupted by {procs.signal_name(exc)}; {state}",
                exit_code=procs.exit_code(exc),
            ) from None
        raise RollbackError(f"switching the database to {to_branch} failed: {failure_line(exc)}; {state}") from exc
    result.action = "switched" if target is not None else "started"
    result.kept, result.consumed = kept, journal["consumed"]
    if target is not None:
        recorded = {f["path"]: f["sha256"] for f in target.manifest.get("migrations", {}).get("files", [])}
        from .rollback import current_files

        now: dict[str, str] = {}
        for f in ctx.project.folders:
            now |= current_files(root, f.path)
        result.files = bs.compare_files(recorded, now)
    # The live databases' history rows without asking them: B's were recorded when its state was kept (a sealed
    # clone or a moved file, unchanged since), a copy's are A's, read just before.
    source = target.manifest if target is not None else json.loads((ctx.store.root / kept / MANIFEST).read_text())
    rows = {a: d.get("migrations") or [] for a, d in source["databases"].items()}
    result.to_apply, result.missing = bs.pending_migrations(ctx, rows)
    result.seconds = time.monotonic() - started
    return result


def _identity(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino]


def _prepare(ctx: Context, journal: dict, engines: list[Engine], top: Path) -> None:
    """The staged folder with A's migration files (as before the checkout) and the manifest's draft; the live
    databases are not touched."""
    project = ctx.project
    staged = private_dir(Path(journal["staged"]))
    folders = [f.path for f in project.folders]
    tree = bs.files_before_checkout(top, project.root, folders, journal["old_commit"], journal["new_commit"])
    try:
        info, mfiles = pack_folders(tree, folders, staged / MIGRATIONS_PAYLOAD)
        blobs = bs.blob_ids(tree, folders)
    finally:
        remove_tree(tree)
    databases = {}
    for e, entry in zip(engines, journal["databases"], strict=True):
        db = e.db
        version, size, rows = _facts(e)
        d = {
            **{k: v for k, v in db.public().items() if k in ("alias", "name", "host", "port", "user")},
            "engine": e.kind,
            "django_engine": db.django_engine,
            "payload": None,
            "raw_bytes": size,
            "server_version": version,
            "client_version": None,  # no tool is run: nothing is dumped
            "migrations": rows,
            "tables": {},
        }
        if e.kind == "postgresql":
            d["clone"] = {"name": entry["keep_db"], "oid": entry["keep_oid"]}
        else:
            d["file"] = {"name": Path(entry["keep_path"]).name}
        databases[db.alias] = d
    draft = {
        **manifest_head(
            project,
            journal["kept"],
            journal["created_at"],
            bs.ORIGIN,
            f"database state of branch {journal['from']}",
            commit=journal["old_commit"],
        ),
        "branch": {"name": journal["from"], "commit": journal["old_commit"], "files": blobs},
        "databases": databases,
        "migrations": migrations_entry(project, mfiles),
        "files": {MIGRATIONS_PAYLOAD: {"bytes": info.bytes, "sha256": info.sha256}},
    }
    atomic_write(staged / DRAFT, json.dumps(draft))


def _switch(e: Engine, entry: dict) -> None:
    """A's database kept, B's put in place: on PostgreSQL both renames in one transaction (the live name is never
    missing); SQLite moves the live file into the store, then B's file into place."""
    if e.kind == "postgresql":
        faults.point("branch.mid-switch")  # the last moment before the transaction
        e.switch_clones(entry["keep_db"], entry["put_db"], entry["put_oid"])  # type: ignore[attr-defined]
        return
    entry |= e.keep_as_clone(Path(entry["keep_path"]))
    faults.point("branch.mid-switch")  # A's file kept, B's not in place yet: recovery finishes or undoes it
    _put(e, entry)


def _put(e: Engine, entry: dict) -> None:
    """B's state into the empty live place (recovery of a switch stopped between SQLite's two moves)."""
    if e.kind == "postgresql":
        e.put_clone_in_place(entry["put_db"], entry["put_oid"])  # type: ignore[attr-defined]
    else:
        e.put_clone_in_place(Path(entry["put_path"]), entry["put_sha"])


def _copy(ctx: Context, e: Engine, entry: dict) -> None:
    """B has no state: A's is kept by a copy (a template copy on the server; SQLite's backup API) and the live
    database stays as it is."""
    if e.kind == "postgresql":
        entry["keep_oid"] = e.make_clone(entry["keep_db"])  # type: ignore[attr-defined]
        e.seal_clone(entry["keep_db"])  # type: ignore[attr-defined]
        return
    dest = Path(entry["keep_path"])
    src = sqlite3.connect(f"file:{Path(entry['live_path']).as_posix()}?mode=ro", uri=True, timeout=5)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # one step: one read transaction, a consistent copy while the app writes
        finally:
            dst.close()
    finally:
        src.close()
    shutil.copymode(entry["live_path"], dest)  # it is put back as the live file one day: the live file's mode
    with open(dest, "rb") as f:
        os.fsync(f.fileno())
    entry |= {"sha256": sha256_file(dest), "bytes": dest.stat().st_size}


# -- finishing and recovery -------------------------------------------------------------------------------------


def where(e: Engine, entry: dict) -> str:
    """Whose state the live database holds now: ``A``, ``B``, or ``none`` (no live database: between a keep
    and a put). Judged from the server (oids) and the files (inodes), never from the journal's phase."""
    if e.kind == "postgresql":
        live = _oid(e, entry["live"])
        if live is None:
            return "none"
        return "B" if entry.get("put_oid") is not None and live == entry["put_oid"] else "A"
    ident = _identity(Path(entry["live_path"]))
    if ident is None:
        return "none"
    return "A" if ident == entry.get("keep_id") else "B"


def finish(ctx: Context, journal: dict, switched: bool = False) -> None:
    """Forward: every database switched (or copied); commit A's state, drop B's (now live), mark B. Idempotent.
    ``switched``: the caller has just switched every database itself (nothing to look up on the server)."""
    journal["phase"] = "finishing"
    ctx.store.write_journal(journal)
    engines = {e.db.alias: e for e in _journal_engines(ctx, journal)}
    for entry in journal["databases"]:
        e = engines[entry["alias"]]
        if journal["mode"] == "switch" and not switched:
            state = where(e, entry)
            if state == "A":
                _switch(e, entry)
            elif state == "none":
                _put(e, entry)
    staged = Path(journal["staged"])
    if (staged / DRAFT).is_file():
        manifest = json.loads((staged / DRAFT).read_text())
        for entry in journal["databases"]:
            if entry["kind"] == "sqlite":
                path = Path(entry["keep_path"])
                sha = entry.get("sha256") or sha256_file(path)
                f = {"name": path.name, "sha256": sha, "bytes": path.stat().st_size}
                d = manifest["databases"][entry["alias"]]
                # Also as a clone-only SQLite database (``clone.file``, checksummed there, not in ``files``), so
                # verify, rollback and save --from treat a branch state like a rollback's kept safety snapshot.
                d |= {"file": f, "clone": {"file": path.name, "sha256": sha}, "clone_bytes": f["bytes"]}
            else:
                manifest["databases"][entry["alias"]]["clone"]["oid"] = entry["keep_oid"]
        key = load_key(ctx.env)
        if key is not None:
            manifest["seal"] = make_seal(manifest, key)
        atomic_write(staged / MANIFEST, dump_manifest(manifest))
        (staged / DRAFT).unlink()
        fsync_dir(staged)
    if staged.is_dir():
        dest = ctx.store.root / journal["kept"]
        if dest.exists():  # an older state of the same branch: replaced (its clone dropped after the commit)
            from .save import drop_clones

            old = ctx.store.get(journal["kept"])
            ctx.store.delete(old)
            drop_clones(ctx, old)
        os.rename(staged, dest)
        fsync_dir(ctx.store.root)
    faults.point("branch.after-commit")
    consumed = journal.get("consumed")
    if consumed and ctx.store.exists(consumed):
        ctx.store.delete(ctx.store.get(consumed))  # its database is the live one now: only the folder goes
    keys = {bs.db_key(e.db) for e in engines.values()}
    bs.write_marker(ctx.store, keys, journal["to"], ctx.project.root, journal.get("new_commit"))
    ctx.store.clear_journal()


def undo(ctx: Context, journal: dict) -> None:
    """Back to A: B's database (if in place) renamed back to its state, A's put back, copies dropped. Idempotent."""
    journal["phase"] = "undoing"
    ctx.store.write_journal(journal)
    for e, entry in reversed(list(zip(_journal_engines(ctx, journal), journal["databases"], strict=True))):
        at = where(e, entry)
        if at == "B":
            if e.kind == "postgresql":
                e.keep_as_clone(entry["put_db"])
            else:
                os.rename(entry["live_path"], entry["put_path"])
                fsync_dir(Path(entry["live_path"]).parent)
            at = "none"
        if at == "none":
            if e.kind == "postgresql":
                e.put_clone_in_place(entry["keep_db"], entry["keep_oid"])
            else:
                os.rename(entry["keep_path"], entry["live_path"])
                fsync_dir(Path(entry["live_path"]).parent)
        if journal["mode"] == "copy" and e.kind == "postgresql":
            e.drop_stray_clone(entry["keep_db"], ctx.store.root)  # type: ignore[attr-defined]
    remove_tree(Path(journal["staged"]))
    ctx.store.clear_journal()


def _journal_engines(ctx: Context, journal: dict) -> list[Engine]:
    out = []
    for entry in journal["databases"]:
        db = ctx.project.databases.get(entry["alias"])
        if db is None or db.kind != entry["kind"]:
            raise RollbackError(f"cannot recover the branch switch: database {entry['alias']!r} is not configured")
        out.append(ctx.engine(db))
    return out


def recover(ctx: Context, journal: dict) -> str:
    """Finish or undo the switch the journal describes: ``forward`` (B's state live) or ``undone`` (A's)."""
    phase = journal.get("phase")
    if phase == "switching":
        engines = _journal_engines(ctx, journal)
        done = all(where(e, en) == "B" for e, en in zip(engines, journal["databases"], strict=True))
        phase = "finishing" if done else "undoing"
    if phase == "finishing":
        finish(ctx, journal)
        return "forward"
    undo(ctx, journal)
    return "undone"


def recover_pending(ctx: Context, journal: dict) -> str:
    try:
        outcome = recover(ctx, journal)
    except DbsnapError:
        raise
    except Exception as e:
        raise RollbackError(
            f"an interrupted switch of the database to {journal.get('to')} could not be finished or undone: {e}",
            hint="the journal is kept in the store; fix the cause, then any dbsnap command retries",
        ) from e
    whose = journal.get("to") if outcome == "forward" else journal.get("from")
    ctx.reporter.warn(
        f"an interrupted switch of the database from {journal.get('from')} to {journal.get('to')} was found and "
        f"{'finished' if outcome == 'forward' else 'undone'}: the database holds {whose}'s state"
    )
    return outcome


def _recover_after_failure(ctx: Context, journal: dict) -> str:
    try:
        outcome = recover(ctx, journal)
    except BaseException as e:
        return f"undoing it failed too ({e}); the journal is kept and the next dbsnap command will retry"
    if outcome == "forward":
        return f"the database is {journal['to']}'s state (the switch was completed)"
    return f"nothing was changed (the database is still {journal['from']}'s)"
