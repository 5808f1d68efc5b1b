"""``dbsnap branch``: the database follows the branch (install / uninstall the git hook, status, switch, prune;
``hook`` is what the git hook runs)."""

from __future__ import annotations

import contextlib
import signal
from datetime import datetime, timezone

import click

from .. import api, procs
from ..errors import DbsnapError
from ..report import human_bytes
from ..settings import read_pyproject
from .common import Obj, confirm_or_refuse, json_opt, out

NULL_SHA = "0" * 40
DEFAULT_TIMEOUT = 20.0


@click.group()
def branch() -> None:
    """The database follows the branch: 'git checkout' keeps the current database state as the branch's and
    puts the new branch's in place (PostgreSQL: renames, O(1); SQLite: the file moved).

    \b
    Example:
      dbsnap branch install         # the git post-checkout hook
      git checkout -b feature/x     # the database follows
      dbsnap branch status
    """


@branch.command()
@click.option("--chain", is_flag=True, help="Keep an existing post-checkout hook and run it before dbsnap's.")
@click.option("--force", is_flag=True, help="Install over an existing hook (it is kept and chained, never lost).")
@click.pass_obj
def install(obj: Obj, chain: bool, force: bool) -> None:
    """Write the git post-checkout hook (in 'git rev-parse --git-path hooks': worktrees and core.hooksPath too).

    \b
    Example:
      dbsnap branch install
      dbsnap branch install --chain   # keep the hook that is there, run it first
    """
    info = api.branch_install(obj.ctx("branch install"), chain=chain, force=force)
    out(f"installed {info.path}" + (f" (runs {info.chained} first)" if info.chained else ""), False)


@branch.command()
@click.pass_obj
def uninstall(obj: Obj) -> None:
    """Remove dbsnap's post-checkout hook (a hook it chained is put back); branch states stay in the store.

    \b
    Example:
      dbsnap branch uninstall
    """
    ctx = obj.ctx("branch uninstall")
    before = api.branch_uninstall(ctx)
    out(f"removed dbsnap's hook from {before.path}" + (" (the chained hook is back)" if before.foreign else ""), False)


