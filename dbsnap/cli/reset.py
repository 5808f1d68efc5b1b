"""``dbsnap reset``: the plan, the typed confirmation, step-by-step progress and the result of a reset."""

from __future__ import annotations

import sys

import click

from .. import api
from ..errors import SchemaDrift, UsageError
from . import render
from .common import Obj, json_opt, out


@click.command()
@click.option("--dry-run", "-n", is_flag=True, help="Show the plan only; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask to type the database name (for scripts and CI).")
@click.option("--app", "apps", multiple=True, metavar="LABEL", help="Reset only this app's migrations (repeatable).")
@click.option("--snapshot-name", metavar="NAME", help="Name of the safety snapshot (default pre-reset-<time>).")
@click.option("--allow-production", is_flag=True, help="Allow DEBUG=False settings or a database on another host.")
@click.option("--no-auto-rollback", is_flag=True, help="On failure, leave the state as it is instead of rolling back.")
@click.option("--superuser", is_flag=True, help="Run createsuperuser --noinput (DJANGO_SUPERUSER_*) after migrate.")
@click.option("--load", "fixtures", multiple=True, metavar="FIXTURE", help="Run loaddata FIXTURE after migrate.")
@click.option(
    "--keep-data",
    is_flag=True,
    help="Keep every row: regenerate, prove the new migrations build the schema the database has, then replace "
    "the apps' django_migrations rows (fake-apply). Refused, nothing changed, exit 7, when the schemas differ.",
)
@click.option(
    "--carry-sql",
    is_flag=True,
    help="With --keep-data: write the functions, views and triggers no migration regenerates into a generated "
    "RunSQL migration after the fresh ones (the comparison then includes them).",
)
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
      dbsnap reset --keep-data --carry-sql   # fresh initial migrations, every row kept
    """
    if options["carry_sql"] and not options["keep_data"]:
        raise UsageError("--carry-sql works with --keep-data only")
    # Imported here, not at the top: every command loads this module, only reset needs the pipelines.
    from ..pipelines import keep_data
    from ..pipelines.reset import FAILED, STEPS, ResetOptions

    opts = ResetOptions(
        apps=options["apps"],
        snapshot_name=options["snapshot_name"],
        allow_production=options["allow_production"],
        auto_rollback=not options["no_auto_rollback"],
        superuser=options["superuser"],
        fixtures=options["fixtures"],
        keep_data=options["keep_data"],
        carry_sql=options["carry_sql"],
    )
    steps = keep_data.STEPS if opts.keep_data else STEPS
    ctx = obj.ctx("reset", as_json=as_json)
    quiet = obj.kwargs["quiet"] or as_json
    pending = {"open": False}

    def on_step(i: int, name: str, secs: float | None) -> None:
        if quiet:
            return
        if secs is None:
            click.echo(f"[{i}/{len(steps)}] {name} ... ", nl=False, err=True)
            pending["open"] = True
        elif secs == FAILED:
            # Closed here, before the automatic rollback says what it does on lines of its own.
            if pending["open"]:
                click.echo("failed", err=True)
            pending["open"] = False
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
        typed = click.prompt(
            f"Type the database name ({plan.confirm_word}) to continue", default="", show_default=False, err=True
        )
        if typed.strip() != plan.confirm_word:
            raise UsageError("reset cancelled (the name did not match); nothing was changed")
        return True

    try:
        plan, result = api.reset(ctx, opts, dry_run=dry_run, confirm=confirm, on_step=on_step)
    except SchemaDrift as e:
        if pending["open"]:
            click.echo("failed", err=True)
        # The refusal's report: every difference as a table (stderr, with the error), and with --json one
        # document on stdout for scripts.
        click.echo(render.drift_text(e), err=True)
        if as_json:
            out(render.drift_json(e), True)
        raise
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
    if opts.keep_data:
        out(render.keep_data_json(plan, result) if as_json else render.keep_data_text(result), as_json)
        return
    out(render.reset_json(plan, result) if as_json else render.reset_text(result), as_json)
