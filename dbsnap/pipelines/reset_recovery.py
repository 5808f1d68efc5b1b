"""Recovery of a reset that a killed run left behind, from its journal (see ``reset_journal``).

Any dbsnap command that takes the store lock calls :func:`recover_pending` first. When only re-runnable checks
were left (migrate had finished), the reset is finished by running them; otherwise, or when finishing fails, the
database and migration folders are rolled back to the reset's safety snapshot, all or nothing. One line says which.
"""

from __future__ import annotations

from ..context import Context
from ..engines.base import first_line
from ..errors import ConfigError, DbsnapError, Interrupted, ResetError
from ..report import Reporter
from . import reset_journal as rj
from .reset import ResetPlan, ResetResult, Step, changing_steps, rollback_to_safety


def _plan_from_journal(ctx: Context, journal: dict) -> ResetPlan:
    project = ctx.project
    missing = [a for a in journal["databases"] if a not in project.databases]
    if missing:
        raise ConfigError(f"cannot recover the interrupted reset: database alias {missing[0]!r} is not configured")
    by_app = {f.app: f for f in project.folders}
    return ResetPlan(
        databases=[project.databases[a] for a in journal["databases"]],
        folders=[by_app[app] for app, _ in journal["folders"] if app in by_app],
        lost=[],
        after=journal.get("after", []),
        safety_name=journal["safety_snapshot"],
    )


def _finishable(steps: list[Step], journal: dict) -> bool:
    """Whether every step not completed is re-runnable, as this code (not the journal on disk) defines them."""
    rerun = {s.name: s.rerunnable for s in steps}
    return not journal.get("rolling_back") and all(rerun.get(n, False) for n in rj.remaining(journal))


def _finish(ctx: Context, journal: dict, steps: list[Step]) -> None:
    """Run the steps a killed reset had left (all re-runnable checks), journaling each as the reset did."""
    left = set(rj.remaining(journal))
    loud, ctx.reporter = ctx.reporter, Reporter()
    try:
        for s in steps:
            if s.name in left:
                rj.started(ctx.store, journal, s.name)
                s.fn()
                rj.completed(ctx.store, journal, s.name)
    finally:
        ctx.reporter = loud
    ctx.store.clear_journal()


def recover_pending(ctx: Context, journal: dict) -> str:
    """Finish or roll back the reset a killed run left (the caller holds the lock); say which in one line.

    Returns "finished", "rolled back" or "left" (a reset run with --no-auto-rollback: only said, not undone).
    """
    name = journal["safety_snapshot"]
    where = rj.where(journal)
    if not journal.get("auto_rollback", True):
        ctx.store.clear_journal()
        ctx.reporter.warn(
            f"an interrupted reset (stopped {where}, --no-auto-rollback) left the database and migration files "
            f"half-reset; roll back with: dbsnap rollback {name}"
        )
        return "left"
    why = ""
    steps = changing_steps(ctx, _plan_from_journal(ctx, journal), ResetResult(safety_snapshot=name))
    if _finishable(steps, journal):
        ctx.reporter.step(f"finishing an interrupted reset (stopped {where})")
        try:
            _finish(ctx, journal, steps)
        except Exception as e:  # any failure of a check: the reset is rolled back instead, and that is said
            why = f"; finishing it failed ({e.message if isinstance(e, DbsnapError) else first_line(e)})"
        else:
            ctx.reporter.warn(
                f"an interrupted reset (stopped {where}) was found and finished: migrations regenerated, "
                f"migrated and verified; its safety snapshot is {name}"
            )
            return "finished"
    ctx.reporter.step(f"rolling back an interrupted reset (stopped {where}) to its safety snapshot {name}")
    loud, ctx.reporter = ctx.reporter, Reporter()
    try:
        rollback_to_safety(ctx, journal)
    except Interrupted as e:
        raise Interrupted(
            f"recovering an interrupted reset (stopped {where}): {e.message.split('; ')[0]}; the reset's journal "
            f"is kept: the next dbsnap command rolls it back to {name}",
            exit_code=e.exit_code,
        ) from None
    except DbsnapError as e:
        raise ResetError(
            f"an interrupted reset (stopped {where}) could not be rolled back to {name}: {e.message}",
            hint="the journal is kept in the store; fix the cause, then any dbsnap command retries",
        ) from e
    except Exception as e:  # a psycopg error, a full disk: one line, never a traceback
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ResetError(
            f"an interrupted reset (stopped {where}) could not be rolled back to {name}: {first}",
            hint="the journal is kept in the store; fix the cause, then any dbsnap command retries",
        ) from e
    finally:
        ctx.reporter = loud
    ctx.reporter.warn(
        f"an interrupted reset (stopped {where}) was found and rolled back to its safety snapshot {name}{why}: "
        "database and migration files are as before"
    )
    return "rolled back"
