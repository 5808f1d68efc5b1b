"""Comparing states: the live project against a snapshot (``status``) and two snapshots (``diff``).

Nothing here changes anything or takes the store lock. ``status`` and ``diff`` gather plain data (file hashes,
``django_migrations`` rows, row counts), compare it with the pure functions of :mod:`.changes` and return
dataclasses, which the CLI renders.

Whether the database and the migration files agree is decided, by default, from the files alone: a migration of
one of the project's own apps is a top-level ``*.py`` module of its migration folder whose name does not start with
``_`` or ``~`` (what Django's ``MigrationLoader`` loads), named by its file stem, and a squashed migration
(``replaces = [...]``, read with ``ast``) counts as applied when everything it replaces is. That needs no Django and
no child process, but it only covers the project's own apps. ``use_django=True`` asks Django's ``MigrationLoader``
in a ``manage.py`` child process instead (:func:`dbsnap.project.manage_steps.verify_state`): every app,
django.contrib and third-party ones included, plus model tables missing from the database; slower, and it needs a
loadable migration graph.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..context import Context
from ..errors import ConfigError, IntegrityError
from ..project.manage_steps import verify_state
from ..project.migration_scan import Row, disk_migrations, row
from ..store import confine
from ..store.archive import open_archive
from ..store.snapshots import MIGRATIONS_PAYLOAD, Snapshot, Store
from .changes import FileChanges, TableChange, file_changes, history_problems, row_changes, table_changes, unified_patch
from .rollback import current_files


def archive_files(snap: Snapshot, paths: Iterable[str]) -> dict[str, bytes]:
    """The content of the given files from a snapshot's migration archive, read as a stream (only the wanted
    files are kept in memory) and checked against the manifest's SHA-256."""
    wanted = set(paths)
    if not wanted:
        return {}
    hashes = {f["path"]: f["sha256"] for f in snap.manifest["migrations"]["files"]}
    name = snap.manifest["migrations"].get("payload", MIGRATIONS_PAYLOAD)
    payload = snap.path / confine.check_payload(name, snap.path, f"snapshot {snap.name!r}")
    if not payload.is_file():
        raise IntegrityError(f"snapshot {snap.name!r}: payload {payload.name} is missing")
    found: dict[str, bytes] = {}
    try:
        with open_archive(payload) as tar:
            for m in tar:
                if m.name not in wanted or not m.isfile():
                    continue
                f = tar.extractfile(m)
                data = f.read() if f is not None else b""
                if hashlib.sha256(data).hexdigest() != hashes.get(m.name):
                    raise IntegrityError(
                        f"snapshot {snap.name!r}: {m.name} in {payload.name} does not match its SHA-256 in the manifest"
                    )
                found[m.name] = data
                if len(found) == len(wanted):
                    break
    except tarfile.TarError as e:
        raise IntegrityError(f"snapshot {snap.name!r}: {payload.name} is not a readable tar archive ({e})") from e
    missing = sorted(wanted - found.keys())
    if missing:
        raise IntegrityError(
            f"snapshot {snap.name!r}: {missing[0]} is listed in the manifest but not in {payload.name}"
        )
    return found


# -- status: the live state against a snapshot ----------------------------------------------------------------


@dataclass
class DatabaseStatus:
    """One live database: its applied migrations against the snapshot's, and against the files on disk now."""

    alias: str
    engine: str
    applied: int
    in_snapshot: bool
    migrations_added: list[Row] = field(default_factory=list)  # applied now, not in the snapshot
    migrations_removed: list[Row] = field(default_factory=list)  # in the snapshot, not applied now
    unapplied: list[Row] = field(default_factory=list)  # migration files with no row
    stale: list[Row] = field(default_factory=list)  # rows with no migration file
    missing_tables: list[str] | None = None  # model tables not in the database (use_django only)

    @property
    def in_sync(self) -> bool:
        return not (self.unapplied or self.stale or self.missing_tables)


@dataclass
class Status:
    """``dbsnap status``: what changed since a snapshot, and whether the database and the files agree now."""

    store: str
    snapshot: str | None  # None: the store has no snapshot (only the "agree now" part is filled in)
    created_at: str | None
    files: FileChanges | None
    new_folders: list[str]  # migration folders now that the snapshot does not have
    missing_folders: list[str]  # migration folders of the snapshot that do not exist now
    databases: list[DatabaseStatus]
    missing_databases: list[str]  # aliases in the snapshot that the project no longer defines
    checked_by: str  # "files" (own apps, no Django) or "django" (MigrationLoader, every app)
    files_reason: str | None = None  # why the files were read instead of asking Django

    @property
    def in_sync(self) -> bool:
        return all(d.in_sync for d in self.databases)


