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
from .errors import ConfigError, DbsnapError, IntegrityError, SnapshotNotFound, StoreLocked, UsageError
from .lazy import lazy
from .settings import read_pyproject
from .store import confine, locking
from .store.fsutil import remove_tree
from .store.snapshots import Snapshot, validate_name

if TYPE_CHECKING:
    from .pipelines import compare, recovery, safety_retention
    from .pipelines import consume as cs
    from .pipelines import keep_data as kd
    from .pipelines import prune as pr
    from .pipelines import remote as rm
    from .pipelines import reset as rs
    from .pipelines import rollback as rb
    from .pipelines import safety as sf
    from .pipelines import save as sv
    from .pipelines import verify as vf
    from .pipelines.save import SaveResult
    from .settings import RemoteConfig
    from .store.remote.snapshots import RemoteSnapshot
else:
    # The pipelines are imported by the verb that runs them, not by every command: `dbsnap list` needs none of
    # them, and importing them all is a good part of a command's fixed cost (issue 14).
    kd, pr, recovery = lazy("keep_data"), lazy("prune"), lazy("recovery")
    rs, rb, sv, vf = lazy("reset"), lazy("rollback"), lazy("save"), lazy("verify")
    cs, sf, safety_retention = lazy("consume"), lazy("safety"), lazy("safety_retention")


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
def _held(ctx: Context, command: str, timeout: float | None = None) -> Iterator[None]:
    with locking.store_lock(ctx.store.root, command, ctx.lock_timeout if timeout is None else timeout) as info:
        if info["took_over"]:
            ctx.reporter.warn(f"took over the stale lock of {locking.describe_owner(info['took_over'])}")
        if ctx.store.has_journal():
            recovery.recover_pending(ctx)
        sv.drop_interrupted_clones(ctx)  # before clean_tmp, which removes the records
        ctx.store.clean_tmp()
        yield


def recover_if_needed(ctx: Context) -> None:
    """Read-only verbs too finish or undo a killed rollback or reset first, so nobody looks at a half state."""
    if ctx.store.has_journal():
        with locked(ctx, "recover"):
            pass
    elif ctx.store.tmp.is_dir() and any(ctx.store.tmp.glob("*.clones")):
        # A clone being made by a command that was killed (a save --clone, a re-arm): dropped now, so no clone
        # is left that nothing points to. If the lock is held, that command is running: it is its own clone.
        with contextlib.suppress(StoreLocked), _held(ctx, "recover", timeout=0):
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
        "compose": _compose_info(p),
    }


def _compose_info(p) -> dict | None:
    """The compose services dbsnap uses (where the project is mounted in web, where db is reached), or a compose
    file found and not configured (``configured`` False), or None."""
    from .project.compose import detect

    if p.compose is None:
        found = detect(p.root)
        return {"configured": False, **found} if found else None
    c = p.compose
    out = {"configured": True, **c.public()}
    if c.web:
        out["web_workdir"] = c.web_workdir()
    if c.db and any(c.routes(db.host) for db in p.databases.values() if db.kind == "postgresql"):
        out["db_address"] = c.db_address()
    return out


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
    name = validate_name(name) if name is not None else sv.default_name()
    ctx.databases()  # no project, or an unknown --database alias, fails before the store is created
    auto = prune if prune is not None else _auto_prune(ctx)
    with locked(ctx, f"save {name}"):
        clone = clone if clone is not None else _setting_flag(ctx, "DBSNAP_CLONE", "clone")
        result = sv.take_snapshot(ctx, name, note=note, pin=pin, force=force, verify=verify, clone=clone)
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


