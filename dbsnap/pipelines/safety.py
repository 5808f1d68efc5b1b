"""The rollback's safety snapshot, kept by rename instead of dumped: a clone-only snapshot.

Where every database a rollback replaces can be kept (PostgreSQL in swap mode, SQLite), nothing is dumped
first. The snapshot is staged in the store's ``.tmp/`` before the journal is written: its migrations archive
(the folders as they are now, cheap) and a manifest that names no dump. The swap then renames the live
PostgreSQL database into a sealed clone (same transaction as the swap), and the rollback's forward half moves
the replaced SQLite file into the staged folder, records the clone in the manifest and commits the snapshot,
all idempotently, so a kill at any point is finished (or, before the folders were swapped, undone with the
staged snapshot thrown away) by the next command. Nothing is left that no snapshot points to.

A clone-only snapshot's database entry has ``payload: null``, ``clone`` (PostgreSQL: ``{name, oid}``;
SQLite: ``{file, sha256}``, the file in the snapshot folder), ``clone_bytes`` and no table counts.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import faults
from ..context import Context
from ..engines.base import Engine
from ..errors import RollbackError
from ..store.archive import pack_folders
from ..store.fsutil import atomic_write, remove_tree
from ..store.seal import load_key, make_seal
from ..store.snapshots import MANIFEST, MIGRATIONS_PAYLOAD, dump_manifest
from .clone_only import check_clones_present, clone_bytes, is_clone_only, restore_source
from .save import manifest_head, migrations_entry

__all__ = ["can_keep", "check_clones_present", "clone_bytes", "commit", "discard", "is_clone_only", "restore_source"]


def can_keep(ctx: Context, engines: list[Engine]) -> bool:
    """Whether the safety snapshot can be the replaced databases themselves: every engine can keep what it
    replaces, and the rollback replaces every database a dumped safety snapshot would hold."""
    selected = {db.alias for db in ctx.databases()}
    return selected == {e.db.alias for e in engines} and all(e.can_keep_replaced() for e in engines)


def stage(ctx: Context, name: str, engines: list[Engine], before: str) -> dict:
    """Stage the safety snapshot ``name`` in ``.tmp/``: the migration folders as they are now and a manifest
    without the clones (recorded at commit). Nothing live is touched. Returns the journal's ``safety_kept``."""
    project = ctx.project
    created = datetime.now(timezone.utc)
    stamp = created.isoformat(timespec="microseconds").replace("+00:00", "Z")
    staged = ctx.store.stage(name)
    try:
        info, mfiles = pack_folders(project.root, [f.path for f in project.folders], staged / MIGRATIONS_PAYLOAD)
        databases = {}
        for e in engines:
            fact = e.preflight()
            databases[e.db.alias] = {
                **{k: v for k, v in e.db.public().items() if k in ("alias", "name", "host", "port", "user")},
                "engine": e.kind,
                "django_engine": e.db.django_engine,
                "payload": None,
                "server_version": fact.get("server_version"),
                "client_version": fact.get("client_version"),
                "migrations": e.migration_rows(),  # after the sessions were ended: what the kept database holds
            }
        manifest = {
            **manifest_head(project, name, stamp, "pre-rollback", f"before rollback to {before}"),
            "databases": databases,
            "migrations": migrations_entry(project, mfiles),
            "files": {MIGRATIONS_PAYLOAD: {"bytes": info.bytes, "sha256": info.sha256}},
        }
        atomic_write(staged / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except BaseException:
        remove_tree(staged)
        raise
    return {"name": name, "staged": str(staged), "created_at": stamp, "started": time.time()}


def keep_target(ctx: Context, engine: Engine, kept: dict) -> tuple[str, Path]:
    """(clone name, folder) that ``engine.keep_replaced`` keeps the replaced database as, for ``kept``."""
    name = ""
    if hasattr(engine, "clone_name"):
        name = engine.clone_name(ctx.store.root, kept["name"], kept["created_at"])
    return name, Path(kept["staged"])


def commit(ctx: Context, kept: dict, engines: list[tuple[Engine, dict]]) -> None:
    """The forward half's last database step: record each kept database in the staged manifest and commit the
    snapshot. Idempotent: a snapshot already committed (a kill after the rename) is left as it is."""
    staged = Path(kept["staged"])
    if not staged.exists():
        if ctx.store.exists(kept["name"]):
            return
        raise RollbackError(f"the staged safety snapshot {kept['name']} is missing from {staged.parent}")
    manifest = json.loads((staged / MANIFEST).read_text())
    for e, st in engines:
        clone, size = e.kept_clone(st)
        entry = manifest["databases"][e.db.alias]
        entry["clone"], entry["clone_bytes"] = clone, size
    manifest["seconds"] = round(time.time() - float(kept.get("started") or time.time()), 3)
    key = load_key(ctx.env)
    if key is not None:
        manifest["seal"] = make_seal(manifest, key)
    atomic_write(staged / MANIFEST, dump_manifest(manifest))
    faults.point("safety.before-commit")
    ctx.store.commit(staged, kept["name"])


def discard(kept: dict | None) -> None:
    """Throw a staged safety snapshot away (the rollback was undone: the replaced databases are live again)."""
    if kept:
        remove_tree(Path(kept["staged"]))
