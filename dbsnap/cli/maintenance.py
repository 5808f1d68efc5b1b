"""The maintenance commands: reset, prune and schedule (registered on the ``dbsnap`` group in cli.py)."""

from __future__ import annotations

import sys

import click

from .. import api
from ..errors import UsageError
from . import render
from .main import Obj, cli, confirm_or_refuse, json_opt, out

KEEP_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHIN_RULES = ("within", "within-hourly", "within-daily", "within-weekly", "within-monthly", "within-yearly")


def keep_options(f):
    for rule in reversed(WITHIN_RULES):
        f = click.option(f"--keep-{rule}", metavar="DUR", help=f"Keep {rule.replace('-', ' ')} DUR (e.g. 2w, 1y2m).")(f)
    for rule in reversed(KEEP_RULES):
        what = "latest" if rule == "last" else rule
        f = click.option(f"--keep-{rule}", metavar="N", help=f"Keep the N {what} snapshots (or 'unlimited').")(f)
    return f


@cli.command()
@keep_options
@click.option("--timezone", "tz_name", metavar="ZONE", help="Zone for hour/day/week buckets (default: local).")
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be kept and removed; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@json_opt
@click.pass_obj
def prune(obj: Obj, tz_name: str | None, dry_run: bool, yes: bool, as_json: bool, **keep: str | None) -> None:
    """Remove old snapshots by retention policy, separately for each database; pinned ones are kept.

    The policy comes from the --keep-* flags (which replace the configured one for this run), else
    DBSNAP_KEEP_* variables, else [tool.dbsnap.retention] in pyproject.toml.

    \b
    Example:
      dbsnap prune --keep-last 5 --keep-daily 7 --keep-weekly 4 --dry-run
      dbsnap prune --yes           # the configured policy, from cron
    """
    flags = {k.replace("keep_", "keep-").replace("_", "-"): v for k, v in keep.items()}

    def confirm(plan) -> bool:
        if not as_json:
            click.echo(render.prune_text(plan, [], True), err=True)
        return confirm_or_refuse(yes, f"Delete {len(plan.removals)} snapshot(s)?")

    plan, deleted = api.prune(obj.ctx("prune"), flags, tz_name=tz_name, dry_run=dry_run, confirm=confirm)
    if as_json:
        out(render.prune_json(plan, deleted, dry_run), True)
    else:
        out(render.prune_text(plan, deleted, dry_run), False)


@cli.command()
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
    from ..schedule import cron_line, systemd_units

    ctx = obj.ctx("schedule")
    root = ctx.project.root
    if kind == "cron":
        click.echo(cron_line(root, ctx.store.root, at))
        return
    for fname, text in systemd_units(root, ctx.store.root, at).items():
        click.echo(f"# /etc/systemd/system/{fname}\n{text}")
    click.echo("# then: systemctl daemon-reload && systemctl enable --now " + fname)


@cli.command()
@click.option("--dry-run", "-n", is_flag=True, help="Show the plan only; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask to type the database name (for scripts and CI).")
@click.option("--app", "apps", multiple=True, metavar="LABEL", help="Reset only this app's migrations (repeatable).")
@click.option("--snapshot-name", metavar="NAME", help="Name of the safety snapshot (default pre-reset-<time>).")
@click.option("--allow-production", is_flag=True, help="Allow DEBUG=False settings or a database on another host.")
@click.option("--no-auto-rollback", is_flag=True, help="On failure, leave the state as it is instead of rolling back.")
@click.option("--superuser", is_flag=True, help="Run createsuperuser --noinput (DJANGO_SUPERUSER_*) after migrate.")
@click.option("--load", "fixtures", multiple=True, metavar="FIXTURE", help="Run loaddata FIXTURE after migrate.")
@json_opt
@click.pass_obj
def reset(obj: Obj, dry_run: bool, yes: bool, as_json: bool, **options) -> None:
    """Snapshot, drop every object, regenerate the migrations, migrate, verify; roll back by itself on failure.

    The plan lists the databases, the apps whose migrations are regenerated, and every operation makemigrations
    cannot regenerate (RunPython, RunSQL, extensions, custom operations): those are lost by a reset.

    \b
    Example:
      dbsnap reset --dry-run       # the plan only
      dbsnap reset                 # asks you to type the database name
      dbsnap reset --yes --app catalog --load initial_data
    """
    from ..pipelines.reset import ResetOptions

    opts = ResetOptions(
        apps=options["apps"],
        snapshot_name=options["snapshot_name"],
        allow_production=options["allow_production"],
        auto_rollback=not options["no_auto_rollback"],
        superuser=options["superuser"],
        fixtures=options["fixtures"],
    )
    ctx = obj.ctx("reset")
    quiet = obj.kwargs["quiet"] or as_json
    pending = {"open": False}

    def on_step(i: int, name: str, secs: float | None) -> None:
        if quiet:
            return
        if secs is None:
            click.echo(f"[{i}/7] {name} ... ", nl=False, err=True)
            pending["open"] = True
        else:
            click.echo(f"done ({secs:.1f} s)", err=True)
            pending["open"] = False

    def confirm(plan) -> bool:
        if not as_json and not (yes and quiet):
            click.echo(render.reset_plan_text(plan), err=True)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError("refusing to reset without confirmation: no terminal; pass --yes")
        typed = click.prompt(f"Type the database name ({plan.confirm_word}) to continue", default="", err=True)
        if typed.strip() != plan.confirm_word:
            raise UsageError("reset cancelled (the name did not match); nothing was changed")
        return True

    try:
        plan, result = api.reset(ctx, opts, dry_run=dry_run, confirm=confirm, on_step=on_step)
    except BaseException:
        if pending["open"]:
            click.echo("failed", err=True)
        raise
    if dry_run:
        if as_json:
            out(render.reset_plan_json(plan), True)
        else:
            click.echo(render.reset_plan_text(plan))
            click.echo("dry run: nothing was changed")
        return
    out(render.reset_json(plan, result) if as_json else render.reset_text(result), as_json)
