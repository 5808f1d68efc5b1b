"""Retention in the store: which policy applies, the whole plan first, then deletions oldest first.

The decisions come from the pure :mod:`dbsnap.retention`; this module only finds the policy (flags, else
``DBSNAP_KEEP_*`` variables, else ``[tool.dbsnap.retention]``), groups the store's complete snapshots by
database, and deletes. Callers hold the store lock, so a snapshot being written is never seen (it is still in
``.tmp/``) and nothing changes between plan and deletion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..context import Context
from ..errors import UsageError
from ..retention import Decision, Policy, PolicyError, apply_policy_grouped, group_by_database
from ..settings import read_pyproject, source_of
from ..store.snapshots import Snapshot
from .save import drop_clones

ENV_PREFIX = "DBSNAP_KEEP_"


def database_key(s: Snapshot) -> str:
    """The database(s) a snapshot belongs to: engine and name of each, e.g. ``postgresql:shop``."""
    return " + ".join(sorted(f"{d.get('engine')}:{d.get('name')}" for d in s.databases.values())) or "(none)"


def configured_policy(ctx: Context) -> tuple[Policy | None, str]:
    """The policy from the environment (``DBSNAP_KEEP_DAILY=7``...) or pyproject; (None, "") when none."""
    try:
        env_rules = {k[len(ENV_PREFIX) :].lower(): v for k, v in ctx.env.items() if k.startswith(ENV_PREFIX)}
        if env_rules:
            return Policy.from_mapping(env_rules), "environment"
        table = read_pyproject(ctx.root).get("retention", {}) if ctx.root else {}
        if table:
            return Policy.from_mapping(table), source_of(ctx.root, "retention") if ctx.root else ""
    except PolicyError as e:
        raise UsageError(f"invalid retention configuration: {e}") from e
    return None, ""


def resolve_policy(ctx: Context, flags: dict) -> tuple[Policy, str]:
    """Flags replace the configured policy for this run (no merging); an empty policy is a usage error."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        policy, source = (Policy.from_mapping(given), "command line") if given else configured_policy(ctx)
    except PolicyError as e:
        raise UsageError(str(e)) from e
    if policy is None or policy.is_empty():
        raise UsageError(
            "empty retention policy: nothing would be kept, so nothing is pruned",
            hint="give --keep-last/--keep-daily/... or set [tool.dbsnap.retention] in pyproject.toml",
        )
    return policy, source


def resolve_timezone(ctx: Context, name: str | None) -> tzinfo | None:
    """The zone buckets are computed in: --timezone, DBSNAP_TIMEZONE, pyproject ``timezone``, else local."""
    name = name or ctx.env.get("DBSNAP_TIMEZONE") or (read_pyproject(ctx.root).get("timezone") if ctx.root else None)
    if not name:
        return None
    try:
        return timezone.utc if name.upper() == "UTC" else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise UsageError(f"unknown time zone {name!r}", hint="use an IANA name such as Europe/Berlin, or UTC") from e


@dataclass
class PrunePlan:
    policy: Policy
    source: str
    groups: dict[str, list[Decision]]

    @property
    def removals(self) -> list[Decision]:
        """Snapshots to delete, oldest first (decisions come newest first)."""
        return [d for ds in self.groups.values() for d in reversed(ds) if not d.keep]


def plan(ctx: Context, policy: Policy, source: str, tz: tzinfo | None, now: datetime | None = None) -> PrunePlan:
    """Decide for every complete snapshot, per database; nothing is deleted here. Branch states (origin
    ``branch``: a branch's live database, kept while another branch is checked out) have their own retention
    (``dbsnap branch prune``) and are never removed by this policy."""
    return plan_for([s for s in ctx.store.list() if s.origin != "branch"], policy, source, tz, now)


def plan_for(
    snaps: list[Snapshot], policy: Policy, source: str, tz: tzinfo | None, now: datetime | None = None
) -> PrunePlan:
    """Decide for ``snaps`` (the local store's or a remote's), per database; nothing is deleted here."""
    try:
        groups = apply_policy_grouped(
            group_by_database(snaps, database_key), policy, now or datetime.now(timezone.utc), tz
        )
    except PolicyError as e:
        raise UsageError(str(e)) from e
    return PrunePlan(policy=policy, source=source, groups=groups)


def execute(ctx: Context, p: PrunePlan) -> list[str]:
    """Delete the planned removals, oldest first; return their names."""
    deleted = []
    for d in p.removals:
        snap = d.snapshot if isinstance(d.snapshot, Snapshot) else ctx.store.get(d.name)
        ctx.store.delete(snap)
        drop_clones(ctx, snap)
        deleted.append(d.name)
    return deleted
