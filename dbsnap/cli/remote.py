"""The remote commands: push and pull (list, delete and prune take --remote in their own modules)."""

from __future__ import annotations

import click

from .. import api
from . import render
from .common import Obj, json_opt, out

# `--remote` alone means the default remote; `--remote NAME` a configured one or an s3:// URL.
remote_opt = click.option(
    "--remote",
    "remote",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[NAME|URL]",
    help="The remote: a name from [tool.dbsnap.remotes] or s3://bucket/prefix (default: $DBSNAP_REMOTE, else "
    "the configured default).",
)


@click.command()
@click.argument("names", nargs=-1, required=True)
@remote_opt
@json_opt
@click.pass_obj
def push(obj: Obj, names: tuple[str, ...], remote: str | None, as_json: bool) -> None:
    """Send snapshots to the remote: verified first, encrypted when a key is set, visible there only when whole.

    The encryption key comes from DBSNAP_ENCRYPTION_KEY or the 0600 file DBSNAP_ENCRYPTION_KEY_FILE; AWS
    credentials from the standard AWS chain (environment, ~/.aws/credentials, profile), never from arguments.

    \b
    Example:
      dbsnap push pre-reset --remote s3://team-backups/shop
      DBSNAP_REMOTE=s3://team-backups/shop dbsnap push pre-reset nightly
    """
    result = api.push(obj.ctx("push", as_json=as_json), list(names), remote=remote or None)
    if as_json:
        out(result.__dict__, True)
    else:
        lines = [f"pushed {n} to {result.remote}" for n in result.pushed]
        lines += [f"{n} is already on {result.remote} (identical); nothing sent" for n in result.already]
        if result.encrypted and result.pushed:
            lines.append(f"encrypted with key {result.encrypted}")
        out("\n".join(lines), False)


@click.command()
@click.argument("names", nargs=-1, required=True)
@remote_opt
@json_opt
@click.pass_obj
def pull(obj: Obj, names: tuple[str, ...], remote: str | None, as_json: bool) -> None:
    """Bring snapshots from the remote into the local store, every checksum (and the seal) checked first.

    Exit 6 when an object on the remote is damaged or the encryption key is wrong or missing; nothing enters
    the store then.

    \b
    Example:
      dbsnap pull pre-reset --remote s3://team-backups/shop
      dbsnap rollback pre-reset
    """
    snaps = api.pull(obj.ctx("pull", as_json=as_json), list(names), remote=remote or None)
    if as_json:
        out([render.snapshot_summary(s) for s in snaps], True)
    else:
        out("\n".join(f"pulled {s.name}" for s in snaps), False)
