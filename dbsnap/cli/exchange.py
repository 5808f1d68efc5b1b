"""export and import: a snapshot as a plain dump, and a plain dump as a snapshot."""

from __future__ import annotations

from pathlib import Path

import click

from .. import api
from . import render
from .common import Obj, json_opt, out


@click.command()
@click.argument("name")
@click.option("--to", "dest", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The file to write.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@json_opt
@click.pass_obj
def export(obj: Obj, name: str, dest: Path, force: bool, as_json: bool) -> None:
    """Write snapshot NAME's database as a plain dump: pg_restore's custom format, the SQLite file, or MySQL's SQL.

    With several databases in the snapshot, choose one with --database.

    \b
    Example:
      dbsnap export pre-reset --to pre-reset.dump && pg_restore -d shop_copy pre-reset.dump
      dbsnap export pre-reset --to pre-reset.sqlite3      # SQLite: the database file itself
      dbsnap export pre-reset --to pre-reset.sql          # MySQL: mysql shop_copy < pre-reset.sql
    """
    result = api.export(obj.ctx("export", as_json=as_json), name, dest, force=force)
    out(result if as_json else f"wrote {result['file']}: {result['format']}", as_json)


@click.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("name")
@click.option("--note", help="A note stored with the snapshot (default: the file it was imported from).")
@json_opt
@click.pass_obj
def import_(obj: Obj, file: Path, name: str, note: str | None, as_json: bool) -> None:
    """Take a plain dump FILE as snapshot NAME: pg_dump -Fc, an SQLite file or a mysqldump SQL file, gzipped or
    not (django-dbbackup's backups).

    The dump is restored once into a scratch database first; the snapshot holds no migration folders, so a
    rollback to it restores the database only.

    \b
    Example:
      dbsnap import backups/default-2026-01-01.psql.bin nightly-from-dbbackup
      pg_dump -Fc shop > shop.dump && dbsnap import shop.dump before-upgrade
      mysqldump --single-transaction --routines --triggers shop > shop.sql && dbsnap import shop.sql before-upgrade
    """
    snap = api.import_dump(obj.ctx("import", as_json=as_json), file, name, note=note)
    out(render.snapshot_summary(snap) if as_json else f"imported {file.name} as {snap.name} (database only)", as_json)
