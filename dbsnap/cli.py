"""The command line: parse, call the api, render. The one place errors become messages and exit codes."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import click

from . import __version__, api, render
from .context import Context
from .errors import DbsnapError, Interrupted, UsageError
from .report import HumanReporter
from .settings import Settings


class Obj:
    """Options given before the command, turned into a Context when the command runs."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def ctx(self, command: str, quiet: bool = False) -> Context:
        k = self.kwargs
        return Context(
            settings=Settings(
                project=k["project"], store=k["store"], databases=k["database"], lock_timeout=k["lock_timeout"]
            ),
            reporter=HumanReporter(quiet=quiet or k["quiet"]),
            command=command,
        )


def out(data: object, as_json: bool) -> None:
    """Write a result to stdout: one JSON document, or text."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str) if as_json else data)


json_opt = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="dbsnap")
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DBSNAP_PROJECT",
    help="Django project root (folder with manage.py). Default: the current folder or the nearest parent.",
)
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    help="Snapshot store folder. Default: $DBSNAP_DIR, [tool.dbsnap] store, or ./snapshots.",
)
@click.option(
    "--database",
    "-d",
    multiple=True,
    metavar="ALIAS",
    help="Work on this DATABASES alias only (repeatable). Default: every alias.",
)
@click.option(
    "--lock-timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Wait this long for another dbsnap to release the store (default $DBSNAP_LOCK_TIMEOUT or 0).",
)
@click.option("--quiet", "-q", is_flag=True, help="Only print results and errors.")
@click.pass_context
def cli(cctx: click.Context, **kwargs) -> None:
    """Snapshots of a Django project's database paired with its migration folders.

    \b
    Example:
      dbsnap save pre-reset        # database + migration folders -> snapshots/pre-reset/
      dbsnap rollback pre-reset    # both back, together, all or nothing
    """
    cctx.obj = Obj(**kwargs)


@cli.command()
@json_opt
@click.pass_obj
def info(obj: Obj, as_json: bool) -> None:
    """Show what dbsnap found: project, settings, databases, migration folders, store.

    \b
    Example:
      dbsnap info
      dbsnap --project ~/code/shop info --json
    """
    data = api.info(obj.ctx("info"))
    out(data if as_json else render.info_text(data), as_json)


@cli.command()
@click.argument("name", required=False)
@click.option("--note", help="A note stored with the snapshot.")
@click.option("--pin", is_flag=True, help="Pin the snapshot: retention never removes it.")
@click.option("--force", is_flag=True, help="Replace an existing snapshot of the same name (atomically).")
@click.option(
    "--prune/--no-prune",
    default=None,
    help="Apply the configured retention policy after saving (default: the auto-prune setting).",
)
@json_opt
@click.pass_obj
def save(
    obj: Obj, name: str | None, note: str | None, pin: bool, force: bool, prune: bool | None, as_json: bool
) -> None:
    """Snapshot the database(s) and the migration folders as NAME (default snap-YYYYmmdd-HHMMSS).

    \b
    Example:
      dbsnap save pre-reset --note "before squashing migrations"
      dbsnap save --prune          # from cron: save, then apply the retention policy
    """
    result = api.save(obj.ctx("save"), name, note=note, pin=pin, force=force, prune=prune)
    if result.pruned is not None and not as_json:
        click.echo(render.prune_text(result.pruned, [d.name for d in result.pruned.removals], False), err=True)
    out(render.save_json(result) if as_json else render.save_text(result), as_json)


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
    from .schedule import cron_line, systemd_units

    ctx = obj.ctx("schedule")
    root = ctx.project.root
    if kind == "cron":
        click.echo(cron_line(root, ctx.store.root, at))
        return
    for fname, text in systemd_units(root, ctx.store.root, at).items():
        click.echo(f"# /etc/systemd/system/{fname}\n{text}")
    click.echo("# then: systemctl daemon-reload && systemctl enable --now " + fname)


@cli.command(name="list")
@json_opt
@click.pass_obj
def list_(obj: Obj, as_json: bool) -> None:
    """List the snapshots in the store, oldest first.

    \b
    Example:
      dbsnap list
      dbsnap list --json | jq '.[].name'
    """
    snaps = api.list_snapshots(obj.ctx("list"))
    out([render.snapshot_summary(s) for s in snaps] if as_json else render.list_table(snaps), as_json)


@cli.command()
@click.argument("name")
@json_opt
@click.pass_obj
def show(obj: Obj, name: str, as_json: bool) -> None:
    """Show one snapshot's manifest ('latest' = the newest).

    \b
    Example:
      dbsnap show latest
    """
    snap = api.show(obj.ctx("show"), name)
    out(snap.manifest if as_json else render.show_text(snap), as_json)


@cli.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Also delete pinned snapshots.")
@json_opt
@click.pass_obj
def delete(obj: Obj, names: tuple[str, ...], yes: bool, force: bool, as_json: bool) -> None:
    """Delete one or more snapshots.

    \b
    Example:
      dbsnap delete snap-20260101-120000 old-experiment --yes
    """
    ctx = obj.ctx("delete")
    damaged = set(ctx.store.damaged())
    for n in names:
        if n not in damaged or not force:
            ctx.store.get(n)  # unknown (or damaged, without --force) names fail before the question
    confirm_or_refuse(yes, f"Delete {len(names)} snapshot(s): {', '.join(names)}?")
    deleted = api.delete(ctx, list(names), force=force)
    out({"deleted": deleted} if as_json else f"deleted {', '.join(deleted)}", as_json)


@cli.command()
@click.argument("name")
@click.pass_obj
def pin(obj: Obj, name: str) -> None:
    """Pin a snapshot so that pruning never removes it.

    \b
    Example:
      dbsnap pin pre-reset
    """
    snap = api.set_pinned(obj.ctx("pin"), name, True)
    click.echo(f"pinned {snap.name}")


@cli.command()
@click.argument("name")
@click.pass_obj
def unpin(obj: Obj, name: str) -> None:
    """Remove the pin from a snapshot.

    \b
    Example:
      dbsnap unpin pre-reset
    """
    snap = api.set_pinned(obj.ctx("unpin"), name, False)
    click.echo(f"unpinned {snap.name}")


@cli.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--no-safety-snapshot", is_flag=True, help="Skip the snapshot of the current state taken first.")
@json_opt
@click.pass_obj
def rollback(obj: Obj, name: str, yes: bool, no_safety_snapshot: bool, as_json: bool) -> None:
    """Put the database(s) AND the migration folders back to snapshot NAME, together, all or nothing.

    Checksums are verified first; a safety snapshot of the current state is taken; other sessions on the
    database are terminated (after you confirm); if anything fails, nothing changes.

    \b
    Example:
      dbsnap rollback pre-reset
      dbsnap rollback latest --yes
    """
    ctx = obj.ctx("rollback")

    def confirm(plan) -> bool:
        click.echo(render.plan_text(plan), err=True)
        if yes:
            return True
        return confirm_or_refuse(False, "Proceed?")

    result = api.rollback(ctx, name, safety=not no_safety_snapshot, confirm=confirm)
    out(result.__dict__ | {"seconds": round(result.seconds, 3)} if as_json else render.rollback_text(result), as_json)


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
    from .reset import ResetOptions

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
        if not as_json:
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


@cli.command()
@click.pass_obj
def unlock(obj: Obj) -> None:
    """Remove a store lock left behind by a process that no longer runs.

    \b
    Example:
      dbsnap unlock
    """
    owner = api.unlock(obj.ctx("unlock"))
    click.echo("no lock" if owner is None else "removed the lock")


def _override(name: str):
    """Callback for an option given after the command: it wins over the same option given before it."""

    def callback(cctx: click.Context, param: click.Parameter, value):
        if value not in (None, ()):
            cctx.find_object(Obj).kwargs[name] = value
        return value

    return callback


def _common_params() -> list[click.Option]:
    """--project, --store, --database and --lock-timeout are accepted after the command name too."""
    return [
        click.Option(
            ["--project"],
            type=click.Path(file_okay=False, path_type=Path),
            expose_value=False,
            callback=_override("project"),
            help="Django project root (same as before the command).",
        ),
        click.Option(
            ["--store"],
            type=click.Path(file_okay=False, path_type=Path),
            expose_value=False,
            callback=_override("store"),
            help="Snapshot store folder (same as before the command).",
        ),
        click.Option(
            ["--database", "-d"],
            multiple=True,
            metavar="ALIAS",
            expose_value=False,
            callback=_override("database"),
            help="DATABASES alias to work on (repeatable).",
        ),
        click.Option(
            ["--lock-timeout"],
            type=float,
            default=None,
            metavar="SECONDS",
            expose_value=False,
            callback=_override("lock_timeout"),
            help="Seconds to wait for the store lock.",
        ),
    ]


for _command in cli.commands.values():
    _command.params.extend(_common_params())


def confirm_or_refuse(yes: bool, question: str) -> bool:
    """True with --yes; ask on a terminal; without one, refuse (UsageError) rather than guess."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("refusing to continue without confirmation: no terminal; pass --yes")
    if not click.confirm(question, err=True):
        raise UsageError("cancelled; nothing was changed")
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every expected failure into one line on stderr and an exit code."""
    try:
        cli.main(args=argv, prog_name="dbsnap", standalone_mode=False)
        return 0
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        return Interrupted.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except DbsnapError as e:
        click.echo(f"error: {e.message}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted; nothing was left half-done", err=True)
        return Interrupted.exit_code
    except OSError as e:
        if e.errno == errno.ENOSPC:
            click.echo(f"error: no space left on device ({e.filename or 'store'}); nothing was saved", err=True)
        else:
            click.echo(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), err=True)
        if os.environ.get("DBSNAP_DEBUG"):
            raise
        return 1
    except Exception as e:
        # Not an expected failure: still one line (the traceback only with DBSNAP_DEBUG=1).
        if os.environ.get("DBSNAP_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        click.echo(f"error: unexpected {type(e).__name__}: {first} (DBSNAP_DEBUG=1 shows the traceback)", err=True)
        return 1


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
