"""One function per verb. Each takes a Context, returns a result, never prints; the CLI renders it.

Every verb that writes holds the store lock; on taking it, it first finishes or undoes a rollback that a killed
run left behind, and clears staging debris, so it always starts from a whole state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .context import Context
from .errors import ConfigError, DbsnapError, IntegrityError, SnapshotNotFound, UsageError
from .pipelines import keep_data as kd
from .pipelines import prune as pr
from .pipelines import recovery
from .pipelines import reset as rs
from .pipelines import rollback as rb
from .pipelines import verify as vf
from .pipelines.save import SaveResult, default_name, drop_clones, drop_interrupted_clones, take_snapshot
from .settings import read_pyproject
from .store import confine, locking
from .store.fsutil import remove_tree
from .store.snapshots import Snapshot, validate_name

if TYPE_CHECKING:
    from .pipelines import compare
    from .pipelines import remote as rm
    from .settings import RemoteConfig
    from .store.remote.snapshots import RemoteSnapshot


@contextlib.contextmanager
def locked(ctx: Context, command: str) -> Iterator[None]:
    """Hold the store lock; recover an interrupted rollback and clear ``.tmp`` before the verb runs."""
    if ctx.root is not None:
        try:
            rules = ctx.rules()
        except ConfigError:
            rules = None  # the project cannot be discovered: nothing can be rolled back into it either
        if rules is not None:
            confine.check_store_placement(rules)  # before anything is written
    created = not ctx.store.root.exists()
    ctx.store.ensure()
    try:
        with _held(ctx, command):
            yield
    except BaseException:
        # A command that failed must not leave behind a store it created (and that holds nothing).
        if created and not ctx.store.list() and not ctx.store.has_journal():
            remove_tree(ctx.store.root)
        raise


@contextlib.contextmanager
def _held(ctx: Context, command: str) -> Iterator[None]:
    with locking.store_lock(ctx.store.root, command, ctx.lock_timeout) as info:
        if info["took_over"]:
            ctx.reporter.warn(f"took over the stale lock of {locking.describe_owner(info['took_over'])}")
        if ctx.store.has_journal():
            recovery.recover_pending(ctx)
        drop_interrupted_clones(ctx)  # before clean_tmp, which removes the records
        ctx.store.clean_tmp()
        yield


def recover_if_needed(ctx: Context) -> None:
    """Read-only verbs too finish or undo a killed rollback or reset first, so nobody looks at a half state."""
    if ctx.store.has_journal():
        with locked(ctx, "recover"):
            pass


def info(ctx: Context) -> dict:
    """What discovery found: project, settings, databases (no passwords), migration folders, the store."""
    recover_if_needed(ctx)
    p = ctx.project
    return {
        "project": str(p.root),
        "settings_module": p.settings_module,
        "discovery": "fallback" if p.fallback else "settings",
        "fallback_reason": p.fallback,
        "django_version": p.django_version,
        "debug": p.debug,
        "databases": [db.public() for db in ctx.databases()],
        "apps": [
            {"app": f.app, "migrations": f.path, "files": f.files, "module": f.module, "owned": f.owned}
            for f in p.folders
        ],
        "not_managed": [{"app": n.app, "module": n.module, "reason": n.reason} for n in p.not_managed],
        "differences": p.differences,
        "store": str(ctx.store.root),
        "snapshots": len(ctx.store.list()),
    }


def save(
    ctx: Context,
    name: str | None = None,
    *,
    note: str | None = None,
    pin: bool = False,
    force: bool = False,
    prune: bool | None = None,
    verify: bool = False,
    clone: bool | None = None,
) -> SaveResult:
    """Take a snapshot (default name ``snap-YYYYmmdd-HHMMSS``); refuse an existing name unless ``force``.

    With ``prune`` (or ``auto-prune = true`` in configuration) the retention policy runs after a successful
    save, under the same lock; its plan is in ``result.pruned``. The save never depends on the pruning: a
    missing or bad policy, or a failed deletion, is a warning after the save (``result.prune_warning``), so a
    scheduled ``save --prune`` keeps taking snapshots whatever the retention configuration says.
    """
    name = validate_name(name) if name is not None else default_name()
    ctx.databases()  # no project, or an unknown --database alias, fails before the store is created
    auto = prune if prune is not None else _auto_prune(ctx)
    with locked(ctx, f"save {name}"):
        clone = clone if clone is not None else _setting_flag(ctx, "DBSNAP_CLONE", "clone")
        result = take_snapshot(ctx, name, note=note, pin=pin, force=force, verify=verify, clone=clone)
        if auto:
            try:
                policy, source = pr.resolve_policy(ctx, {})
                plan = pr.plan(ctx, policy, source, pr.resolve_timezone(ctx, None))
                pr.execute(ctx, plan)
                result.pruned = plan
            except (DbsnapError, OSError) as e:
                why = e.message if isinstance(e, DbsnapError) else f"{e.strerror or e}: {e.filename or ''}"
                hint = f" ({e.hint})" if isinstance(e, DbsnapError) and e.hint else ""
                result.prune_warning = f"saved {name}; pruning failed: {why}"
                ctx.reporter.warn(result.prune_warning + hint)
        return result


def _setting_flag(ctx: Context, env_var: str, key: str) -> bool:
    """An on/off setting: the environment (or .env), else ``[tool.dbsnap] key``; off by default."""
    raw = ctx.env.get(env_var)
    if raw is None and ctx.root is not None:
        raw = read_pyproject(ctx.root).get(key)
    return str(raw).lower() in ("1", "true", "yes", "on") if raw is not None else False


def _auto_prune(ctx: Context) -> bool:
    return _setting_flag(ctx, "DBSNAP_AUTO_PRUNE", "auto-prune")


def prune(
    ctx: Context,
    flags: dict,
    *,
    tz_name: str | None = None,
    dry_run: bool = False,
    confirm: Callable[[pr.PrunePlan], bool] | None = None,
    now: datetime | None = None,
) -> tuple[pr.PrunePlan, list[str]]:
    """Apply the retention policy per database: the whole plan first, then deletions oldest first.

    Flags (``{"keep-daily": 7, ...}``) replace the configured policy; ``dry_run`` deletes nothing.
    """
    policy, source = pr.resolve_policy(ctx, flags)
    tz = pr.resolve_timezone(ctx, tz_name)
    with locked(ctx, "prune"):
        plan = pr.plan(ctx, policy, source, tz, now)
        if dry_run or not plan.removals:
            return plan, []
        if confirm is not None and not confirm(plan):
            raise UsageError("prune cancelled; nothing was deleted")
        return plan, pr.execute(ctx, plan)


def schedule(ctx: Context, kind: str, at: str) -> tuple[dict[str, str], list[str]]:
    """The scheduler files to install (``{"crontab": line}`` or systemd unit name -> text) and warnings.

    The scheduled command is ``save --prune``: it always saves; without a retention policy it prunes nothing,
    which is said here, when the schedule is made, and not only in a log nobody reads.
    """
    from .schedule import cron_line, systemd_units

    root = ctx.project.root
    store = ctx.store.root
    files = {"crontab": cron_line(root, store, at)} if kind == "cron" else systemd_units(root, store, at)
    warnings = []
    try:
        pr.resolve_policy(ctx, {})
    except UsageError as e:
        warnings.append(
            f"{e.message}: the scheduled run saves a snapshot every day and deletes none "
            "(set [tool.dbsnap.retention] in pyproject.toml, e.g. keep-daily = 7)"
        )
    return files, warnings


def list_snapshots(ctx: Context) -> list[Snapshot]:
    """Committed snapshots, oldest first; damaged snapshot folders are named in a warning."""
    recover_if_needed(ctx)
    for name in ctx.store.damaged():
        ctx.reporter.warn(f"{name}: damaged snapshot folder (no usable manifest.json); 'dbsnap delete {name} --force'")
    return ctx.store.list()


def show(ctx: Context, name: str) -> Snapshot:
    recover_if_needed(ctx)
    return ctx.store.get(name)


def delete(ctx: Context, names: list[str], *, force: bool = False) -> list[str]:
    """Delete snapshots; all names are checked first, so a bad one changes nothing. Pinned ones need ``force``."""
    with locked(ctx, "delete " + " ".join(names)):
        damaged = set(ctx.store.damaged())
        snaps = []
        for n in names:
            if n in damaged:
                if not force:
                    raise IntegrityError(
                        f"snapshot {n!r} is damaged (no usable manifest.json)", hint="--force deletes it"
                    )
                snaps.append(Snapshot(name=n, path=ctx.store.root / n, manifest={}))
            else:
                snaps.append(ctx.store.get(n))
        for s in snaps:  # a forged clone name would have delete drop someone else's database: refuse it first
            confine.check_clones(ctx.rules(), s.manifest, s.name)
        pinned = [s.name for s in snaps if s.pinned]
        if pinned and not force:
            raise UsageError(f"snapshot {pinned[0]!r} is pinned", hint="unpin it first or pass --force")
        for s in snaps:
            ctx.store.delete(s)
            drop_clones(ctx, s)
        return [s.name for s in snaps]


def set_pinned(ctx: Context, name: str, pinned: bool) -> Snapshot:
    with locked(ctx, ("pin " if pinned else "unpin ") + name):
        return ctx.store.set_pinned(ctx.store.get(name), pinned)


def verify(ctx: Context, names: list[str], *, all_: bool = False, deep: bool = False) -> list[vf.VerifyResult]:
    """Verify the named snapshots (``latest`` when none and not ``all_``); every one is checked, and each
    result carries its first problem. Read-only: snapshots are immutable, so no lock is taken."""
    recover_if_needed(ctx)
    if all_:
        snaps = ctx.store.list()
        if not snaps:
            raise SnapshotNotFound(f"no snapshots in {ctx.store.root}", hint="create one with 'dbsnap save'")
    else:
        snaps = [ctx.store.get(n) for n in (names or ["latest"])]
    results = []
    for snap in snaps:
        ctx.reporter.step(f"verifying {snap.name}{' (deep)' if deep else ''}")
        results.append(vf.verify(ctx, snap, deep=deep))
    return results


def rollback(
    ctx: Context,
    name: str,
    *,
    safety: bool = True,
    confirm: Callable[[rb.RollbackPlan], bool] | None = None,
    allow_unsealed: bool = False,
    other_project: bool = False,
) -> rb.RollbackResult:
    """Put the database(s) and migration folders back to snapshot ``name`` together, all or nothing.

    The snapshot is checked as verify checks it (checksums, confinement, seal, archive members) before anything
    live is touched; a snapshot of another project or database needs ``other_project``; ``confirm`` sees the
    plan (databases, sessions that will be terminated, folder changes) and may refuse: then nothing changes.
    """
    recover_if_needed(ctx)
    snap = ctx.store.get(name)  # "latest" is resolved once: the rollback cannot drift to a newer snapshot
    ctx.reporter.step(f"verifying snapshot {snap.name}")
    vf.check_snapshot(ctx, snap, allow_unsealed=allow_unsealed)
    verified = ctx.store.file_identity(snap)
    plan = rb.plan(ctx, snap, safety=safety)
    if plan.foreign and not other_project:
        what, then, now = plan.foreign[0]
        raise ConfigError(
            f"snapshot {snap.name!r} was taken of another {what}: {then} (now {now}); nothing was changed",
            hint="pass --other-project to restore it here anyway",
        )
    # The question is asked before the store is locked, so a scheduled save is not blocked by a prompt.
    if confirm is not None and not confirm(plan):
        raise UsageError("rollback cancelled; nothing was changed")
    with locked(ctx, f"rollback {snap.name}"):
        current = ctx.store.get(snap.name)
        if current.manifest != snap.manifest:
            raise UsageError(f"snapshot {snap.name!r} was replaced while waiting for confirmation; nothing was changed")
        if ctx.store.file_identity(current) != verified:
            vf.check_snapshot(ctx, current, allow_unsealed=allow_unsealed)  # touched since: check them again
        plan.snapshot = current
        return rb.run(ctx, plan)


def unlock(ctx: Context) -> dict | None:
    """Remove a lock file left by a process that is gone (refuses while a live process holds it)."""
    return locking.force_unlock(ctx.store.root)


def reset(
    ctx: Context,
    opts: rs.ResetOptions,
    *,
    dry_run: bool = False,
    confirm: Callable[[rs.ResetPlan], bool] | None = None,
    on_step: Callable[[int, str, float | None], None] | None = None,
) -> tuple[rs.ResetPlan, rs.ResetResult | None]:
    """Snapshot, drop, regenerate and migrate, verify; on failure roll back to the safety snapshot by itself.
    With ``opts.keep_data``: snapshot, regenerate, prove the schema matches, rewrite the history rows, verify;
    the data is never touched (:mod:`dbsnap.pipelines.keep_data`).

    The plan (databases, apps, the operations makemigrations cannot regenerate) is built and confirmed before
    the store is locked, so nobody waits on a prompt; ``dry_run`` returns it without changing anything.
    """
    recover_if_needed(ctx)
    plan = kd.plan(ctx, opts) if opts.keep_data else rs.plan(ctx, opts)
    if dry_run:
        return plan, None
    if confirm is not None and not confirm(plan):
        raise UsageError("reset cancelled; nothing was changed")
    with locked(ctx, "reset"):
        if isinstance(plan, kd.KeepDataPlan):
            return plan, kd.run(ctx, plan, on_step)
        return plan, rs.run(ctx, plan, opts, on_step)


def status(ctx: Context, against: str | None = None, *, use_django: bool | None = None) -> compare.Status:
    """The live project against the newest snapshot (or ``against``); read-only, works with no snapshot."""
    from .pipelines import compare  # imported on use: it is not needed on the save/rollback path

    recover_if_needed(ctx)
    return compare.status(ctx, against, use_django=use_django)


def diff(ctx: Context, a: str, b: str, *, patch: bool = False) -> compare.Diff:
    """Two snapshots side by side, from their manifests (and archives with ``patch``); read-only."""
    from .pipelines import compare

    recover_if_needed(ctx)
    return compare.diff(ctx.store, a, b, patch=patch)


# -- remotes (pipelines.remote is imported on use: boto3 and cryptography load only for these verbs) ----------


def push(ctx: Context, names: list[str], *, remote: str | None = None) -> rm.PushResult:
    """Send local snapshots to the remote, whole or not at all (see ``store/remote/snapshots.py``). Reads the
    store only (snapshots are immutable), so no lock is taken and a save can run meanwhile."""
    from .pipelines import remote as rm

    for n in names:
        validate_name(n)
    recover_if_needed(ctx)
    return rm.push(ctx, names, remote)


def pull(ctx: Context, names: list[str], *, remote: str | None = None) -> list[Snapshot]:
    """Bring remote snapshots into the local store, each checked whole in ``.tmp/`` before it is committed."""
    from .pipelines import remote as rm

    for n in names:
        validate_name(n)
    with locked(ctx, "pull " + " ".join(names)):
        return rm.pull(ctx, names, remote)


def list_remote(ctx: Context, *, remote: str | None = None) -> tuple[RemoteConfig, list[RemoteSnapshot]]:
    """The remote's committed snapshots, oldest first (an interrupted push is never among them)."""
    from .pipelines import remote as rm

    return rm.list_remote(ctx, remote)


