"""Safety snapshots' own retention, applied after every rollback and reset (:mod:`dbsnap.retention.safety`
decides): the configured keys, the plan and the deletions (clones dropped with their snapshots)."""

from __future__ import annotations

from datetime import datetime, timezone

from ..context import Context
from ..errors import UsageError
from ..retention import Decision, PolicyError
from ..retention.safety import SafetyPolicy, decide_safety
from ..settings import read_pyproject
from .clone_only import clone_bytes
from .save import drop_clones

ENV = {"safety-keep": "DBSNAP_SAFETY_KEEP", "safety-keep-within": "DBSNAP_SAFETY_KEEP_WITHIN"}
ENV["clone-budget"] = "DBSNAP_CLONE_BUDGET"


def policy(ctx: Context) -> SafetyPolicy:
    """The environment (``DBSNAP_SAFETY_KEEP``...) over ``[tool.dbsnap]`` over the defaults; UsageError if bad."""
    values = dict(read_pyproject(ctx.root)) if ctx.root else {}
    for key, var in ENV.items():
        if ctx.env.get(var) is not None:
            values[key] = ctx.env[var]
    try:
        return SafetyPolicy.from_mapping(values)
    except PolicyError as e:
        raise UsageError(f"invalid safety snapshot retention: {e}") from e


def plan(ctx: Context, just_made: str | None, now: datetime | None = None) -> list[Decision]:
    return decide_safety(
        ctx.store.list(), policy(ctx), now or datetime.now(timezone.utc), just_made=just_made, clone_bytes=clone_bytes
    )


def apply(ctx: Context, just_made: str | None) -> list[str]:
    """Delete the safety snapshots the retention removes (never ``just_made``); their names. A failure is a
    warning: the rollback or reset it follows is done whatever happens here."""
    try:
        removals = [d for d in plan(ctx, just_made) if not d.keep]
    except UsageError as e:
        ctx.reporter.warn(f"{e.message}; no safety snapshot was removed")
        return []
    gone = []
    for d in reversed(removals):  # oldest first
        try:
            ctx.store.delete(d.snapshot)
            drop_clones(ctx, d.snapshot)
        except OSError as e:
            ctx.reporter.warn(f"safety snapshot {d.name} was not removed: {e}")
            continue
        ctx.reporter.step(f"removed safety snapshot {d.name} ({'; '.join(d.reasons)})")
        gone.append(d.name)
    return gone
