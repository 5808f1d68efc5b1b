"""The save pipeline: stage -> dump every database -> tar the migration folders -> manifest -> commit.

Callers hold the store lock. On any failure (including Ctrl-C and a full disk) the staging folder is removed,
so the store holds either the whole new snapshot or nothing new.
"""

from __future__ import annotations

import contextlib
import json
import platform
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__, faults, procs
from ..context import Context
from ..errors import DbsnapError, UsageError
from ..store import confine
from ..store.archive import pack_folders
from ..store.fsutil import atomic_write, remove_tree
from ..store.seal import load_key, make_seal
from ..store.snapshots import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MIGRATIONS_PAYLOAD,
    Snapshot,
    dump_manifest,
    validate_name,
)

if TYPE_CHECKING:
    from ..project.discovery import Project


@dataclass
class SaveResult:
    snapshot: Snapshot
    raw_bytes: int
    stored_bytes: int
    seconds: float
    pruned: object | None = None  # the PrunePlan when the save was followed by a prune
    prune_warning: str | None = None  # why a requested prune did not happen (the save did)

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 0.0


def default_name(prefix: str = "snap") -> str:
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def unique_name(ctx: Context, prefix: str) -> str:
    """``prefix-YYYYmmdd-HHMMSS``, with ``-2``, ``-3``... when that second is already taken."""
    base = default_name(prefix)
    name, n = base, 1
    while ctx.store.exists(name):
        n += 1
        name = f"{base}-{n}"
    return name