def delete_remote(ctx: Context, names: list[str], *, remote: str | None = None, force: bool = False) -> list[str]:
    """Delete remote snapshots (all names checked first; pinned ones need ``force``)."""
    from .pipelines import remote as rm

    for n in names:
        validate_name(n)
    return rm.delete_remote(ctx, names, remote, force=force)


def prune_remote(
    ctx: Context,
    flags: dict,
    *,
    remote: str | None = None,
    tz_name: str | None = None,
    dry_run: bool = False,
    confirm: Callable[[pr.PrunePlan], bool] | None = None,
    now: datetime | None = None,
) -> tuple[pr.PrunePlan, list[str]]:
    """The retention policy applied to the remote's snapshots: the whole plan first, then deletions."""
    from .pipelines import remote as rm

    policy, source = pr.resolve_policy(ctx, flags)
    tz = pr.resolve_timezone(ctx, tz_name)
    rstore, plan = rm.prune_plan(ctx, remote, policy, source, tz, now)
    # What killed pushes left (upload folders no manifest names, their pusher gone) goes whatever the policy.
    swept = rstore.sweep(dry_run=dry_run)
    if swept:
        verb = "would remove" if dry_run else "removed"
        ctx.reporter.step(f"{verb} {len(swept)} unfinished upload(s) of killed pushes: {', '.join(swept)}")
    if dry_run or not plan.removals:
        return plan, []
    if confirm is not None and not confirm(plan):
        raise UsageError("prune cancelled; nothing was deleted")
    return plan, rm.prune_execute(rstore, plan)


# -- export / import: the plain dumps of the rest of the ecosystem -----------------------------------------------


def export(ctx: Context, name: str, dest: Path, *, force: bool = False) -> dict:
    """Write a snapshot's database as the engine's plain dump (``pg_restore``-able, or the SQLite file)."""
    from .pipelines import exchange

    recover_if_needed(ctx)
    return exchange.export(ctx, name, dest, force=force)


def import_dump(ctx: Context, path: Path, name: str, *, note: str | None = None) -> Snapshot:
    """Take a plain dump (pg_dump -Fc, an SQLite file, gzipped or not: django-dbbackup's too) as a snapshot
    with no migration folders; it is restored once into a scratch database before it is committed."""
    from .pipelines import exchange

    validate_name(name)
    ctx.databases()
    with locked(ctx, f"import {name}"):
        return exchange.import_dump(ctx, path, name, note=note)
