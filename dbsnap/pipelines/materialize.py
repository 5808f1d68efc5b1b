"""``dbsnap save --from NAME``: write the dump of a clone-only snapshot from its clone, so that it becomes a
normal snapshot (what push and export need, and what outlives its clone).

The new version is staged in ``.tmp/`` (the migrations archive linked or copied, each clone-only database dumped
from its clone), then replaces the old one atomically (``Store.commit(force=True)``): same name, date, origin,
note and pin. PostgreSQL keeps the clone (a snapshot with a clone, as ``save --clone`` makes); SQLite's kept
file is not carried over (the dump restores as fast). Killed at any moment: the old snapshot or the new one.
"""

from __future__ import annotations

import os
import shutil
import time

from ..context import Context
from ..errors import ConfigError
from ..store.fsutil import atomic_write, remove_tree
from ..store.seal import load_key, make_seal
from ..store.snapshots import MANIFEST, Snapshot, dump_manifest
from .clone_only import check_clones_present, is_clone_only
from .save import SaveResult
from .verify import check_snapshot


def materialize(ctx: Context, snap: Snapshot) -> SaveResult:
    """The snapshot with every database dumped (caller holds the lock); unchanged when it has its dumps."""
    started = time.monotonic()
    if not is_clone_only(snap):
        ctx.reporter.step(f"{snap.name} has its dump already: nothing to write")
        return SaveResult(snapshot=snap, raw_bytes=0, stored_bytes=snap.size, seconds=0.0)
    check_snapshot(ctx, snap, allow_unsealed=True)
    check_clones_present(ctx, snap)
    key = load_key(ctx.env)
    manifest = {k: v for k, v in snap.manifest.items() if k not in ("manifest_sha256", "seal")}
    manifest["databases"] = {a: dict(d) for a, d in manifest["databases"].items()}
    manifest["files"] = dict(manifest["files"])
    staged = ctx.store.stage(snap.name)
    raw_total = 0
    try:
        for fname in manifest["files"]:
            try:
                os.link(snap.path / fname, staged / fname)  # immutable once committed: sharing the inode is safe
            except OSError:
                shutil.copy2(snap.path / fname, staged / fname)
        for alias, saved in manifest["databases"].items():
            if saved.get("payload") is not None:
                continue
            db = ctx.project.databases.get(alias)
            if db is None:
                raise ConfigError(f"database {alias!r} of snapshot {snap.name!r} is not configured in this project")
            engine = ctx.engine(db)
            ctx.reporter.step(f"dumping {alias} of {snap.name} from its clone")
            counter = ctx.reporter.progress(f"dump {alias}", int(saved.get("clone_bytes") or 0) or None)
            result = engine.dump_kept(
                staged / engine.payload_name(), snap.databases[alias]["clone"], snap.path, counter
            )
            counter.close()
            raw_total += result.payload.raw_bytes
            manifest["files"][engine.payload_name()] = {"bytes": result.payload.bytes, "sha256": result.payload.sha256}
            saved.update(
                payload=engine.payload_name(),
                raw_bytes=result.payload.raw_bytes,
                migrations=result.migrations,
                tables=result.tables,
            )
            if saved["clone"].get("file") is not None:
                saved.pop("clone")  # the kept file stays with the old version, removed with it
                saved.pop("clone_bytes", None)
        if key is not None:
            manifest["seal"] = make_seal(manifest, key)
        atomic_write(staged / MANIFEST, dump_manifest(manifest))
        new = ctx.store.commit(staged, snap.name, force=True)
    except BaseException:
        remove_tree(staged)
        raise
    return SaveResult(snapshot=new, raw_bytes=raw_total, stored_bytes=new.size, seconds=time.monotonic() - started)