def status(ctx: Context, against: str | None = None, *, use_django: bool | None = None) -> Status:
    """The live project against snapshot ``against`` (default: ``latest``, as everywhere: the newest that is not a
    rollback's own safety snapshot, else the newest; none at all is fine). ``use_django`` None: Django's
    MigrationLoader whenever the project's settings import (what ``manage.py migrate`` would see), the files
    otherwise (and ``files_reason`` says why)."""
    if against is not None:
        snap: Snapshot | None = ctx.store.get(against)
    else:
        snaps = ctx.store.list()
        chosen = [s for s in snaps if s.origin != "pre-rollback"] or snaps
        snap = chosen[-1] if chosen else None
    if snap is not None:
        ctx.store.verify_manifest(snap)
    project = ctx.project
    files_reason = None
    chosen = use_django is not None
    if use_django is None:
        use_django = project.fallback is None
        if not use_django:
            files_reason = f"the settings could not be imported: {project.fallback}"
    elif not use_django:
        files_reason = "asked for with --files"
    root = project.root
    live = [(f.app, f.path) for f in project.folders]
    live_paths = [p for _, p in live]
    saved = [(f["app"], f["path"]) for f in snap.manifest["migrations"]["folders"]] if snap else []
    saved_paths = [p for _, p in saved]

    files = None
    new_folders: list[str] = []
    missing_folders: list[str] = []
    if snap is not None:
        then = {f["path"]: f["sha256"] for f in snap.manifest["migrations"]["files"]}
        now: dict[str, str] = {}
        for path in dict.fromkeys(saved_paths + live_paths):
            now.update(current_files(root, path))
        files = file_changes(then, now)
        new_folders = [p for p in live_paths if p not in saved_paths]
        missing_folders = [p for p in saved_paths if not (root / p).is_dir()]

    disk = disk_migrations(root, live)
    own_apps = {a for a, _ in live} | {a for a, _ in saved}
    databases = []
    for db in ctx.databases():
        rows = ctx.engine(db).migration_rows()
        entry = snap.databases.get(db.alias) if snap is not None else None
        added, removed = row_changes(entry.get("migrations", []), rows) if entry is not None else ([], [])
        state = None
        if use_django:
            ctx.reporter.step(f"asking Django's MigrationLoader about {db.alias}")
            try:
                state = verify_state(project, db.alias)
            except ConfigError as e:
                # A broken history (a dependency on a deleted file) is what status is for: unless --django was
                # asked for, report it from the files rather than not at all.
                if chosen:
                    raise
                use_django = False
                files_reason = f"Django's MigrationLoader failed ({e.message})"
        if state is not None:
            known = set(disk) | {r for reps in disk.values() for r in reps}
            unapplied = [row(r) for r in state["unapplied"]]
            stale = [row(r) for r in state["stale"] if row(r) not in known]
            missing_tables: list[str] | None = list(state.get("missing_tables", []))
        else:
            unapplied, stale = history_problems(rows, disk, own_apps)
            missing_tables = None
        databases.append(
            DatabaseStatus(
                alias=db.alias,
                engine=db.kind,
                applied=len(rows),
                in_snapshot=entry is not None,
                migrations_added=added,
                migrations_removed=removed,
                unapplied=unapplied,
                stale=stale,
                missing_tables=missing_tables,
            )
        )
    missing_dbs = []
    if snap is not None and not ctx.settings.databases:
        missing_dbs = [a for a in snap.databases if a not in project.databases]
    return Status(
        store=str(ctx.store.root),
        snapshot=snap.name if snap else None,
        created_at=snap.manifest.get("created_at") if snap else None,
        files=files,
        new_folders=new_folders,
        missing_folders=missing_folders,
        databases=databases,
        missing_databases=missing_dbs,
        checked_by="django" if use_django else "files",
        files_reason=files_reason,
    )


# -- diff: two snapshots --------------------------------------------------------------------------------------


@dataclass
class Side:
    """One snapshot of a diff: identity, age and sizes (``files``: payload file name -> bytes)."""

    name: str
    created_at: str
    origin: str
    pinned: bool
    note: str
    bytes: int
    files: dict[str, int]
    migration_files: int


@dataclass
class DatabaseDiff:
    """One database alias across the two snapshots (``engine_a``/``engine_b`` is None where it is absent)."""

    alias: str
    engine_a: str | None
    engine_b: str | None
    migrations_added: list[Row]
    migrations_removed: list[Row]
    tables: list[TableChange]  # added, removed or with another row count
    tables_unchanged: int


@dataclass
class Diff:
    a: Side
    b: Side
    files: FileChanges
    databases: list[DatabaseDiff]
    patches: dict[str, str] | None = None  # path -> unified diff, for each changed file (with patch=True)


def _side(snap: Snapshot) -> Side:
    m = snap.manifest
    return Side(
        name=snap.name,
        created_at=m.get("created_at", ""),
        origin=snap.origin,
        pinned=snap.pinned,
        note=m.get("note", ""),
        bytes=snap.size,
        files={k: v["bytes"] for k, v in sorted(m.get("files", {}).items())},
        migration_files=len(m["migrations"]["files"]),
    )


def diff(store: Store, a: str, b: str, *, patch: bool = False) -> Diff:
    """Compare snapshots ``a`` and ``b`` (``latest`` works) from their manifests; with ``patch``, read both
    migration archives for a unified diff of each changed file."""
    sa, sb = store.get(a), store.get(b)
    for s in (sa, sb):
        store.verify_manifest(s)
    files = file_changes(
        {f["path"]: f["sha256"] for f in sa.manifest["migrations"]["files"]},
        {f["path"]: f["sha256"] for f in sb.manifest["migrations"]["files"]},
    )
    databases = []
    for alias in dict.fromkeys([*sa.databases, *sb.databases]):
        da, db = sa.databases.get(alias), sb.databases.get(alias)
        added, removed = row_changes((da or {}).get("migrations", []), (db or {}).get("migrations", []))
        ta, tb = (da or {}).get("tables", {}), (db or {}).get("tables", {})
        changes = table_changes(ta, tb)
        databases.append(
            DatabaseDiff(
                alias=alias,
                engine_a=da.get("engine") if da else None,
                engine_b=db.get("engine") if db else None,
                migrations_added=added,
                migrations_removed=removed,
                tables=changes,
                tables_unchanged=len(ta.keys() & tb.keys()) - sum(1 for c in changes if c.kind == "changed"),
            )
        )
    patches = None
    if patch:
        old, new = archive_files(sa, files.changed), archive_files(sb, files.changed)
        patches = {p: unified_patch(p, old[p], new[p], sa.name, sb.name) for p in files.changed}
    return Diff(a=_side(sa), b=_side(sb), files=files, databases=databases, patches=patches)
