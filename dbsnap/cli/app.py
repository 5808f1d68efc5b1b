"""The root ``dbsnap`` group, every command registered on it, and the one place where errors become messages and
exit codes."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import click

from .. import __version__, procs
from ..errors import DbsnapError
from . import branch, compare, doctor, exchange, maintenance, remote, reset, rollback, snapshots
from .common import Obj


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
    _COMMAND["name"] = cctx.invoked_subcommand


# The command being run, for the error boundary's wording.
_COMMAND: dict[str, str | None] = {"name": None}


# Each command module defines plain click commands; they are registered here, so no module imports this one.
COMMANDS = (
    snapshots.info,
    snapshots.save,
    snapshots.list_,
    snapshots.show,
    snapshots.verify,
    snapshots.delete,
    snapshots.pin,
    snapshots.unpin,
    remote.push,
    remote.pull,
    exchange.export,
    exchange.import_,
    rollback.rollback,
    reset.reset,
    maintenance.prune,
    maintenance.schedule,
    maintenance.unlock,
    compare.status,
    compare.diff,
    doctor.doctor,
    branch.branch,
)


def _override(name: str):
    """Callback for an option given after the command: it wins over the same option given before it."""

    def callback(cctx: click.Context, param: click.Parameter, value):
        if value not in (None, ()):
            cctx.find_object(Obj).kwargs[name] = value
        return value

    return callback


def _common_params() -> list[click.Option]:
    """--project, --store, --database, --lock-timeout and --quiet are accepted after the command name too."""
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
        click.Option(
            ["--quiet", "-q"],
            is_flag=True,
            expose_value=False,
            callback=lambda cctx, param, value: _override("quiet")(cctx, param, value or None),
            help="Only print results and errors (same as before the command).",
        ),
    ]


for _command in COMMANDS:
    _command.params.extend(_common_params())
    cli.add_command(_command)


def main(argv: list[str] | None = None, prog_name: str = "dbsnap") -> int:
    """Entry point: run the CLI and turn every expected failure into one line on stderr and an exit code.
    ``prog_name`` is what usage lines call the program (``manage.py dbsnap`` under Django)."""
    procs.install_signal_handlers()
    try:
        return _main(argv, prog_name)
    finally:
        procs.kill_all()  # no child outlives the command, whatever ended it


def _main(argv: list[str] | None, prog_name: str = "dbsnap") -> int:
    try:
        cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
        return 0
    except click.exceptions.Abort as e:
        # click turns a KeyboardInterrupt (our SIGTERM/SIGHUP too) outside any pipeline into Abort.
        cause = e.__cause__ if isinstance(e.__cause__, KeyboardInterrupt) else KeyboardInterrupt()
        click.echo(f"error: interrupted by {procs.signal_name(cause)}", err=True)
        return procs.exit_code(cause)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except DbsnapError as e:
        click.echo(f"error: {e.message}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        return e.exit_code
    except KeyboardInterrupt as e:
        click.echo(f"error: interrupted by {procs.signal_name(e)}; nothing was left half-done", err=True)
        return procs.exit_code(e)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            # Only a save can promise "nothing was saved"; rollback and reset describe their own state.
            what = "; nothing was saved" if _COMMAND.get("name") == "save" else ""
            click.echo(f"error: no space left on device ({e.filename or 'store'}){what}", err=True)
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
