"""Branch states: where a branch's database state is kept, what the live database is marked as, and which
migration files a state belongs to.

A branch state is a snapshot like any other (``list``, ``show``, ``delete``; origin ``branch``), named
``branch-<name>`` with the branch name made safe for the store (``feature/x`` -> ``branch-feature-x-3f2a1c``: a
short hash of the real name is added whenever the name had to change, so two branches never share one); the real
name is in the manifest (``branch.name``). Its databases are clone-only: ``payload`` null, the PostgreSQL database
kept by rename as a sealed clone (``clone: {name, oid}``), the SQLite file moved into the snapshot folder
(``file: {name, sha256, bytes}``, also checksummed in ``files``).

The marker ``<store>/.branch.json`` says whose state each live database is, keyed by the database itself
(engine, host, port, name), so worktrees with their own databases share a store without confusion.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from ..context import Context
from ..project import git
from ..project.databases import Database
from ..store.archive import list_folder
from ..store.fsutil import atomic_write
from ..store.snapshots import Snapshot, Store

ORIGIN = "branch"
PREFIX = "branch-"
MARKER = ".branch.json"
REGISTRY = "dbsnap-worktrees.json"  # in the repository's common git folder: which worktree uses which database


def db_key(db: Database) -> str:
    """The database itself: ``postgresql:host:port:name``, or ``sqlite:<absolute path>``."""
    if db.kind == "sqlite":
        return f"sqlite:{Path(db.name).absolute()}"
    return f"{db.kind}:{db.host or 'local'}:{db.port or ''}:{db.name}"


def safe_name(branch: str) -> str:
    """``branch-<branch>`` when the branch name is a valid snapshot name as it is, else its letters, digits and
    ``._-`` with a 6-hex hash of the real name (``feature/x`` -> ``branch-feature-x-<hash>``)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", branch).strip("-.")[:60] or "unnamed"
    if clean != branch or ".." in branch:
        clean = clean.replace("..", ".") + "-" + hashlib.sha256(branch.encode()).hexdigest()[:6]
    return PREFIX + clean


def state_keys(snap: Snapshot) -> set[str]:
    """The database keys a branch state holds (as :func:`db_key` makes them)."""
    keys = set()
    for d in snap.databases.values():
        if not isinstance(d, dict):
            continue
        if d.get("engine") == "sqlite":
            keys.add(f"sqlite:{Path(str(d.get('name'))).absolute()}")
        else:
            keys.add(f"{d.get('engine')}:{d.get('host') or 'local'}:{d.get('port') or ''}:{d.get('name')}")
    return keys


def is_state(snap: Snapshot) -> bool:
    return snap.origin == ORIGIN and isinstance(snap.manifest.get("branch"), dict)


def branch_of(snap: Snapshot) -> str:
    return str(snap.manifest["branch"].get("name"))


def states(store: Store, keys: set[str] | None = None) -> list[Snapshot]:
    """The store's branch states (of the databases ``keys`` when given), oldest first."""
    return [s for s in store.list() if is_state(s) and (keys is None or state_keys(s) == keys)]


def find_state(store: Store, branch: str, keys: set[str]) -> Snapshot | None:
    """The saved state of ``branch`` for these databases (the newest, should there be several)."""
    found = [s for s in states(store, keys) if branch_of(s) == branch]
    return found[-1] if found else None


def name_for(store: Store, branch: str, keys: set[str]) -> str:
    """The snapshot name a state of ``branch`` gets: its existing state's (which it replaces), else the safe
    name, with ``-2``, ``-3``... if another branch or another database's state holds that name."""
    existing = find_state(store, branch, keys)
    if existing is not None:
        return existing.name
    base = name = safe_name(branch)
    n = 1
    while store.exists(name):
        n += 1
        name = f"{base[:96]}-{n}"
    return name


# -- the marker ------------------------------------------------------------------------------------------------