def _age(stamp: str) -> str:
    secs = (datetime.now(timezone.utc) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{int(secs // n)}{unit}"
    return f"{int(secs)}s"


@branch.command()
@json_opt
@click.pass_obj
def status(obj: Obj, as_json: bool) -> None:
    """The branches with a saved database state: size, age, and whether their recorded migration files still
    match the branch.

    \b
    Example:
      dbsnap branch status
    """
    st = api.branch_status(obj.ctx("branch status"))
    if as_json:
        out({**st.__dict__, "states": [r.__dict__ for r in st.states]}, True)
        return
    lines = [
        f"hook: {st.hook} ({st.hook_path})",
        f"checked out: {st.checked_out or '(detached HEAD)'}; the database is {st.live or '(not marked)'}'s",
    ]
    if not st.states:
        lines.append("no branch has a saved database state")
    else:
        lines.append(f"{'BRANCH':<24} {'SNAPSHOT':<28} {'SIZE':>9} {'AGE':>5}  MIGRATION FILES")
        for r in st.states:
            if r.matches is None:
                files = "branch deleted"
            elif r.matches:
                files = "match the branch"
            else:
                d = r.differences
                files = f"differ ({len(d['new'])} new, {len(d['gone'])} gone, {len(d['changed'])} changed)"
            lines.append(f"{r.branch:<24} {r.snapshot:<28} {human_bytes(r.bytes):>9} {_age(r.created_at):>5}  {files}")
    out("\n".join(lines), False)


def switch_line(result, manual: bool = False) -> str:
    """The one line a switch prints."""
    b = result.to_branch
    if result.action == "none":
        return f"the database is already {b}'s"
    if result.action == "marked":
        return f"the database is now marked as {b}'s (no earlier branch known: nothing was kept)"
    if result.action == "switched":
        text = f"the database is now {b}'s (kept {result.from_branch}'s as {result.kept}) in {result.seconds:.2f} s"
    else:
        text = (
            f"{b} had no saved database state: the database stays as it is, now {b}'s "
            f"({result.from_branch}'s kept as {result.kept}, by a copy) in {result.seconds:.2f} s"
        )
    if result.sessions:
        text += f"; ended {len(result.sessions)} session(s)"
    f = result.files
    if f and any(f.values()):
        text += f"; its migration files changed since ({len(f['new'])} new, {len(f['gone'])} gone, "
        text += f"{len(f['changed'])} changed)"
    if result.missing:
        text += f"; {len(result.missing)} applied migration(s) have no file here ({result.missing[0]})"
    elif result.to_apply:
        text += f"; {len(result.to_apply)} migration(s) to apply: run 'python manage.py migrate'"
    if result.pruned:
        text += f"; retention removed {', '.join(result.pruned)}"
    return text


@branch.command()
@click.argument("name")
@click.option("--migrate", is_flag=True, help="Then run 'manage.py migrate' if the branch has migrations to apply.")
@click.option("--yes", "-y", is_flag=True, help="With --migrate: do not ask for confirmation.")
@json_opt
@click.pass_obj
def switch(obj: Obj, name: str, migrate: bool, yes: bool, as_json: bool) -> None:
    """Switch the database to branch NAME's state by hand (what the hook does on 'git checkout NAME').

    \b
    Example:
      dbsnap branch switch feature/x
      dbsnap branch switch main --migrate
    """
    from ..project import git

    ctx = obj.ctx("branch switch")
    root = ctx.project.root
    result = api.branch_switch(ctx, name, previous=git.previous_branch(root) if ctx.root else None)
    if as_json:
        out(result.__dict__ | {"seconds": round(result.seconds, 3)}, True)
    else:
        out(switch_line(result, manual=True), False)
    question = f"Apply {len(result.to_apply)} migration(s) with 'manage.py migrate'?"
    if migrate and result.to_apply and not result.missing and confirm_or_refuse(yes, question):
        from ..project.manage_steps import manage

        proc = manage(ctx.project, "migrate", "--no-input")
        click.echo(proc.stdout, err=True, nl=False)
        if proc.returncode != 0:
            raise DbsnapError(f"manage.py migrate failed (exit {proc.returncode}); the database is {name}'s")


@branch.command(name="prune")
@click.option("--keep-branches", type=int, metavar="N", help="Keep the states of the N branches left most recently.")
@click.option("--grace", metavar="DUR", help="Keep a deleted branch's state this long (default 14d).")
@click.option("--dry-run", "-n", is_flag=True, help="Say what would be removed; remove nothing.")
@json_opt
@click.pass_obj
def prune_(obj: Obj, keep_branches: int | None, grace: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove branch states by the branch retention (keep-branches, the grace period of deleted branches).

    \b
    Example:
      dbsnap branch prune --keep-branches 5 --dry-run
    """
    removed = api.branch_prune(obj.ctx("branch prune"), keep=keep_branches, grace=grace, dry_run=dry_run)
    if as_json:
        out([{"snapshot": n, "why": w} for n, w in removed], True)
        return
    verb = "would remove" if dry_run else "removed"
    out("\n".join(f"{verb} {n}: {w}" for n, w in removed) or "no branch state to remove", False)


def _timeout(ctx) -> float:
    """``branch-timeout``: DBSNAP_BRANCH_TIMEOUT (environment or .env), else ``[tool.dbsnap] branch-timeout``."""
    raw = ctx.env.get("DBSNAP_BRANCH_TIMEOUT")
    if raw is None and ctx.root is not None:
        raw = read_pyproject(ctx.root).get("branch-timeout")
    try:
        return float(raw) if raw is not None else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT


def _alarm(signum: int, frame: object) -> None:
    raise procs.Signalled(signum)


@branch.command(hidden=True)
@click.argument("old")
@click.argument("new")
@click.argument("flag")
@click.pass_obj
def hook(obj: Obj, old: str, new: str, flag: str) -> None:
    """What the post-checkout hook runs: one line, never a failure (the checkout has happened already)."""
    if flag != "1":
        return  # a file checkout: the branch did not change
    bound = DEFAULT_TIMEOUT
    target = None
    try:
        from ..project import git

        ctx = obj.ctx("branch hook", quiet=True)
        bound = _timeout(ctx)
        root = ctx.project.root
        target = git.current_branch(root)
        if target is None:
            click.echo("dbsnap: detached HEAD: the database is left as it is", err=True)
            return
        previous = None if old == NULL_SHA else git.previous_branch(root)
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, bound)
        try:
            result = api.branch_switch(
                ctx, target, previous=previous, old_commit=None if old == NULL_SHA else old, new_commit=new
            )
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if result.action != "none":
            click.echo(f"dbsnap: {switch_line(result)}", err=True)
    except BaseException as e:  # never fail or block the checkout: one line saying how to do it by hand
        if (isinstance(e, procs.Signalled) and e.signum == signal.SIGALRM) or "SIGALRM" in str(e):
            why = f"it took longer than {bound:g} s (branch-timeout)"
        elif isinstance(e, DbsnapError):
            why = e.message
        else:
            why = f"{type(e).__name__}: {e}"
        with contextlib.suppress(Exception):
            why = why.splitlines()[0]
        hand = f"; run 'dbsnap branch switch {target}'" if target else ""
        click.echo(f"dbsnap: the database was not switched: {why}{hand}", err=True)
