"""The command line: parse, call the api, render. The one place errors become messages and exit codes."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import click

from .. import __version__, api
from ..context import Context
from ..errors import DbsnapError, IntegrityError, Interrupted, UsageError
from ..report import HumanReporter
from ..settings import Settings
from . import render


class Obj:
    """Options given before the command, turned into a Context when the command runs."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def ctx(self, command: str, quiet: bool = False, jobs: str | None = None) -> Context:
        k = self.kwargs
        return Context(
            settings=Settings(
                project=k["project"],
                store=k["store"],
                databases=k["database"],
                lock_timeout=k["lock_timeout"],
                jobs=jobs,
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
@click.option("--verify", is_flag=True, help="Check the new snapshot (checksums, complete streams) before committing.")
@click.option(
    "--clone/--no-clone",
    default=None,
    help="Also keep a server-side copy (PostgreSQL) for a fast rollback (default: the clone setting).",
)
@click.option(
    "--prune/--no-prune",
    default=None,
    help="Apply the configured retention policy after saving (default: the auto-prune setting).",
)
@json_opt
@click.pass_obj
def save(
    obj: Obj,
    name: str | None,
    note: str | None,
    pin: bool,
    force: bool,
    verify: bool,
    clone: bool | None,
    prune: bool | None,
    as_json: bool,
) -> None:
    """Snapshot the database(s) and the migration folders as NAME (default snap-YYYYmmdd-HHMMSS).

    \b
    Example:
      dbsnap save pre-reset --note "before squashing migrations"
      dbsnap save --prune          # from cron: save, then apply the retention policy
      dbsnap save before-migrate --clone   # PostgreSQL: also a server-side copy, for a fast rollback
    """
    result = api.save(obj.ctx("save"), name, note=note, pin=pin, force=force, prune=prune, verify=verify, clone=clone)
    if result.pruned is not None and not as_json:
        click.echo(render.prune_text(result.pruned, [d.name for d in result.pruned.removals], False), err=True)
    out(render.save_json(result) if as_json else render.save_text(result), as_json)


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
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Verify every snapshot in the store.")
@click.option("--deep", is_flag=True, help="Also restore into a scratch database and compare with the manifest.")
@json_opt
@click.pass_obj
def verify(obj: Obj, names: tuple[str, ...], all_: bool, deep: bool, as_json: bool) -> None:
    """Check snapshots (default: the latest): checksums, manifest, complete zstd streams; --deep restores too.

    Exit 0 when all pass, 6 otherwise (naming the snapshot, the file and what differs).

    \b
    Example:
      dbsnap verify                # the latest snapshot
      dbsnap verify --all --deep   # every snapshot, restored into scratch databases
    """
    if names and all_:
        raise UsageError("give snapshot names or --all, not both")
    results = api.verify(obj.ctx("verify"), list(names), all_=all_, deep=deep)
    if as_json:
        out([r.__dict__ | {"ok": r.ok} for r in results], True)
    else:
        out("\n".join(render.verify_line(r) for r in results), False)
    failed = [r for r in results if not r.ok]
    if failed:
        raise IntegrityError(f"{len(failed)} of {len(results)} snapshot(s) failed verification: {failed[0].problem}")


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
@click.option(
    "--jobs",
    "-j",
    metavar="N|auto",
    default=None,
    help="PostgreSQL: restore with N parallel pg_restore jobs (1: one stream). Default: $DBSNAP_JOBS, "
    "[tool.dbsnap] jobs, or auto (one per CPU, at most 4, for dumps of 64 MiB and more).",
)
@json_opt
@click.pass_obj
def rollback(obj: Obj, name: str, yes: bool, no_safety_snapshot: bool, jobs: str | None, as_json: bool) -> None:
    """Put the database(s) AND the migration folders back to snapshot NAME, together, all or nothing.

    Checksums are verified first; a safety snapshot of the current state is taken; other sessions on the
    database are terminated (after you confirm); if anything fails, nothing changes.

    \b
    Example:
      dbsnap rollback pre-reset
      dbsnap rollback latest --yes
      dbsnap rollback big-one --jobs 4   # PostgreSQL: parallel pg_restore
    """
    ctx = obj.ctx("rollback", jobs=jobs)

    def confirm(plan) -> bool:
        if not (yes and obj.kwargs["quiet"]):  # the plan is what the user confirms: shown unless nobody asks
            click.echo(render.plan_text(plan), err=True)
        if yes:
            return True
        return confirm_or_refuse(False, "Proceed?")

    result = api.rollback(ctx, name, safety=not no_safety_snapshot, confirm=confirm)
    out(result.__dict__ | {"seconds": round(result.seconds, 3)} if as_json else render.rollback_text(result), as_json)


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


def confirm_or_refuse(yes: bool, question: str) -> bool:
    """True with --yes; ask on a terminal; without one, refuse (UsageError) rather than guess."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("refusing to continue without confirmation: no terminal; pass --yes")
    if not click.confirm(question, err=True):
        raise UsageError("cancelled; nothing was changed")
    return True


# More commands live in their own modules (reset/prune/schedule, doctor, status/diff); importing registers them.
from . import compare as cli_compare  # noqa: E402, F401
from . import doctor as cli_doctor  # noqa: E402, F401
from . import maintenance as cli_maintenance  # noqa: E402, F401

for _command in cli.commands.values():
    _command.params.extend(_common_params())


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