def read_marker(store: Store) -> dict:
    try:
        data = json.loads((store.root / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data.get("databases", {}) if isinstance(data, dict) and isinstance(data.get("databases"), dict) else {}


def marked_branch(store: Store, keys: set[str]) -> str | None:
    """The branch the live databases are marked as (None when unmarked or when they disagree)."""
    marker = read_marker(store)
    found = {marker.get(k, {}).get("branch") if isinstance(marker.get(k), dict) else None for k in keys}
    one = found.pop() if len(found) == 1 else None
    return one if isinstance(one, str) else None


def write_marker(store: Store, keys: set[str], branch: str, root: Path, commit: str | None = None) -> None:
    marker = read_marker(store)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for k in keys:
        marker[k] = {"branch": branch, "since": now, "root": str(root), "commit": commit}
    store.ensure()
    atomic_write(store.root / MARKER, json.dumps({"databases": marker}, indent=2, sort_keys=True) + "\n")


# -- worktrees -------------------------------------------------------------------------------------------------


def other_worktree(top: Path, keys: set[str]) -> tuple[Path, str | None] | None:
    """Another live worktree of this repository that uses one of these databases, as registered by the last
    switch there; None (and this worktree registered) otherwise."""
    path = git.common_dir(top) / REGISTRY
    try:
        reg = json.loads(path.read_text())
    except (OSError, ValueError):
        reg = {}
    reg = reg if isinstance(reg, dict) else {}
    owners = {reg.get(k) for k in keys} - {None, str(top)}
    if owners:  # only then ask git which worktrees still exist (a child process less on every switch)
        live = {str(r): b for r, b in git.worktrees(top)}
        for owner in owners:
            if isinstance(owner, str) and owner in live:
                return Path(owner), live[owner]
    changed = {k: str(top) for k in keys if reg.get(k) != str(top)}
    if changed:
        atomic_write(path, json.dumps(reg | changed, indent=2, sort_keys=True) + "\n")
    return None


# -- migration files ---------------------------------------------------------------------------------------


def files_before_checkout(top: Path, root: Path, folders: list[str], old: str | None, new: str | None) -> Path:
    """A temporary tree (caller removes it) holding the migration folders as they were before git checked out
    ``new`` over ``old``: the files on disk, except those the two commits differ in, which git replaced (git
    refuses a checkout that would overwrite local changes, so those files were exactly ``old``'s)."""
    tmp = Path(tempfile.mkdtemp(prefix="dbsnap-branch-files-"))
    prefix = root.relative_to(top).as_posix()
    rel_top = [f if prefix == "." else f"{prefix}/{f}" for f in folders]
    before = git.tree_files(top, old, rel_top) if old and old != new else {}
    after = git.tree_files(top, new, rel_top) if new and old and old != new else {}
    replaced = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    for folder in folders:
        base = root / folder
        if base.is_dir():
            shutil.copytree(base, tmp / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (tmp / folder).mkdir(parents=True, exist_ok=True)
    for p in replaced:
        rel = p if prefix == "." else p[len(prefix) + 1 :]
        dest = tmp / rel
        if p in before:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(git.blob(top, old, p))  # type: ignore[arg-type]
        elif dest.exists():
            dest.unlink()
    return tmp


def blob_ids(root: Path, folders: list[str]) -> dict[str, str]:
    """``{path relative to root: git blob id}`` of the files a snapshot keeps from ``folders`` under ``root``."""
    out = {}
    for folder in folders:
        base = root / folder
        if base.is_dir():
            for p in list_folder(base):
                out[p.relative_to(root).as_posix()] = git.blob_id(p.read_bytes())
    return out


def branch_files(top: Path, root: Path, folders: list[str], branch: str) -> dict[str, str] | None:
    """``{path relative to root: blob id}`` of the migration files at the tip of ``branch`` (None: no such branch)."""
    commit = git.commit_of(top, f"refs/heads/{branch}")
    if commit is None:
        return None
    prefix = root.relative_to(top).as_posix()
    rel_top = [f if prefix == "." else f"{prefix}/{f}" for f in folders]
    files = git.tree_files(top, commit, rel_top)
    cut = 0 if prefix == "." else len(prefix) + 1
    return {p[cut:]: b for p, b in files.items() if not p.endswith(".pyc")}


def compare_files(recorded: dict[str, str], now: dict[str, str]) -> dict[str, list[str]]:
    """What differs between two ``{path: hash}`` maps: ``new`` (only now), ``gone`` (only recorded), ``changed``."""
    return {
        "new": sorted(now.keys() - recorded.keys()),
        "gone": sorted(recorded.keys() - now.keys()),
        "changed": sorted(p for p in now.keys() & recorded.keys() if now[p] != recorded[p]),
    }


def pending_migrations(ctx: Context, rows: dict[str, list[list[str]]]) -> tuple[list[str], list[str]]:
    """(files on disk not applied, applied rows with no file on disk) of the project's own apps, from the
    ``django_migrations`` rows of each database: what ``migrate`` would apply, and what it cannot undo."""
    folders = {f.app: f.path for f in ctx.project.folders}
    on_disk: set[tuple[str, str]] = set()
    for app, path in folders.items():
        base = ctx.project.root / path
        if base.is_dir():
            on_disk |= {(app, p.stem) for p in base.glob("*.py") if p.name != "__init__.py"}
    applied = {(a, n) for rs in rows.values() for a, n in rs if a in folders}
    to_apply = sorted(f"{a}.{n}" for a, n in on_disk - applied)
    missing = sorted(f"{a}.{n}" for a, n in applied - on_disk)
    return to_apply, missing
