"""Trusting a snapshot: the checks rollback runs, complete compressed streams, and with ``deep`` a real restore.

:func:`check_snapshot` is the one function both rollback and verify call before trusting a snapshot: manifest
format, fields and checksum; every path and name in it confined to this project (``store/confine.py``); the
keyed seal; every payload's size and SHA-256; and every member of the migrations archive a regular file (or
folder) inside the saved folders, holding exactly the manifest's files. verify then reads each zstd stream to
its end (a rollback's restore does that as it goes), and ``deep`` restores each database into a scratch
database or file (always removed afterwards) and compares row counts and ``django_migrations``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..context import Context
from ..engines import engine_for
from ..errors import DbsnapError, IntegrityError
from ..project.compose import Compose
from ..project.databases import Database
from ..store import confine
from ..store import seal as sl
from ..store.archive import check_stream, member_kind, open_archive, read_chunks
from ..store.snapshots import Snapshot, Store
from .clone_only import check_clones_present, is_clone_only


@dataclass
class VerifyResult:
    name: str
    deep: bool
    problem: str | None = None
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_seal(ctx: Context, snap: Snapshot, allow_unsealed: bool) -> str:
    """The seal against the configured key: a seal by that key that does not match is always refused; no seal
    (or another key's) is refused unless ``allow_unsealed``; with no key configured there is nothing to check."""
    key = sl.load_key(ctx.env)
    status = sl.check_seal(snap.manifest, key)
    if status == sl.INVALID:
        raise IntegrityError(
            f"snapshot {snap.name!r}: its seal does not match: manifest.json was changed after it was sealed"
        )
    if status in (sl.UNSEALED, sl.OTHER_KEY) and not allow_unsealed:
        assert key is not None
        by = sl.sealed_by(snap.manifest)
        raise IntegrityError(
            f"snapshot {snap.name!r} is not sealed by this machine's key {key.id} "
            + (f"(sealed by key {by})" if status == sl.OTHER_KEY else "(it has no seal)"),
            hint="if you trust where it came from, pass --allow-unsealed",
        )
    if status == sl.VALID:
        return f"seal: valid (key {key.id})"  # type: ignore[union-attr]
    if status == sl.NO_KEY:
        return "seal: not checked (no key configured)"
    return f"seal: {status} (allowed)"


def check_archive(snap: Snapshot, folders: list[str]) -> int:
    """Every archive member a regular file or folder inside ``folders``, and the files exactly the manifest's."""
    mig = snap.manifest["migrations"]
    path = snap.path / confine.check_payload(mig["payload"], snap.path, f"snapshot {snap.name!r}")
    members = archive_members(path, folders, snap.name)
    wanted = {f["path"]: f["sha256"] for f in mig["files"]}
    if members != wanted:
        diff = sorted(set(members.items()) ^ set(wanted.items()))
        raise IntegrityError(
            f"snapshot {snap.name!r}: {mig['payload']} does not hold the manifest's migration files ({diff[0][0]})"
        )
    return len(members)


def check_snapshot(
    ctx: Context,
    snap: Snapshot,
    *,
    allow_unsealed: bool = False,
    payloads_checked: bool = False,
    rules: confine.Rules | None = None,
) -> list[str]:
    """What rollback and verify both check before trusting ``snapshot`` (see the module docstring); returns what
    was checked, raises IntegrityError naming the snapshot and the first problem. Reads no database.

    ``payloads_checked``: the caller has just checked every payload's size and SHA-256 against this manifest
    while writing or reading it (a pull, a push), so they are not read once more. ``rules``: confinement rules
    other than this project's (a push checks shape only; the pulling side confines to its own project)."""
    ctx.store.verify_manifest(snap)
    folders = confine.check_manifest(rules or ctx.rules(), snap.manifest, snap.path, snap.name)
    done = [check_seal(ctx, snap, allow_unsealed)]
    if not payloads_checked:
        ctx.store.verify_checksums(snap)
        done.append(f"{len(snap.manifest['files'])} payloads: checksums match")
    n = check_archive(snap, folders)
    done.append(f"{snap.manifest['migrations']['payload']}: {n} migration files match, all inside the saved folders")
    return done


def check_files(store: Store, snap: Snapshot) -> list[str]:
    """Checksums + every stream read to its end; IntegrityError names the snapshot and file."""
    store.verify_checksums(snap)
    done = []
    for fname in sorted(snap.manifest["files"]):
        try:
            check_stream(snap.path / fname)
        except IntegrityError as e:
            raise IntegrityError(f"snapshot {snap.name!r}: {e.message}") from e
        done.append(fname)
    return done


def archive_members(path, folders: list[str], name: str) -> dict[str, str]:
    """``{path: sha256}`` of every regular file in a migrations archive, read as a stream; IntegrityError for a
    member that is not a regular file or folder, or lies outside ``folders``."""
    out = {}
    what = f"snapshot {name!r}: {path.name}"
    with open_archive(path) as tar:
        for m in tar:
            confine.check_member_path(m.name.rstrip("/"), folders, what)
            kind = member_kind(m)
            if kind not in ("file", "folder"):
                raise IntegrityError(f"{what}: {m.name} is a {kind}, not a regular file")
            if m.isfile():
                h = hashlib.sha256()
                f = tar.extractfile(m)
                assert f is not None
                for chunk in read_chunks(f):  # type: ignore[arg-type]
                    h.update(chunk)
                out[m.name] = h.hexdigest()
    return out


def _compose_of(ctx: Context) -> Compose | None:
    """The project's compose services, when it has them and can be discovered (verify also runs outside)."""
    try:
        return ctx.project.compose if ctx.root else None
    except DbsnapError:
        return None


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
    for alias, saved in snap.databases.items():
        if saved.get("payload") is None:
            done.append(f"{alias}: clone-only, nothing to restore (its clone is checked above)")
            continue
        engine = engine_for(_database_for(ctx, alias, saved), ctx.env, _compose_of(ctx))
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
        result.checked = check_snapshot(ctx, snap, allow_unsealed=True)
        result.checked += check_files(ctx.store, snap)
        if is_clone_only(snap):
            result.checked += check_clones_present(ctx, snap)
        if deep:
            result.checked += check_deep(ctx, snap)
    except IntegrityError as e:
        result.problem = e.message
    return result
