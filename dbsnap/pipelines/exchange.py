"""export and import: snapshots to and from the plain dumps of the rest of the ecosystem.

``export`` writes a snapshot's database as the engine's own plain dump (PostgreSQL: the ``pg_dump -Fc`` file that
``pg_restore`` reads; SQLite: the database file; MySQL: the SQL the ``mysql`` client loads), after checking its
checksums. ``import`` takes such a dump
(gzip-compressed too, as django-dbbackup writes them with ``--compress``), restores it once into a scratch
database to prove it is whole and to record its tables and migration rows, and commits it as a snapshot flagged
``"migrations": {"none": true}``: it holds no migration folders, so a rollback to it restores the database only.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import platform
import secrets
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..context import Context
from ..engines import engine_class, plain_kind
from ..errors import ConfigError, UsageError
from ..project.databases import Database
from ..store import seal as sl
from ..store.archive import pack_folders
from ..store.fsutil import atomic_write, fsync_dir, remove_tree
from ..store.snapshots import FORMAT, FORMAT_VERSION, MANIFEST, MIGRATIONS_PAYLOAD, Snapshot, dump_manifest

GZIP_MAGIC = b"\x1f\x8b"


def _one_alias(ctx: Context, aliases: list[str], what: str) -> str:
    chosen = list(ctx.settings.databases) or aliases
    if len(chosen) != 1:
        raise UsageError(f"{what} holds several databases ({', '.join(chosen)})", hint="choose one with --database")
    if chosen[0] not in aliases:
        raise UsageError(f"{what} holds no database {chosen[0]!r} (it has: {', '.join(aliases)})")
    return chosen[0]


def refuse_clone_only(snap: Snapshot, verb: str) -> None:
    """UsageError when a database of ``snap`` has no payload file (a clone-only snapshot: the database is kept
    as a clone on the server): there is nothing to send or write until it is made a normal snapshot."""
    for alias, entry in snap.databases.items():
        if isinstance(entry, dict) and entry.get("payload") is None:
            raise UsageError(
                f"snapshot {snap.name!r} is clone-only (database {alias!r} is kept as a clone on this machine, "
                f"no dump): cannot {verb} it; nothing was done",
                hint=f"write its dump first: dbsnap save --from {snap.name}",
            )


def export(ctx: Context, name: str, dest: Path, *, force: bool = False) -> dict:
    """Write snapshot ``name``'s database as a plain dump to ``dest`` (checksums checked first; written beside
    ``dest`` and renamed into place, so ``dest`` is the whole dump or untouched). UsageError if ``dest`` exists
    and not ``force``."""
    snap = ctx.store.get(name)
    refuse_clone_only(snap, "export")
    ctx.store.verify_checksums(snap)
    alias = _one_alias(ctx, list(snap.databases), f"snapshot {snap.name!r}")
    entry = snap.databases[alias]
    engine = engine_class(str(entry.get("engine")))
    dest = Path(dest).expanduser().absolute()
    if dest.exists() and not force:
        raise UsageError(f"{dest} already exists", hint="pass --force to replace it")
    if not dest.parent.is_dir():
        raise UsageError(f"folder {dest.parent} does not exist")
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    try:
        with contextlib.closing(ctx.reporter.progress(f"export {alias}", entry.get("raw_bytes"))) as counter:
            engine.export_plain(snap.path / entry["payload"], tmp, counter)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        remove_tree(tmp)
    return {
        "file": str(dest),
        "snapshot": snap.name,
        "database": alias,
        "format": engine.plain_format,
        "bytes": dest.stat().st_size,
    }


def _detect(path: Path) -> tuple[str, bool, bool]:
    """(engine kind, gzip-compressed, plain SQL) of a dump; UsageError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        gz = head.startswith(GZIP_MAGIC)
        if gz:
            with gzip.open(path, "rb") as f:
                head = f.read(64)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UsageError(f"cannot read {path}: {e}") from e
    kind = plain_kind(head)
    if kind is not None:
        return kind, gz, False
    if engine_class("postgresql").recognizes_sql(head):
        return "postgresql", gz, True
    raise UsageError(
        f"{path.name} is not a dump dbsnap can import",
        hint="import takes a pg_dump file, custom format (-Fc) or plain SQL (django-dbbackup's PostgreSQL backups), "
        "an SQLite database file or a mysqldump/mariadb-dump SQL file, each gzip-compressed or not",
    )


