"""Branch states at rest: which branches have one (size, age, whether their migration files still match the
branch), their retention, and what they cost on disk.

Retention: ``keep-branches N`` keeps the states of the N branches left most recently; the state of a branch that
git no longer has is kept for a grace period (``branch-grace``, default 14d) after it was kept, then removed.
The general policy (``dbsnap prune``) never removes branch states: they are a branch's database, not history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..context import Context
from ..errors import UsageError
from ..project import git
from ..retention import PolicyError, parse_duration
from ..settings import read_pyproject
from ..store.snapshots import Snapshot
from . import branch_state as bs
from .save import drop_clones

DEFAULT_GRACE = "14d"


@dataclass
class StateRow:
    branch: str
    snapshot: str
    bytes: int
    created_at: str
    exists: bool  # the branch is still in git
    matches: bool | None  # recorded migration files == the branch tip's (None: branch gone)
    differences: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class BranchStatus:
    hook: str  # "installed", "not installed", "foreign hook"
    hook_path: str
    checked_out: str | None
    live: str | None  # the branch the live database is marked as
    states: list[StateRow]


def state_bytes(ctx: Context, snap: Snapshot) -> int:
    """The database size a state holds (recorded when it was kept) plus its files."""
    return sum(int(d.get("raw_bytes") or 0) for d in snap.databases.values() if d.get("engine") != "sqlite") + sum(
        int(f.get("bytes") or 0) for f in snap.manifest.get("files", {}).values()
    )


def status(ctx: Context) -> BranchStatus:
    from . import branch_hook

    root = ctx.project.root
    top = git.toplevel(root)
    hook = branch_hook.info(root)
    keys = {bs.db_key(db) for db in ctx.databases()}
    folders = [f.path for f in ctx.project.folders]
    existing = git.branches(top)
    rows = []
    for s in bs.states(ctx.store, keys):
        name = bs.branch_of(s)
        recorded = s.manifest["branch"].get("files") or {}
        tip = bs.branch_files(top, root, folders, name) if name in existing else None
        diff = bs.compare_files(recorded, tip) if tip is not None else {}
        rows.append(
            StateRow(
                branch=name,
                snapshot=s.name,
                bytes=state_bytes(ctx, s),
                created_at=s.manifest["created_at"],
                exists=name in existing,
                matches=None if tip is None else not any(diff.values()),
                differences=diff,
            )
        )
    return BranchStatus(
        hook="installed" if hook.installed else ("foreign hook" if hook.foreign else "not installed"),
        hook_path=str(hook.path),
        checked_out=git.current_branch(top),
        live=bs.marked_branch(ctx.store, keys),
        states=rows,
    )


def resolve_retention(ctx: Context, keep: int | None, grace: str | None) -> tuple[int | None, str]:
    """keep-branches and branch-grace: the flags, else DBSNAP_BRANCH_KEEP / DBSNAP_BRANCH_GRACE, else
    ``[tool.dbsnap]`` keep-branches / branch-grace; grace defaults to 14d, keep-branches to unlimited."""
    table = read_pyproject(ctx.root) if ctx.root else {}
    raw_keep = keep if keep is not None else ctx.env.get("DBSNAP_BRANCH_KEEP", table.get("keep-branches"))
    raw_grace = grace or ctx.env.get("DBSNAP_BRANCH_GRACE") or table.get("branch-grace") or DEFAULT_GRACE
    try:
        n = int(raw_keep) if raw_keep is not None else None
        parse_duration(str(raw_grace))
    except (ValueError, PolicyError) as e:
        raise UsageError(f"invalid branch retention: {e}") from e
    if n is not None and n < 0:
        raise UsageError("invalid branch retention: keep-branches must be 0 or more")
    return n, str(raw_grace)


def plan(ctx: Context, keep: int | None, grace: str, now: datetime | None = None) -> list[tuple[Snapshot, str]]:
    """The branch states to remove, with why; nothing is deleted here."""
    now = now or datetime.now(timezone.utc)
    top = git.toplevel(ctx.project.root)
    existing = git.branches(top)
    cutoff = parse_duration(grace).subtract_from(now)
    snaps = sorted(bs.states(ctx.store), key=lambda s: s.created_at, reverse=True)
    out: list[tuple[Snapshot, str]] = []
    kept = 0
    for s in snaps:
        name = bs.branch_of(s)
        if s.pinned:
            continue
        if name not in existing and s.created_at < cutoff:
            out.append((s, f"branch {name} was deleted and its state is older than {grace}"))
        elif name in existing and keep is not None and kept >= keep:
            out.append((s, f"beyond keep-branches {keep}"))
        elif name in existing:
            kept += 1
    return out


def execute(ctx: Context, removals: list[tuple[Snapshot, str]]) -> list[str]:
    for s, _ in removals:
        ctx.store.delete(s)
        drop_clones(ctx, s)
    return [s.name for s, _ in removals]


def budget(ctx: Context) -> tuple[int, int]:
    """(number of branch states, bytes they hold) in the store: what doctor shows."""
    snaps = bs.states(ctx.store)
    return len(snaps), sum(state_bytes(ctx, s) for s in snaps)
