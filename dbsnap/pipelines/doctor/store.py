"""Doctor's checks of the store: writable, disk space for the next snapshot, the lock, an unfinished rollback."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ...context import Context
from ...errors import IntegrityError
from ...report import human_bytes
from ...store.locking import LOCK_NAME, describe_owner, is_held, read_owner
from ..reset_journal import finishable, where
from ..rollback import FORWARD_PHASES
from .check import FAIL, OK, WARN, Check

_STORE_FIX = "make it writable (mount options, owner, 'chattr -i'), or choose another store with --store or DBSNAP_DIR"


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_write(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``; OSError when that is not possible."""
    fd, tmp = tempfile.mkstemp(prefix=".dbsnap-doctor-", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def check_store(root: Path) -> Check:
    if root.exists() and not root.is_dir():
        return Check("store", FAIL, f"{root} exists but is not a folder", "remove it or use --store / DBSNAP_DIR")
    if not root.exists():
        parent = _existing(root)
        if not parent.is_dir():
            return Check("store", FAIL, f"{root} cannot be created: {parent} is not a folder", _STORE_FIX)
        try:
            _probe_write(parent)
        except OSError as e:
            return Check(
                "store", FAIL, f"{root} does not exist and cannot be created in {parent}: {e.strerror}", _STORE_FIX
            )
        return Check("store", OK, f"{root} does not exist yet; the first save creates it ({parent} is writable)")
    try:
        _probe_write(root)
    except OSError as e:
        return Check("store", FAIL, f"{root} is not writable: {e.strerror}", _STORE_FIX)
    mode = root.stat().st_mode & 0o777
    if mode & 0o077:
        return Check(
            "store",
            WARN,
            f"{root} is writable but has mode {mode:04o}: other users can read the database dumps",
            f"chmod 700 {root}",
        )
    return Check("store", OK, f"{root} is writable")


def check_space(ctx: Context) -> Check:
    root = ctx.store.root
    usage = shutil.disk_usage(_existing(root))
    free = human_bytes(usage.free)
    snaps = ctx.store.list()
    if not snaps:
        return Check("disk space", OK, f"{free} free; no snapshot yet to compare with")
    latest = snaps[-1]
    size = latest.size
    detail = f"{free} free; the latest snapshot {latest.name} is {human_bytes(size)}"
    fix = (
        f"free space on the file system of {root}, remove old snapshots ('dbsnap prune' or 'dbsnap delete'), "
        "or move the store (--store / DBSNAP_DIR)"
    )
    if usage.free < size:
        return Check("disk space", FAIL, f"{detail}: the next snapshot will not fit", fix)
    if usage.free < 2 * size:
        return Check("disk space", WARN, f"{detail}: less than twice that (a rollback's safety snapshot)", fix)
    return Check("disk space", OK, detail)


def check_safety(ctx: Context) -> Check:
    """Safety snapshots against their own retention, and clone-only ones against the clone budget."""
    from ..clone_only import check_clones_present, clone_bytes, is_clone_only
    from ..safety_retention import plan, policy

    rules = policy(ctx)
    newest = [s.name for s in ctx.store.list() if s.origin == "pre-rollback"][-1:]
    decisions = plan(ctx, newest[0] if newest else None)  # as the last rollback left it: its own is kept
    kept = [d for d in decisions if d.keep]
    only = [d.snapshot for d in kept if is_clone_only(d.snapshot)]
    used = sum(clone_bytes(s) for s in only)
    budget = (
        f"of the {human_bytes(rules.clone_budget)} clone budget" if rules.clone_budget is not None else "(no budget)"
    )
    detail = (
        f"{len(decisions)} safety snapshot(s), {len(only)} clone-only using {human_bytes(used)} {budget}; "
        f"retention: {rules.describe()}"
    )
    vanished = []
    for snap in only:
        try:
            check_clones_present(ctx, snap)
        except IntegrityError as e:
            vanished.append(e.message)
    if vanished:
        return Check("safety snapshots", FAIL, f"{detail}; {vanished[0]}", "delete it: it holds no database")
    gone = [d.name for d in decisions if not d.keep]
    if gone or (rules.clone_budget is not None and used > rules.clone_budget):
        why = f"{len(gone)} past their retention (removed after the next rollback or reset)" if gone else "over budget"
        return Check(
            "safety snapshots",
            WARN,
            f"{detail}; {why}",
            "raise clone-budget, or 'dbsnap save --from NAME' / 'dbsnap pin NAME' one you want to keep",
        )
    return Check("safety snapshots", OK, detail)


def flock_holders(path: Path) -> list[int] | None:
    """Pids holding a ``flock`` on ``path`` according to ``/proc/locks`` (None when it cannot be read).

    Read-only: unlike a non-blocking ``flock`` probe, it never holds the lock, even for an instant, so a
    command starting at the same moment cannot find the store locked because of doctor.
    """
    try:
        ino = os.stat(path).st_ino
    except FileNotFoundError:
        return []
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    pids = []
    for line in lines:
        parts = line.split()
        if "->" in parts or "FLOCK" not in parts:
            continue  # waiters are not holders
        i = parts.index("FLOCK")
        with contextlib.suppress(IndexError, ValueError):
            pid, ident = parts[i + 3], parts[i + 4]
            # maj:min:inode; the device is not compared (overlay file systems report another one).
            if int(ident.rsplit(":", 1)[1]) == ino:
                pids.append(int(pid))
    return pids


def check_lock(root: Path) -> Check:
    if not root.is_dir():
        return Check("lock", OK, "not locked (no store yet)")
    owner = read_owner(root)
    if owner is None:
        return Check("lock", OK, "not locked")
    holders = flock_holders(root / LOCK_NAME)
    held = bool(holders) if holders is not None else is_held(root)
    if held:
        return Check(
            "lock",
            WARN,
            f"held by {describe_owner(owner)}: other commands wait up to --lock-timeout seconds, then exit 11",
            "wait for it to finish, or pass --lock-timeout SECONDS to the next command",
        )
    return Check(
        "lock",
        WARN,
        f"stale lock file of {describe_owner(owner)}, which no longer holds it: the next command takes it over",
        "nothing to do (or remove it with 'dbsnap unlock')",
    )


def check_journal(ctx: Context) -> Check:
    if not ctx.store.root.is_dir():
        return Check("journal", OK, "no unfinished rollback (no store yet)")
    try:
        journal = ctx.store.read_journal()
    except (ValueError, IntegrityError) as e:
        return Check(
            "journal",
            FAIL,
            f"{ctx.store.journal_path} is unreadable ({e}): an interrupted rollback cannot be recovered from it",
            "restore the state by hand from its safety snapshot; see README 'Rollback guarantees'",
        )
    if journal is None:
        return Check("journal", OK, "no unfinished rollback")
    phase = journal.get("phase", "?")
    if journal.get("kind") == "branch-switch":
        what = f"switch of the database from {journal.get('from')} to {journal.get('to')} (pid "
        what += f"{journal.get('pid', '?')}, phase {phase})"
    elif journal.get("kind") == "reset":
        kind = "reset --keep-data" if journal.get("mode") == "keep-data" else "reset"
        what = f"{kind} (safety snapshot {journal.get('safety_snapshot', '?')}, pid {journal.get('pid', '?')}, since "
        what += f"{journal.get('started', '?')}, stopped {where(journal)})"
        phase = "finishing" if finishable(journal) else "?"
    else:
        what = f"rollback to {journal.get('snapshot', '?')!r} (pid {journal.get('pid', '?')}, since "
        what += f"{journal.get('started', '?')}, phase {phase})"
    if flock_holders(ctx.store.root / LOCK_NAME):
        return Check("journal", WARN, f"{what} is running now", "wait for it to finish")
    outcome = "finishes" if phase in (*FORWARD_PHASES, "finishing") else "finishes or undoes"
    if journal.get("kind") == "reset":
        outcome = "finishes" if phase == "finishing" else "rolls back"
        if journal.get("mode") == "keep-data":  # finished when its rewrite committed, else its old history is back
            outcome = "finishes or undoes"
    return Check(
        "journal",
        WARN,
        f"unfinished {what}: the next dbsnap command {outcome} it before anything else",
        "run any dbsnap command (e.g. 'dbsnap list') to recover now",
    )


def check_branch_states(ctx: Context) -> Check:
    """The disk budget of branch states: how many, and what they hold (PostgreSQL clones on the server's disk,
    SQLite files in the store), beside the free space where the store lives."""
    from ..branch_admin import budget

    count, size = budget(ctx)
    if not count:
        return Check("branch states", OK, "none (see 'dbsnap branch install')")
    free = shutil.disk_usage(_existing(ctx.store.root)).free
    detail = f"{count} branch state(s) hold {human_bytes(size)} (their databases, kept while another branch is out)"
    fix = "'dbsnap branch prune --keep-branches N', or delete the states of branches you are done with"
    if size > free:
        return Check("branch states", WARN, f"{detail}, more than the {human_bytes(free)} free beside the store", fix)
    return Check("branch states", OK, f"{detail}; {human_bytes(free)} free")