def import_dump(ctx: Context, path: Path, name: str, *, note: str | None = None) -> Snapshot:
    """Take the plain dump ``path`` as snapshot ``name`` of one of this project's databases (the one of its
    engine, or --database). The dump is restored once into a scratch database first (exit 6 if it does not
    restore); nothing enters the store unless all of it succeeds. Callers hold the store lock."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    kind, gz, is_sql = _detect(path)
    project = ctx.project
    candidates = [db for db in ctx.databases() if db.kind == kind]
    if ctx.settings.databases:
        candidates = [db for db in candidates if db.alias in ctx.settings.databases]
    if len(candidates) != 1:
        raise ConfigError(
            f"{path.name} is a {kind} dump, and this project has "
            + (
                f"several {kind} databases ({', '.join(d.alias for d in candidates)})"
                if candidates
                else f"no {kind} database"
            ),
            hint="choose one with --database" if candidates else None,
        )
    db: Database = candidates[0]
    engine = ctx.engine(db)
    if ctx.store.exists(name):
        raise UsageError(f"snapshot {name!r} already exists", hint="choose another name")
    started = time.monotonic()
    staged = ctx.store.stage(name)
    try:
        payload = staged / engine.payload_name()
        opener = gzip.open if gz else open
        with opener(path, "rb") as src, contextlib.closing(ctx.reporter.progress("import", None)) as counter:
            if is_sql:
                ctx.reporter.step(f"loading the SQL of {path.name} into a scratch database")
                info = engine.import_sql(src, payload, counter)
            else:
                info = engine.import_plain(src, payload, counter)
        ctx.reporter.step(f"restoring {path.name} into a scratch database to check it")
        facts = engine.restored_facts(payload)
        minfo, _ = pack_folders(project.root, [], staged / MIGRATIONS_PAYLOAD)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "origin": "import",
            "pinned": False,
            "note": note or f"imported from {path.name}",
            "dbsnap_version": __version__,
            "python_version": platform.python_version(),
            "host": socket.gethostname(),
            "project": {"root": str(project.root), "settings_module": project.settings_module},
            "imported": {"file": path.name, "format": "plain SQL" if is_sql else engine.plain_format, "gzip": gz},
            "databases": {
                db.alias: {
                    **{k: v for k, v in db.public().items() if k in ("alias", "name", "host", "port", "user")},
                    "engine": engine.kind,
                    "django_engine": db.django_engine,
                    "payload": payload.name,
                    "raw_bytes": info.raw_bytes,
                    "migrations": facts.get("migrations", []),
                    "tables": facts.get("tables", {}),
                }
            },
            # No migration folders: a rollback to this snapshot restores the database only.
            "migrations": {"payload": MIGRATIONS_PAYLOAD, "folders": [], "files": [], "none": True},
            "files": {
                payload.name: {"bytes": info.bytes, "sha256": info.sha256},
                MIGRATIONS_PAYLOAD: {"bytes": minfo.bytes, "sha256": minfo.sha256},
            },
            "seconds": round(time.monotonic() - started, 3),
        }
        key = sl.load_key(ctx.env)
        if key is not None:
            manifest["seal"] = sl.make_seal(manifest, key)
        atomic_write(staged / MANIFEST, dump_manifest(manifest))
        return ctx.store.commit(staged, name)
    except BaseException:
        remove_tree(staged)
        raise
