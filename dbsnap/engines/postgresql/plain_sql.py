"""Importing a plain-SQL dump (``pg_dump`` without ``-Fc``; django-dbbackup's default PostgreSQL backup): psql
runs it into a scratch database in one transaction, stopping at the first error, and that database is dumped
as a normal payload (custom format), then dropped, in ``finally``."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from ... import procs
from ...errors import ExternalError, IntegrityError
from ...store.archive import PayloadInfo, read_chunks
from ..base import Progress, first_line, read_tail, stderr_file

# The first line pg_dump writes in plain format (every version since 8.x).
SQL_HEADER = b"--\n-- PostgreSQL database dump\n"


def is_plain_sql(head: bytes) -> bool:
    return head.replace(b"\r\n", b"\n").startswith(SQL_HEADER)


class PlainSQLMixin:
    """``import_sql``: a plain-SQL dump read from a stream, made into this engine's payload."""

    def import_sql(self, src, dest: Path, progress: Progress | None = None) -> PayloadInfo:
        server_major, _ = self.server_version()  # type: ignore[attr-defined]
        psql, _ = self.tool("psql", server_major)  # type: ignore[attr-defined]
        name = f"dbsnap_import_{secrets.token_hex(4)}"
        with self.maintenance() as conn:  # type: ignore[attr-defined]
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
            except psycopg.Error as e:
                raise ExternalError(f"importing a plain-SQL dump needs a scratch database: {first_line(e)}") from e
        try:
            argv = [*psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", name]
            with stderr_file() as err:
                proc = procs.spawn(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=self.tool_env(name),  # type: ignore[attr-defined]
                )
                assert proc.stdin is not None
                try:
                    try:
                        for chunk in read_chunks(src):
                            proc.stdin.write(chunk)
                            if progress:
                                progress(len(chunk))
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass  # psql stopped at an error: its exit code and stderr say which
                    rc = proc.wait()
                except BaseException:
                    procs.kill(proc)
                    raise
                if rc != 0:
                    raise IntegrityError(
                        f"the SQL dump does not load: {read_tail(err) or f'psql exit code {rc}'}",
                        hint="roles the dump names (owners, grants) must exist here; or dump with --no-owner "
                        "--no-privileges",
                    )
            return self.dump(dest, None, dbname=name).payload  # type: ignore[attr-defined]
        finally:
            self._drop(name)  # type: ignore[attr-defined]
