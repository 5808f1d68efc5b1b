"""push, pull, list, delete and prune on a remote: the remote wing of the store, driven with this project's
settings, lock, confinement rules and checks.

Push checks the manifest, the seal and the migrations archive, and hashes every payload as it sends it (one that
differs from its checksum fails the push before the manifest is written). Pull downloads into the store's
``.tmp/``, hashing every payload as it writes it, runs the rest of a rollback's checks on the staged copy
(confinement to this project, the seal where a key is configured, the archive) and only then commits it, so a
killed or refused pull leaves nothing but debris that the next locked run removes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..context import Context
from ..errors import ConfigError, UsageError
from ..settings import RemoteConfig, resolve_remote
from ..store.confine import Rules
from ..store.fsutil import remove_tree
from ..store.remote import crypt
from ..store.remote.s3 import Bucket
from ..store.remote.snapshots import RemoteSnapshot, RemoteStore
from ..store.snapshots import Snapshot
from . import prune as pr
from . import verify as vf
from .exchange import refuse_clone_only


def remote_for(ctx: Context, flag: str | None) -> tuple[RemoteConfig, RemoteStore]:
    """The configured remote (see ``settings.resolve_remote``) and its store."""
    cfg = resolve_remote(flag, ctx.env, ctx.root)
    bucket = Bucket(cfg.bucket, endpoint=cfg.endpoint, profile=cfg.profile, region=cfg.region, env=ctx.env)
    return cfg, RemoteStore(bucket, cfg.prefix, cfg.url)


@contextlib.contextmanager
def _progress(ctx: Context) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    counters = []

    def make(label: str, total: int) -> Callable[[int], None]:
        for c in counters:
            c.close()
        counters.append(ctx.reporter.progress(label, total))
        return counters[-1]

    try:
        yield make
    finally:
        for c in counters:
            c.close()


@dataclass
class PushResult:
    remote: str
    pushed: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # identical snapshots already on the remote
    encrypted: str | None = None  # key id


def push(ctx: Context, names: list[str], remote: str | None) -> PushResult:
    """Verify each named local snapshot as a rollback would, then push it (encrypted when a key is set)."""
    cfg, rstore = remote_for(ctx, remote)
    key = crypt.load_key(ctx.env)
    if cfg.encrypt and key is None:
        raise ConfigError(
            f"remote {cfg.name} requires encryption and no encryption key is set; nothing was pushed",
            hint="set DBSNAP_ENCRYPTION_KEY or DBSNAP_ENCRYPTION_KEY_FILE",
        )
    snaps = [ctx.store.get(n) for n in names]  # every name resolved before anything is sent
    for snap in snaps:
        refuse_clone_only(snap, "push")
    result = PushResult(remote=cfg.url, encrypted=key.id if key else None)
    for snap in snaps:
        ctx.reporter.step(f"verifying {snap.name}")
        # Shape only: the pulling side confines the manifest to its own project. The payloads are hashed as they
        # are sent, and a payload that differs from its checksum fails the push before its manifest is written.
        shape = Rules(root=None, folders=None, store=ctx.store.root)
        vf.check_snapshot(ctx, snap, allow_unsealed=True, payloads_checked=True, rules=shape)
        ctx.reporter.step(f"pushing {snap.name} to {cfg.url}" + (f" (encrypted, key {key.id})" if key else ""))
        with _progress(ctx) as progress:
            _, sent = rstore.push(snap, key, progress)
        (result.pushed if sent else result.already).append(snap.name)
    return result


def pull(ctx: Context, names: list[str], remote: str | None) -> list[Snapshot]:
    """Pull each named remote snapshot into the local store, checked whole before it enters it. Callers hold
    the store lock. UsageError when a snapshot of that name is already in the local store."""
    cfg, rstore = remote_for(ctx, remote)
    key = crypt.load_key(ctx.env)
    wanted = [rstore.get(n) for n in names]
    for rs in wanted:
        if ctx.store.exists(rs.name):
            raise UsageError(
                f"snapshot {rs.name!r} is already in the local store; nothing was pulled",
                hint=f"'dbsnap delete {rs.name}' first, or compare them with 'dbsnap show {rs.name}'",
            )
    pulled = []
    for rs in wanted:
        staged = ctx.store.stage(rs.name)
        try:
            ctx.reporter.step(f"pulling {rs.name} from {cfg.url}")
            with _progress(ctx) as progress:
                rstore.pull_into(rs, staged, key, progress)
            ctx.reporter.step(f"verifying {rs.name}")
            staged_snap = Snapshot(name=rs.name, path=staged, manifest=rs.manifest)
            # pull_into hashed every payload as it wrote it: the rest of a rollback's checks run on the staged copy.
            vf.check_snapshot(ctx, staged_snap, allow_unsealed=True, payloads_checked=True)
            pulled.append(ctx.store.commit(staged, rs.name))
        except BaseException:
            remove_tree(staged)
            raise
    return pulled


def list_remote(ctx: Context, remote: str | None) -> tuple[RemoteConfig, list[RemoteSnapshot]]:
    cfg, rstore = remote_for(ctx, remote)
    return cfg, rstore.list(ctx.reporter.warn)


def delete_remote(ctx: Context, names: list[str], remote: str | None, *, force: bool = False) -> list[str]:
    """Delete remote snapshots; every name is checked first. Pinned ones need ``force``."""
    _, rstore = remote_for(ctx, remote)
    snaps = [rstore.get(n) for n in names]
    pinned = [s.name for s in snaps if s.pinned]
    if pinned and not force:
        raise UsageError(f"remote snapshot {pinned[0]!r} is pinned", hint="pass --force to delete it anyway")
    for s in snaps:
        rstore.delete(s)
    return [s.name for s in snaps]


def prune_plan(ctx: Context, remote: str | None, policy, source: str, tz, now=None) -> tuple[RemoteStore, pr.PrunePlan]:
    """The retention plan for the remote's snapshots (the same rules as the local store's)."""
    _, rstore = remote_for(ctx, remote)
    return rstore, pr.plan_for(rstore.list(ctx.reporter.warn), policy, source, tz, now)


def prune_execute(rstore: RemoteStore, plan: pr.PrunePlan) -> list[str]:
    deleted = []
    for d in plan.removals:
        rstore.delete(d.snapshot)
        deleted.append(d.name)
    return deleted