def materialize(ctx: Context, name: str) -> SaveResult:
    """Write the dump of clone-only snapshot ``name`` from its clone (``save --from``): it becomes a normal
    snapshot, replaced atomically under the same name. A snapshot that has its dumps is returned unchanged."""
    from .pipelines.materialize import materialize as write_dump

    with locked(ctx, f"save --from {name}"):
        snap = ctx.store.get(name)
        if snap.origin == "branch":  # its kept database is what `branch switch` puts back: never replaced here
            raise UsageError(
                f"snapshot {snap.name!r} is a branch state: 'dbsnap branch switch' puts it back, save --from does "
                "not replace it",
                hint="switch to that branch, then 'dbsnap save NAME' makes a normal snapshot of it",
            )
        return write_dump(ctx, snap)


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
            sv.drop_clones(ctx, s)
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
    consume: bool = False,
) -> rb.RollbackResult:
    """Put the database(s) and migration folders back to snapshot ``name`` together, all or nothing.

    The snapshot is checked as verify checks it (checksums, confinement, seal, archive members) before anything
    live is touched; a snapshot of another project or database needs ``other_project``; ``confirm`` sees the
    plan (databases, sessions that will be terminated, folder changes) and may refuse: then nothing changes.

    Where it can (PostgreSQL swap mode, SQLite), the safety snapshot is the replaced database itself, kept by
    rename (clone-only, :mod:`dbsnap.pipelines.safety`); safety snapshots' own retention runs afterwards.
    ``consume``: the snapshot's clone is renamed into place instead of copied, then re-armed
    (:mod:`dbsnap.pipelines.consume`).
    """
    recover_if_needed(ctx)
    snap = ctx.store.get(name)  # "latest" is resolved once: the rollback cannot drift to a newer snapshot
    ctx.reporter.step(f"verifying snapshot {snap.name}")
    vf.check_snapshot(ctx, snap, allow_unsealed=allow_unsealed)
    sf.check_clones_present(ctx, snap)  # a clone-only snapshot whose clone vanished: exit 6, nothing changed
    verified = ctx.store.file_identity(snap)
    plan = rb.plan(ctx, snap, safety=safety, consume=consume)
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
        result = rb.run(ctx, plan)
        if plan.consume:
            result.rearmed, more = cs.rearm(ctx, current, result.databases)
            result.warnings += more
        if result.safety_snapshot:
            result.pruned = safety_retention.apply(ctx, result.safety_snapshot)
        return result


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
        result = kd.run(ctx, plan, on_step) if isinstance(plan, kd.KeepDataPlan) else rs.run(ctx, plan, opts, on_step)
        safety_retention.apply(ctx, result.safety_snapshot)  # the reset's own safety snapshot is never removed
        return plan, result


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
    """Write a snapshot's database as the engine's plain dump (``pg_restore``-able, the SQLite file, MySQL's SQL)."""
    from .pipelines import exchange

    recover_if_needed(ctx)
    return exchange.export(ctx, name, dest, force=force)


def import_dump(ctx: Context, path: Path, name: str, *, note: str | None = None) -> Snapshot:
    """Take a plain dump (pg_dump -Fc, an SQLite file, mysqldump's SQL; gzipped or not: django-dbbackup's too) as
    a snapshot with no migration folders; it is restored once into a scratch database before it is committed."""
    from .pipelines import exchange

    validate_name(name)
    ctx.databases()
    with locked(ctx, f"import {name}"):
        return exchange.import_dump(ctx, path, name, note=note)


# -- the database follows the branch (pipelines.branch*; imported on use) ---------------------------------------


def branch_install(ctx: Context, *, chain: bool = False, force: bool = False):
    """Write the git post-checkout hook; a foreign one is refused unless ``chain``/``force`` (then it runs first)."""
    from .pipelines import branch_hook

    return branch_hook.install(ctx.project.root, chain=chain, force=force)


def branch_uninstall(ctx: Context):
    """Remove dbsnap's post-checkout hook (a chained one is put back)."""
    from .pipelines import branch_hook

    return branch_hook.uninstall(ctx.project.root)


def branch_status(ctx: Context):
    """The hook, the branch the live database is marked as, and every branch state with size, age and whether
    its recorded migration files still match the branch; read-only."""
    from .pipelines import branch_admin

    recover_if_needed(ctx)
    return branch_admin.status(ctx)


def branch_switch(
    ctx: Context,
    branch: str,
    *,
    previous: str | None = None,
    old_commit: str | None = None,
    new_commit: str | None = None,
    prune: bool = True,
):
    """Make the live database ``branch``'s: the current state kept as a branch state, ``branch``'s put in place
    (all or nothing, journaled); then the branch retention, when configured (its removals on ``result.pruned``)."""
    from .pipelines import branch as br
    from .pipelines import branch_admin

    ctx.databases()
    with locked(ctx, f"branch switch {branch}"):
        result = br.switch(ctx, branch, previous=previous, old_commit=old_commit, new_commit=new_commit)
        result.pruned = []
        if prune and result.action in ("switched", "started"):
            keep, grace = branch_admin.resolve_retention(ctx, None, None)
            result.pruned = branch_admin.execute(ctx, branch_admin.plan(ctx, keep, grace))
        return result


def branch_prune(ctx: Context, *, keep: int | None = None, grace: str | None = None, dry_run: bool = False):
    """Apply the branch retention (keep-branches, the grace period of deleted branches); the removals, with why."""
    from .pipelines import branch_admin

    keep, grace_ = branch_admin.resolve_retention(ctx, keep, grace)
    with locked(ctx, "branch prune"):
        removals = branch_admin.plan(ctx, keep, grace_)
        if not dry_run:
            branch_admin.execute(ctx, removals)
        return [(s.name, why) for s, why in removals]