def git_commit(root: Path) -> str | None:
    try:
        out = procs.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def manifest_head(
    project: Project,
    name: str,
    created_at: str,
    origin: str,
    note: str,
    *,
    pinned: bool = False,
    commit: str | bool | None = True,
) -> dict:
    """The fields every manifest starts with (format, name, origin, versions, host, the project); ``commit``: the
    git commit the state belongs to, when it is not the one checked out now (a branch state; None: unknown)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "created_at": created_at,
        "origin": origin,
        "pinned": pinned,
        "note": note,
        "dbsnap_version": __version__,
        "django_version": project.django_version,
        "python_version": platform.python_version(),
        "host": socket.gethostname(),
        "project": {
            "root": str(project.root),
            "settings_module": project.settings_module,
            "git_commit": git_commit(project.root) if commit is True else commit,
            "discovery": "fallback" if project.fallback else "settings",
        },
    }


def migrations_entry(project: Project, mfiles: list) -> dict:
    """The manifest's ``migrations``: the archive, the folders it holds and every file's checksum."""
    return {
        "payload": MIGRATIONS_PAYLOAD,
        "folders": [{"app": f.app, "path": f.path} for f in project.folders],
        "files": mfiles,
    }


def take_snapshot(
    ctx: Context,
    name: str,
    *,
    origin: str = "manual",
    note: str | None = None,
    pin: bool = False,
    force: bool = False,
    verify: bool = False,
    clone: bool = False,
) -> SaveResult:
    """Write a complete snapshot called ``name`` of the selected databases and the migration folders.

    With ``verify`` the staged snapshot is checked (checksums, complete streams) before it is committed.
    With ``clone`` each PostgreSQL database is also copied on the server (fast rollback), and dumped from that copy;
    each SQLite database keeps the consistent copy its dump is made from, uncompressed, in the snapshot folder.
    """
    validate_name(name)
    if ctx.store.exists(name) and not force:
        raise UsageError(f"snapshot {name!r} already exists", hint="use --force to replace it, or choose another name")
    project = ctx.project
    dbs = ctx.databases()
    engines = [ctx.engine(db) for db in dbs]
    facts = [e.preflight() for e in engines]  # before staging anything: a missing tool fails fast
    key = load_key(ctx.env)  # an unreadable or too-open key file fails before anything is written
    started = time.monotonic()
    created = datetime.now(timezone.utc)
    staged = ctx.store.stage(name)
    stamp = created.isoformat(timespec="microseconds").replace("+00:00", "Z")
    clones: list[tuple[object, dict]] = []  # (engine, {"name", "oid"}) made by this save
    replaced = ctx.store.get(name) if force and ctx.store.exists(name) else None
    pending = clone_record(staged)
    try:
        databases = {}
        files = {}
        raw_total = 0
        for engine, fact in zip(engines, facts, strict=True):
            db = engine.db
            ctx.reporter.step(f"dumping {db.describe()}")
            t0 = time.monotonic()
            counter = ctx.reporter.progress(f"dump {db.alias}")
            made = _make_clone(ctx, engine, name, stamp, pending) if clone else None
            if made:
                clones.append((engine, made))
            if clone and hasattr(engine, "clone_file"):
                # SQLite: the consistent copy the dump is compressed from is kept as the clone (meta["clone"]).
                result = engine.dump(staged / engine.payload_name(), counter, keep=staged / engine.clone_file())
            else:
                result = engine.dump(staged / engine.payload_name(), counter, made["name"] if made else None)
            counter.close()
            if made:
                engine.seal_clone(made["name"])
            faults.point("save.after-dump")
            raw_total += result.payload.raw_bytes
            files[engine.payload_name()] = {"bytes": result.payload.bytes, "sha256": result.payload.sha256}
            databases[db.alias] = {
                **{k: v for k, v in db.public().items() if k in ("alias", "name", "host", "port", "user")},
                "engine": engine.kind,
                "django_engine": db.django_engine,
                "payload": engine.payload_name(),
                "raw_bytes": result.payload.raw_bytes,
                "server_version": fact.get("server_version"),
                "client_version": fact.get("client_version"),
                "migrations": result.migrations,
                "tables": result.tables,
                **({"clone": made} if made else {}),
                "seconds": round(time.monotonic() - t0, 3),
                **result.meta,
            }
        ctx.reporter.step(f"archiving {len(project.folders)} migration folders")
        folders = [f.path for f in project.folders]
        info, mfiles = pack_folders(project.root, folders, staged / MIGRATIONS_PAYLOAD)
        raw_total += info.raw_bytes
        files[MIGRATIONS_PAYLOAD] = {"bytes": info.bytes, "sha256": info.sha256}
        manifest = {
            **manifest_head(project, name, stamp, origin, note or "", pinned=pin),
            "databases": databases,
            "migrations": migrations_entry(project, mfiles),
            "files": files,
            "seconds": round(time.monotonic() - started, 3),
        }
        if key is not None:
            manifest["seal"] = make_seal(manifest, key)
        sealed = dump_manifest(manifest)
        atomic_write(staged / MANIFEST, sealed)
        if verify:
            from .verify import check_files

            ctx.reporter.step("verifying the new snapshot before committing it")
            check_files(ctx.store, Snapshot(name=name, path=staged, manifest=json.loads(sealed)))
        faults.point("save.before-commit")
        snap = ctx.store.commit(staged, name, force=force)
    except BaseException:
        ctx.reporter.stop_progress()  # no progress line goes on ticking over the error
        remove_tree(staged)
        for engine, made in clones:
            with contextlib.suppress(Exception):
                engine.drop_clone(made)  # type: ignore[attr-defined]
        pending.unlink(missing_ok=True)
        raise
    pending.unlink(missing_ok=True)  # the manifest records the clones now
    if replaced is not None:
        drop_clones(ctx, replaced)  # the replaced snapshot's server-side copies go with it
    stored = sum(f["bytes"] for f in files.values())
    return SaveResult(snapshot=snap, raw_bytes=raw_total, stored_bytes=stored, seconds=time.monotonic() - started)


def clone_record(staged: Path) -> Path:
    """``.tmp/<staged>.clones``: the clones a save is making, written BEFORE each is created, so that the next
    locked run can drop those of a save that was killed (:func:`drop_interrupted_clones`)."""
    return staged.with_name(staged.name + ".clones")


def _make_clone(ctx: Context, engine, name: str, stamp: str, pending: Path) -> dict | None:
    """A server-side copy for fast rollback, or None (with a warning) where there cannot be one."""
    if not hasattr(engine, "make_clone"):
        if not hasattr(engine, "clone_file"):  # SQLite keeps its copy in the snapshot folder (the dump's source)
            ctx.reporter.warn(
                f"no clone of {engine.db.alias!r}: {engine.kind} has no copy of a database on the server that "
                "could be renamed into place; the snapshot is saved without one"
            )
        return None
    clone_name = engine.clone_name(ctx.store.root, name, stamp)
    recorded = json.loads(pending.read_text()) if pending.exists() else []
    atomic_write(pending, json.dumps([*recorded, {"alias": engine.db.alias, "name": clone_name}]))
    faults.point("save.after-clone-record")
    try:
        return {"name": clone_name, "oid": engine.make_clone(clone_name)}
    except DbsnapError as e:
        ctx.reporter.warn(f"no clone of {engine.db.alias!r}: {e.message}; the snapshot is saved without one")
        return None


def drop_clones(ctx: Context, snap: Snapshot) -> list[str]:
    """Drop the server-side clones recorded in a snapshot's manifest; warn (never fail) when one cannot be."""
    dropped = []
    for alias, saved in snap.databases.items():
        clone = saved.get("clone")
        if not clone or not isinstance(clone, dict) or clone.get("name") is None:
            continue  # none, or a kept SQLite file (it went with the snapshot's folder)
        try:
            db = ctx.project.databases.get(alias)
            if db is None or db.kind != saved.get("engine"):
                raise DbsnapError(f"database {alias!r} is not configured in this project")
            confine.derived_db_name(ctx.rules(), alias, clone.get("name"), f"snapshot {snap.name!r}")
            if ctx.engine(db).drop_clone(clone):
                dropped.append(clone["name"])
        except DbsnapError as e:
            ctx.reporter.warn(
                f"clone {clone['name']} of deleted snapshot {snap.name!r} was left on the server: {e.message}"
            )
    return dropped


