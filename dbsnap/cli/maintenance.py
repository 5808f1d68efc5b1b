"""The maintenance commands: prune (retention), schedule (cron and systemd) and unlock (a stale store lock)."""

from __future__ import annotations

import click

from .. import api
from . import render
from .common import Obj, confirm_or_refuse, json_opt, out
from .remote import remote_opt

KEEP_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHIN_RULES = ("within", "within-hourly", "within-daily", "within-weekly", "within-monthly", "within-yearly")


def keep_options(f):
    for rule in reversed(WITHIN_RULES):
        f = click.option(f"--keep-{rule}", metavar="DUR", help=f"Keep {rule.replace('-', ' ')} DUR (e.g. 2w, 1y2m).")(f)
    for rule in reversed(KEEP_RULES):
        what = "latest" if rule == "last" else rule
        f = click.option(f"--keep-{rule}", metavar="N", help=f"Keep the N {what} snapshots (or 'unlimited').")(f)
    return f


@click.command()
@keep_options
@click.option("--timezone", "tz_name", metavar="ZONE", help="Zone for hour/day/week buckets (default: local).")
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be kept and removed; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@remote_opt
@json_opt
@click.pass_obj
def prune(
    obj: Obj, tz_name: str | None, dry_run: bool, yes: bool, remote: str | None, as_json: bool, **keep: str | None
) -> None:
    """Remove old snapshots by retention policy, separately for each database; pinned ones are kept.

    The policy comes from the --keep-* flags (which replace the configured one for this run), else
    DBSNAP_KEEP_* variables, else [tool.dbsnap.retention] in pyproject.toml.

    \b
    Example:
      dbsnap prune --keep-last 5 --keep-daily 7 --keep-weekly 4 --dry-run
      dbsnap prune --yes           # the configured policy, from cron
      dbsnap prune --remote --keep-daily 30 --yes   # the same rules on the remote's snapshots
    """
    flags = {k.replace("keep_", "keep-").replace("_", "-"): v for k, v in keep.items()}

    def confirm(plan) -> bool:
        if not as_json:
            click.echo(render.prune_plan_text(plan), err=True)
        return confirm_or_refuse(yes, f"Delete {len(plan.removals)} snapshot(s)?")

    if remote is not None:
        plan, deleted = api.prune_remote(
            obj.ctx("prune", as_json=as_json),
            flags,
            remote=remote or None,
            tz_name=tz_name,
            dry_run=dry_run,
            confirm=confirm,
        )
    else:
        plan, deleted = api.prune(
            obj.ctx("prune", as_json=as_json), flags, tz_name=tz_name, dry_run=dry_run, confirm=confirm
        )
    if as_json:
        out(render.prune_json(plan, deleted, dry_run), True)
    else:
        out(render.prune_text(plan, deleted, dry_run), False)


@click.command()
@click.option("--cron", "kind", flag_value="cron", default=True, help="Print a crontab line (default).")
@click.option("--systemd", "kind", flag_value="systemd", help="Print a systemd service and timer.")
@click.option("--at", default="03:17", show_default=True, metavar="HH:MM", help="Time of day to run.")
@click.pass_obj
def schedule(obj: Obj, kind: str, at: str) -> None:
    """Print a cron line or systemd units that run 'dbsnap save --prune' daily for this project.

    \b
    Example:
      dbsnap schedule --cron | crontab -     # replaces your crontab: append instead if you have one
      dbsnap schedule --systemd --at 02:30
    """
    files, warnings = api.schedule(obj.ctx("schedule"), kind, at)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    if kind == "cron":
        click.echo(files["crontab"])
        return
    for fname, text in files.items():
        click.echo(f"# /etc/systemd/system/{fname}\n{text}")
    click.echo("# then: systemctl daemon-reload && systemctl enable --now " + fname)


@click.command()
@click.pass_obj
def unlock(obj: Obj) -> None:
    """Remove a store lock left behind by a process that no longer runs.

    \b
    Example:
      dbsnap unlock
    """
    owner = api.unlock(obj.ctx("unlock"))
    click.echo("no lock" if owner is None else "removed the lock")
