"""``dbsnap rollback``: the plan, the confirmation and the result of a rollback."""

from __future__ import annotations

import click

from .. import api
from . import render
from .common import Obj, confirm_or_refuse, json_opt, out


@click.command()
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
@click.option(
    "--allow-unsealed",
    is_flag=True,
    help="With a seal key configured: also restore a snapshot not sealed by that key (you trust its source).",
)
@click.option(
    "--other-project",
    is_flag=True,
    help="Restore a snapshot taken of another project root, settings module or database name.",
)
@click.option(
    "--consume-clone",
    is_flag=True,
    help="Rename the snapshot's clone into place (no copy: constant time), then make it again from the restored "
    "database (a copy, after the rollback is done).",
)
@json_opt
@click.pass_obj
def rollback(
    obj: Obj,
    name: str,
    yes: bool,
    no_safety_snapshot: bool,
    jobs: str | None,
    allow_unsealed: bool,
    other_project: bool,
    consume_clone: bool,
    as_json: bool,
) -> None:
    """Put the database(s) AND the migration folders back to snapshot NAME, together, all or nothing.

    Checksums are verified first; a safety snapshot of the current state is taken (PostgreSQL, SQLite: the
    replaced database itself, kept by rename, not dumped); other sessions on the database are terminated (after
    you confirm); if anything fails, nothing changes.

    \b
    Example:
      dbsnap rollback pre-reset
      dbsnap rollback latest --yes
      dbsnap rollback big-one --jobs 4   # PostgreSQL: parallel pg_restore
      dbsnap rollback fast --consume-clone   # rename its clone into place, then re-arm it
    """
    ctx = obj.ctx("rollback", jobs=jobs, as_json=as_json)

    def confirm(plan) -> bool:
        if not (yes and obj.kwargs["quiet"]):  # the plan is what the user confirms: shown unless nobody asks
            click.echo(render.plan_text(plan), err=True)
        if yes:
            return True
        return confirm_or_refuse(False, "Proceed?")

    result = api.rollback(
        ctx,
        name,
        safety=not no_safety_snapshot,
        confirm=confirm,
        allow_unsealed=allow_unsealed,
        other_project=other_project,
        consume=consume_clone,
    )
    out(result.__dict__ | {"seconds": round(result.seconds, 3)} if as_json else render.rollback_text(result), as_json)