def referenced_clones(ctx: Context) -> set[str]:
    """Names of the clones that committed snapshots of this store record."""
    return {
        saved["clone"]["name"]
        for snap in ctx.store.list()
        for saved in snap.databases.values()
        if isinstance(saved.get("clone"), dict) and isinstance(saved["clone"].get("name"), str)
    }


def drop_interrupted_clones(ctx: Context) -> list[str]:
    """Drop the clones that killed saves recorded in ``.tmp`` (caller holds the lock, before ``clean_tmp``).

    A recorded name is used only if it is a clone name of a configured PostgreSQL database for THIS store,
    and no committed snapshot records it (a save killed after its commit). One that cannot be dropped now is
    named in a warning; ``dbsnap doctor`` lists it with the command to drop it."""
    records = sorted(ctx.store.tmp.glob("*.clones")) if ctx.store.tmp.is_dir() else []
    if not records:
        return []
    dropped: list[str] = []
    try:
        keep = referenced_clones(ctx)
        databases = ctx.project.databases
    except DbsnapError as e:
        ctx.reporter.warn(f"clones of an interrupted save were not checked: {e.message}; see 'dbsnap doctor'")
        return []
    for record in records:
        try:
            entries = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        for entry in entries if isinstance(entries, list) else []:
            alias, name = (entry.get("alias"), entry.get("name")) if isinstance(entry, dict) else (None, None)
            db = databases.get(alias) if isinstance(alias, str) else None
            if db is None or db.kind != "postgresql" or name in keep:
                continue
            engine = ctx.engine(db)
            try:
                if engine.drop_stray_clone(name, ctx.store.root):  # type: ignore[attr-defined]
                    dropped.append(name)
                    ctx.reporter.warn(f"dropped clone {name} left on the server by an interrupted save")
            except DbsnapError as e:
                ctx.reporter.warn(f"clone {name} of an interrupted save is still on the server: {e.message}")
    return dropped
