"""What every locked dbsnap command runs first: finish or undo the work a killed run left in the store's journal.

The journal is a branch switch's (finished or undone by ``branch.recover``), a rollback's (finished or undone
by ``rollback.recover``), a reset's (finished or rolled back by
``reset_recovery``), or a rollback that a reset started to undo itself, carrying the reset's journal as
``outer``: when that rollback is undone, the reset's journal is back and is recovered in turn.
"""

from __future__ import annotations

from ..context import Context
from . import branch, keep_data, reset_recovery
from . import reset_journal as rj
from . import rollback as rb


def recover_pending(ctx: Context) -> str | None:
    """Recover whatever the journal describes (the caller holds the lock); None when there is nothing to do."""
    outcome = None
    for _ in range(3):  # a rollback carrying a reset: at most the rollback, then the reset
        journal = rb.pending_journal(ctx)  # confined to this project and store before anything acts on it
        if not journal:
            return outcome
        if journal.get("kind") == branch.KIND:
            return branch.recover_pending(ctx, journal)  # A's state or B's, judged from the databases themselves
        if journal.get("kind") == rj.KIND and journal.get("mode") == keep_data.MODE:
            return keep_data.recover_pending(ctx, journal)  # never a restore: the old rows and files go back
        if journal.get("kind") == rj.KIND:
            return reset_recovery.recover_pending(ctx, journal)
        if journal.get("outer"):
            outcome = _rollback_of_a_reset(ctx, journal)
            if outcome == "rolled back":
                return outcome
            continue
        return rb.recover_pending(ctx)
    return outcome


def _rollback_of_a_reset(ctx: Context, journal: dict) -> str:
    """A reset's rollback to its safety snapshot was killed: finished means the reset is wholly undone."""
    outcome = rb.recover_pending(ctx, quiet=True)
    if outcome == "forward":
        outer = journal["outer"]
        ctx.reporter.warn(
            f"an interrupted reset (stopped {rj.where(outer)}) was found and rolled back to its safety snapshot "
            f"{outer['safety_snapshot']}: database and migration files are as before"
        )
        return "rolled back"
    return "undone"
