"""Clone-only snapshots: a database entry with ``payload: null`` and a ``clone`` (PostgreSQL: ``{name, oid}``, a
sealed database on the server; SQLite: ``{file, sha256}``, the database file kept in the snapshot folder), its
``clone_bytes`` and no table counts. What the rest of dbsnap asks about them, and the check that a clone-only
snapshot's clone is still there (never silently used when it is not)."""

from __future__ import annotations

from pathlib import Path

from ..context import Context
from ..errors import IntegrityError
from ..store import confine
from ..store.snapshots import Snapshot


def is_clone_only(snap: Snapshot) -> bool:
    """Whether some database of the snapshot has no dump, only its clone."""
    return any(isinstance(d, dict) and d.get("payload") is None for d in snap.databases.values())


def clone_bytes(snap: Snapshot) -> int:
    """What the snapshot's clone-only databases take on disk (the clones' sizes when they were kept)."""
    return sum(int(d.get("clone_bytes") or 0) for d in snap.databases.values() if d.get("payload") is None)


def restore_source(snap: Snapshot, saved: dict) -> Path | None:
    """The file a database is restored from: its payload, a clone-only SQLite snapshot's kept file, or None (a
    clone-only PostgreSQL snapshot: its clone on the server). Confined to the snapshot folder."""
    what = f"snapshot {snap.name!r}"
    clone = saved.get("clone") or {}
    if clone.get("file") is not None:
        kept = snap.path / confine.check_payload(clone["file"], snap.path, what)
        # A SQLite snapshot saved with --clone has both: the kept file is copied (or renamed) instead of
        # decompressing; once consumed and not re-armed, the dump is what is left.
        if kept.is_file() or saved.get("payload") is None:
            return kept
    if saved.get("payload") is not None:
        return snap.path / confine.check_payload(saved["payload"], snap.path, what)
    return None


def check_clones_present(ctx: Context, snap: Snapshot) -> list[str]:
    """A clone-only snapshot's clones exist and are the ones kept (PostgreSQL: same oid; SQLite: the file's
    checksum is part of :meth:`Store.verify_checksums`). IntegrityError (exit 6), one line, for a vanished one:
    such a snapshot holds nothing else, and is never silently used."""
    done = []
    for alias, saved in snap.databases.items():
        if saved.get("payload") is not None or (saved.get("clone") or {}).get("file") is not None:
            continue
        clone = saved.get("clone") or {}
        db = ctx.project.databases.get(alias)
        if db is None or db.kind != saved.get("engine"):
            raise IntegrityError(f"snapshot {snap.name!r} is clone-only and database {alias!r} is not configured here")
        engine = ctx.engine(db)
        if not engine.clone_ok(clone):  # type: ignore[attr-defined]
            raise IntegrityError(
                f"snapshot {snap.name!r} is clone-only and its clone {clone.get('name')} vanished "
                "(dropped, or replaced by another database of that name): it holds no database"
            )
        done.append(f"{alias}: clone {clone['name']} present (oid {clone['oid']})")
    return done
