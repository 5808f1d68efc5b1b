"""The snapshot commands: info, save, list, show, verify, delete, pin, unpin."""

from __future__ import annotations

import click

from .. import api
from ..errors import IntegrityError, UsageError
from . import render
from .common import Obj, confirm_or_refuse, json_opt, out
from .remote import remote_opt


@click.command()
@json_opt
@click.pass_obj
def info(obj: Obj, as_json: bool) -> None:
    """Show what dbsnap found: project, settings, databases, migration folders, store.

    \b
    Example:
      dbsnap info
      dbsnap --project ~/code/shop info --json
    """
    data = api.info(obj.ctx("info", as_json=as_json))
    out(data if as_json else render.info_text(data), as_json)


@click.command()
@click.argument("name", required=False)
@click.option("--note", help="A note stored with the snapshot.")
@click.option("--pin", is_flag=True, help="Pin the snapshot: retention never removes it.")
@click.option("--force", is_flag=True, help="Replace an existing snapshot of the same name (atomically).")
@click.option("--verify", is_flag=True, help="Check the new snapshot (checksums, complete streams) before committing.")
@click.option(
    "--clone/--no-clone",
    default=None,
    help="Also keep a copy for a fast rollback: a server-side clone (PostgreSQL), the uncompressed file in the "
    "snapshot (SQLite) (default: the clone setting).",
)
@click.option(
    "--prune/--no-prune",
    default=None,
    help="Apply the configured retention policy after saving (default: the auto-prune setting).",
)
@click.option(
    "--from",
    "source",
    metavar="NAME",
    help="Write the dump of clone-only snapshot NAME from its clone (it becomes a normal snapshot).",
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
    source: str | None,
    as_json: bool,
) -> None:
    """Snapshot the database(s) and the migration folders as NAME (default snap-YYYYmmdd-HHMMSS).

    \b
    Example:
      dbsnap save pre-reset --note "before squashing migrations"
      dbsnap save --prune          # from cron: save, then apply the retention policy
      dbsnap save before-migrate --clone   # also a copy that rollback copies (or renames) into place
      dbsnap save --from pre-rollback-20261207-101500   # the dump of a clone-only safety snapshot
    """
    if source is not None:
        if name is not None or note or pin or force or clone or prune:
            raise UsageError("save --from NAME takes no other snapshot name or option (it keeps NAME's)")
        result = api.materialize(obj.ctx("save", as_json=as_json), source)
        out(render.save_json(result) if as_json else render.save_text(result), as_json)
        return
    result = api.save(
        obj.ctx("save", as_json=as_json), name, note=note, pin=pin, force=force, prune=prune, verify=verify, clone=clone
    )
    if result.pruned is not None and not as_json:
        click.echo(render.prune_text(result.pruned, [d.name for d in result.pruned.removals], False), err=True)
    out(render.save_json(result) if as_json else render.save_text(result), as_json)


@click.command(name="list")
@remote_opt
@json_opt
@click.pass_obj
def list_(obj: Obj, remote: str | None, as_json: bool) -> None:
    """List the snapshots in the store (or on the remote, with --remote), oldest first.

    \b
    Example:
      dbsnap list
      dbsnap list --json | jq '.[].name'
      dbsnap list --remote         # the default remote's snapshots
    """
    if remote is not None:
        _, snaps = api.list_remote(obj.ctx("list", as_json=as_json), remote=remote or None)
        rows = [render.snapshot_summary(s) | {"encrypted_with": (s.encryption or {}).get("key_id")} for s in snaps]
        out(rows if as_json else render.list_table(snaps), as_json)
        return
    snaps = api.list_snapshots(obj.ctx("list", as_json=as_json))
    out([render.snapshot_summary(s) for s in snaps] if as_json else render.list_table(snaps), as_json)


@click.command()
@click.argument("name")
@json_opt
@click.pass_obj
def show(obj: Obj, name: str, as_json: bool) -> None:
    """Show one snapshot's manifest ('latest' = the newest).

    \b
    Example:
      dbsnap show latest
    """
    snap = api.show(obj.ctx("show", as_json=as_json), name)
    out(snap.manifest if as_json else render.show_text(snap), as_json)


@click.command()
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
    results = api.verify(obj.ctx("verify", as_json=as_json), list(names), all_=all_, deep=deep)
    if as_json:
        out([r.__dict__ | {"ok": r.ok} for r in results], True)
    else:
        out("\n".join(render.verify_line(r) for r in results), False)
    failed = [r for r in results if not r.ok]
    if failed:
        raise IntegrityError(f"{len(failed)} of {len(results)} snapshot(s) failed verification: {failed[0].problem}")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Also delete pinned snapshots.")
@remote_opt
@json_opt
@click.pass_obj
def delete(obj: Obj, names: tuple[str, ...], yes: bool, force: bool, remote: str | None, as_json: bool) -> None:
    """Delete one or more snapshots (from the remote, with --remote; give the names first).

    \b
    Example:
      dbsnap delete snap-20260101-120000 old-experiment --yes
      dbsnap delete old-experiment --remote --yes
    """
    ctx = obj.ctx("delete", as_json=as_json)
    if remote is not None:
        confirm_or_refuse(yes, f"Delete {len(names)} snapshot(s) from the remote: {', '.join(names)}?")
        deleted = api.delete_remote(ctx, list(names), remote=remote or None, force=force)
        out({"deleted": deleted} if as_json else f"deleted {', '.join(deleted)} from the remote", as_json)
        return
    damaged = set(ctx.store.damaged())
    for n in names:
        if n not in damaged or not force:
            ctx.store.get(n)  # unknown (or damaged, without --force) names fail before the question
    confirm_or_refuse(yes, f"Delete {len(names)} snapshot(s): {', '.join(names)}?")
    deleted = api.delete(ctx, list(names), force=force)
    out({"deleted": deleted} if as_json else f"deleted {', '.join(deleted)}", as_json)


@click.command()
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


@click.command()
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
