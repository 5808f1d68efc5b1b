"""Plain SQL dumps of MySQL/MariaDB (``mysqldump``/``mariadb-dump`` files, django-dbbackup's among them) as
dbsnap payloads: recognized by their first bytes, and made schema-neutral on the way in.

No driver is imported here: recognizing a file needs none.

A payload is always restored into a schema dbsnap names (the scratch schema of a swap or of ``verify --deep``),
so the statements of ``mysqldump --databases`` that choose a schema themselves (``CREATE DATABASE``, ``USE``) are
left out, and a dump of several schemas or one that sets the server's GTID state is refused: replayed as they are,
they would write outside the scratch schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ...errors import UsageError

HEADS = (
    b"-- MySQL dump ",
    b"-- MariaDB dump ",
    b"/*M!999999\\- enable the sandbox mode */",  # MariaDB 10.5.25+ / 10.11.8+ tools: the first line
    b"/*!40101 SET @OLD_CHARACTER_SET_CLIENT",  # dumped with --skip-comments
)

# Line starts that matter outside programs; the rest of a line is passed as it is.
_WATCH = (b"\nCREATE DATABASE ", b"\nUSE ", b"\nSET @@GLOBAL.GTID_PURGED", b"\nDELIMITER ")
_STARTS = tuple(w[1:] for w in _WATCH)
_CREATE_DB = re.compile(rb"^CREATE DATABASE (?:/\*!32312 IF NOT EXISTS\*/ )?`((?:[^`]|``)+)`")
_USE = re.compile(rb"^USE `((?:[^`]|``)+)`;\s*$")


def recognizes(head: bytes) -> bool:
    """Whether ``head`` (a file's first 64 bytes) starts a mysqldump/mariadb-dump SQL file."""
    return head.startswith(HEADS)


class SchemaNeutral:
    """Passes a plain dump's chunks on without the lines that choose a schema (see the module's text);
    UsageError for a dump of several schemas or one that sets ``@@GLOBAL.GTID_PURGED``."""

    def __init__(self, name: str) -> None:
        self.name = name  # the file, for the messages
        self.schema: bytes | None = None
        self.programs = False
        self.dropped = 0

    def chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        tail = b""  # the last line so far, not ended yet
        for chunk in chunks:
            data = tail + chunk if tail else chunk
            end = data.rfind(b"\n") + 1
            tail = data[end:]
            if end:
                yield self._filter(data[:end])
        if tail:
            yield self._filter(tail)

    def _filter(self, block: bytes) -> bytes:
        """``block`` starts at a line start and holds whole lines: the same without the dropped ones."""
        if not self.programs and not block.startswith(_STARTS) and not any(w in block for w in _WATCH):
            return block  # the common case, at the speed of ``in``
        return b"\n".join(line for line in block.split(b"\n") if self._keep(line))

    def _keep(self, line: bytes) -> bool:
        if line.startswith(b"DELIMITER "):
            self.programs = line.strip() != b"DELIMITER ;"
            return True
        if self.programs:
            return True
        m = _CREATE_DB.match(line) or _USE.match(line)
        if m:
            if self.schema is not None and m.group(1) != self.schema:
                raise UsageError(
                    f"{self.name} holds several databases ({self._show(self.schema)}, {self._show(m.group(1))})",
                    hint="import a dump of one database (mysqldump DBNAME, without --all-databases)",
                )
            self.schema = m.group(1)
            self.dropped += 1
            return False
        if line.startswith(b"SET @@GLOBAL.GTID_PURGED"):
            raise UsageError(
                f"{self.name} sets the server's GTID state (SET @@GLOBAL.GTID_PURGED)",
                hint="dump again with --set-gtid-purged=OFF",
            )
        return True

    @staticmethod
    def _show(raw: bytes) -> str:
        return raw.replace(b"``", b"`").decode("utf-8", "replace")
