"""Trusting a snapshot: checksums and complete compressed streams by default; with ``deep``, a real restore.

The default check never decompresses to disk: it re-hashes every payload, checks the manifest's format, fields
and seal, and reads each zstd stream to its end (a truncated frame is caught). ``deep`` restores each database
into a scratch database or file (always removed afterwards), compares row counts and ``django_migrations`` with
the manifest, and checks the migration archive holds exactly the manifest's files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..context import Context
from ..engines import engine_for
from ..errors import DbsnapError, IntegrityError
from ..project.databases import Database
from ..store.archive import check_stream, open_archive, read_chunks
from ..store.snapshots import Snapshot, Store


@dataclass
class VerifyResult:
    name: str
    deep: bool
    problem: str | None = None
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_files(store: Store, snap: Snapshot) -> list[str]:
    """Manifest + checksums + every stream read to its end; IntegrityError names the snapshot and file."""
    store.verify_checksums(snap)
    done = []
    for fname in sorted(snap.manifest["files"]):
        try:
            check_stream(snap.path / fname)
        except IntegrityError as e:
            raise IntegrityError(f"snapshot {snap.name!r}: {e.message}") from e
        done.append(fname)
    return done


def archive_members(path) -> dict[str, str]:
    """``{path: sha256}`` of every regular file in a migrations archive, read as a stream."""
    out = {}
    with open_archive(path) as tar:
        for m in tar:
            if m.isfile():
                h = hashlib.sha256()
                f = tar.extractfile(m)
                assert f is not None
                for chunk in read_chunks(f):  # type: ignore[arg-type]
                    h.update(chunk)
                out[m.name] = h.hexdigest()
    return out


def _database_for(ctx: Context, alias: str, saved: dict) -> Database:
    """Where to restore for --deep: the project's own connection settings when they match, else the manifest's."""
    try:
        db = ctx.project.databases.get(alias) if ctx.root else None
    except DbsnapError:
        db = None
    if db is not None and db.kind == saved["engine"]:
        return db
    return Database(
        alias=alias,
        kind=saved["engine"],
        name=saved.get("name", ""),
        host=saved.get("host", ""),
        port=saved.get("port", ""),
        user=saved.get("user", ""),
    )


def check_deep(ctx: Context, snap: Snapshot) -> list[str]:
    """Restore every database into scratch and compare; check the migration archive against the manifest."""
    done = []
    mig = snap.manifest["migrations"]
    members = archive_members(snap.path / mig["payload"])
    wanted = {f["path"]: f["sha256"] for f in mig["files"]}
    if members != wanted:
        diff = sorted(set(members.items()) ^ set(wanted.items()))
        raise IntegrityError(
            f"snapshot {snap.name!r}: {mig['payload']} does not hold the manifest's migration files ({diff[0][0]})"
        )
    done.append(f"{mig['payload']}: {len(members)} migration files match")
    for alias, saved in snap.databases.items():
        engine = engine_for(_database_for(ctx, alias, saved), ctx.env)
        facts = engine.restored_facts(snap.path / saved["payload"])
        if facts["migrations"] != saved["migrations"]:
            raise IntegrityError(
                f"snapshot {snap.name!r}: {saved['payload']} restores {len(facts['migrations'])} django_migrations "
                f"rows, the manifest lists {len(saved['migrations'])}"
            )
        for table in sorted(set(facts["tables"]) | set(saved["tables"])):
            got, want = facts["tables"].get(table), saved["tables"].get(table)
            if got != want:
                raise IntegrityError(
                    f"snapshot {snap.name!r}: {saved['payload']}: table {table} restores {got} rows, "
                    f"the manifest says {want}"
                )
        done.append(f"{saved['payload']}: restored, {len(facts['tables'])} tables and migrations match")
    return done


def verify(ctx: Context, snap: Snapshot, deep: bool = False) -> VerifyResult:
    """Check one snapshot; the result carries the first problem found instead of raising."""
    result = VerifyResult(name=snap.name, deep=deep)
    try:
        result.checked = check_files(ctx.store, snap)
        if deep:
            result.checked += check_deep(ctx, snap)
    except IntegrityError as e:
        result.problem = e.message
    return result
