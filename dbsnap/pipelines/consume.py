"""``rollback --consume-clone``: the snapshot's clone is renamed into place (O(1), no copy), then re-armed.

The swap renames the clone itself to the live name (PostgreSQL: one transaction with the live database's rename
and the seal or drop of what it replaces; SQLite: the kept file is moved, not copied), so the snapshot's clone
is gone once the rollback is done. It is re-armed by the same command, after the rollback has finished and is
reported as done: a fresh template copy of the restored database (PostgreSQL, recorded in the manifest's
``rearmed`` field, since the new clone has a new oid) or a copy of the restored file back into the snapshot
folder (SQLite; its checksum must match the recorded one). The re-arm is a copy, as long as a copying rollback
would have taken, but it happens after the rollback. When it cannot be made (a session connected to the restored
database at once, or the restored file changed), the command says so: a snapshot with a dump then restores from
its dump, and a clone-only one holds nothing any more (``verify`` reports it).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from .. import faults
from ..context import Context
from ..engines.sqlite_keep import copy_file
from ..errors import DbsnapError, UsageError
from ..project.databases import Database
from ..store.fsutil import atomic_write, fsync_dir, sha256_file
from ..store.snapshots import MANIFEST, Snapshot, dump_manifest
from .save import clone_record


def check_consumable(snap: Snapshot, dbs: list[Database], modes: dict[str, str]) -> None:
    """UsageError (nothing changed) unless every database to restore has a clone that can be renamed in."""
    for db in dbs:
        saved = snap.databases[db.alias]
        if not saved.get("clone"):
            raise UsageError(
                f"--consume-clone: snapshot {snap.name!r} has no clone of database {db.alias!r}; nothing was changed",
                hint="roll back without --consume-clone (it restores from the dump)",
            )
        if db.kind == "postgresql" and modes.get(db.alias) != "swap":
            raise UsageError(
                f"--consume-clone: database {db.alias!r} is restored in one transaction (this role cannot create "
                "or rename databases); nothing was changed"
            )


def rearm(ctx: Context, snap: Snapshot, aliases: list[str]) -> tuple[list[str], list[str]]:
    """Make the consumed clones of ``snap`` again from the databases just restored; (made, warnings). Caller holds
    the store lock; the rollback is complete whatever happens here."""
    made, warnings = [], []
    rearmed = dict(snap.manifest.get("rearmed") or {})
    for alias in aliases:
        saved = snap.databases[alias]
        engine = ctx.engine(ctx.project.databases[alias])
        ctx.reporter.step(f"re-arming the clone of {snap.name} for {alias} (a copy of the restored database)")
        try:
            if saved["clone"].get("file") is not None:
                _rearm_file(ctx, snap, engine, saved["clone"])
                made.append(saved["clone"]["file"])
                continue
            name = engine.clone_name(ctx.store.root, snap.name, f"{snap.manifest['created_at']}#{secrets.token_hex(4)}")
            record = clone_record(ctx.store.tmp / f"rearm-{snap.name}.{secrets.token_hex(4)}")
            atomic_write(record, json.dumps([{"alias": alias, "name": name}]))  # a kill now: dropped next time
            faults.point("consume.before-rearm")
            oid = engine.make_clone(name)
            engine.seal_clone(name)
            rearmed[alias] = {"name": name, "oid": oid}
            manifest = {**ctx.store.get(snap.name).manifest, "rearmed": rearmed}
            atomic_write(snap.path / MANIFEST, dump_manifest(manifest))
            record.unlink(missing_ok=True)
            made.append(name)
        except DbsnapError as e:
            left = "restores from its dump" if saved.get("payload") else "holds no database now"
            warnings.append(f"the clone of {snap.name} for {alias} was not re-armed ({e.message}): it {left}")
            ctx.reporter.warn(warnings[-1])
    return made, warnings


def _rearm_file(ctx: Context, snap: Snapshot, engine, clone: dict) -> None:
    """Copy the restored SQLite file back into the snapshot folder; it must be byte for byte the kept one."""
    dest = snap.path / clone["file"]
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")  # atomic debris: cleaned after a kill
    try:
        copy_file(engine.path, tmp)
        if sha256_file(tmp) != clone["sha256"]:
            raise DbsnapError(f"{engine.path} changed since it was restored")
        Path(tmp).rename(dest)
        fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)
