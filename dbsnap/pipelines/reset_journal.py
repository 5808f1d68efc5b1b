"""The reset's journal: which of its steps after the safety snapshot was begun and which were completed.

Written to the store's one journal (``Store.write_journal``, read back through ``Store.read_journal``) before each
step is taken and after it completes, so that the next dbsnap command can tell what a killed reset left: the
whole journal is generic over the step list, each step saying whether running it again is safe (a read-only
check). A reset whose remaining steps are all such checks is finished; any other is rolled back to its safety
snapshot.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from ..store.snapshots import Store

KIND = "reset"


def begin(
    store: Store,
    *,
    safety_snapshot: str,
    steps: list[tuple[str, bool]],
    numbering: tuple[str, ...],
    databases: list[str],
    folders: list[list[str]],
    after: list[list[str]],
    auto_rollback: bool,
    extra: dict | None = None,
) -> dict:
    """Record a reset whose safety snapshot is committed and whose ``steps`` ((name, rerunnable), in order) are
    about to be taken; ``numbering`` is the full step list the user sees as ``[i/n]``."""
    journal = {
        "kind": KIND,
        "safety_snapshot": safety_snapshot,
        "steps": [{"name": n, "rerunnable": r} for n, r in steps],
        "numbering": list(numbering),
        "current": None,
        "completed": [],
        "rolling_back": False,
        "databases": databases,
        "folders": folders,
        "after": after,
        "auto_rollback": auto_rollback,
        "pid": os.getpid(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),  # a variant's own facts (keep-data: its mode and folder backups), in the first write
    }
    store.write_journal(journal)
    return journal


def started(store: Store, journal: dict, step: str) -> None:
    """Record that ``step`` is about to be taken (before it changes anything)."""
    journal["current"] = step
    store.write_journal(journal)


def completed(store: Store, journal: dict, step: str) -> None:
    """Record that ``step`` finished."""
    journal["completed"].append(step)
    journal["current"] = None
    store.write_journal(journal)


def rolling_back(store: Store, journal: dict) -> None:
    """Record that the reset is being undone: from now on only a rollback to the safety snapshot is right."""
    journal["rolling_back"] = True
    store.write_journal(journal)


def remaining(journal: dict) -> list[str]:
    done = set(journal.get("completed", []))
    return [s["name"] for s in journal.get("steps", []) if s["name"] not in done]


def finishable(journal: dict) -> bool:
    """Whether every step not yet completed may simply be run (again), as the journal says (for ``doctor``'s
    report; recovery itself judges by the step list of the code that runs it, never by flags read from disk)."""
    if journal.get("rolling_back"):
        return False
    rerun = {s["name"]: bool(s.get("rerunnable")) for s in journal.get("steps", [])}
    return all(rerun.get(n, False) for n in remaining(journal))


def where(journal: dict) -> str:
    """``[5/7] migrate``: the step a killed reset was in (or the last it completed, "after ...")."""
    numbering = journal.get("numbering") or []

    def label(name: str) -> str:
        i = numbering.index(name) + 1 if name in numbering else 0
        return f"[{i}/{len(numbering)}] {name}" if i else name

    if journal.get("current"):
        return "at " + label(journal["current"])
    if journal.get("completed"):
        return "after " + label(journal["completed"][-1])
    return "after its safety snapshot"
