"""The facts of a mysqldump stream, read from the stream itself while it passes: the rows of every table and the
``django_migrations`` rows. What a restore of the dump holds, exactly, with no second pass over the server.

Why this is exact: the dump tool escapes every value with the client library (backslash escapes; its session's
``sql_mode`` is the empty compatible mode, so never NO_BACKSLASH_ESCAPES), and a newline, a carriage return and a
NUL inside a string are written as ``\\n``, ``\\r``, ``\\0``. So a raw newline never sits inside a value: every
statement of the data part starts at a line start. The two layouts of an extended INSERT are both read:
MariaDB's tool writes ``INSERT INTO `t` VALUES`` then one row per line, the last ending in ``);``; MySQL's writes
one line ``INSERT INTO `t` VALUES (...),(...);`` whose rows are counted by the ``),(`` outside the strings.
Programs (triggers, routines, events) come between ``DELIMITER ;;`` and ``DELIMITER ;`` and are skipped: a
trigger body's own ``INSERT`` is no row of the dump.
"""

from __future__ import annotations

import re

_HEADER = re.compile(
    rb"^(?:(INSERT INTO) `((?:[^`]|``)+)`(?: \((?:[^`\n]|`(?:[^`]|``)*`)*\))? VALUES ?|(CREATE TABLE) `((?:[^`]|``)+)`"
    rb"|(DELIMITER) (\S+)$)",
    re.M,
)
_COLUMN = re.compile(rb"^  `((?:[^`]|``)+)` ", re.M)
_VALUE = re.compile(rb"'((?:[^'\\]|\\.)*)'|(NULL)|([^,()'\s]+)", re.S)
_TUPLE = re.compile(rb"\(((?:'(?:[^'\\]|\\.)*'|[^'()])*)\)", re.S)
_UNESCAPE = {b"0": b"\0", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"Z": b"\x1a"}
MIGRATIONS = "django_migrations"


def _name(raw: bytes) -> str:
    return raw.replace(b"``", b"`").decode("utf-8", "surrogateescape")


def rows_in_line(body: bytes) -> int:
    """Rows of a one-line extended INSERT's values ``(...),(...)``: the ``),(`` outside the strings, plus one.

    Inside a string an escape pair is ``\\x``: removing the pairs ``\\\\`` from each run of backslashes (left to
    right, as the tokens pair them) leaves only the escapes of the next byte, so after removing ``\\'`` every
    quote left delimits a string, and every other piece between quotes is outside one (C-speed bytes methods)."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b"\\'", b"")
    if b"'" in body:
        body = b" ".join(body.split(b"'")[0::2])
    return body.count(b"),(") + 1


def _unquote(raw: bytes) -> str:
    out = re.sub(rb"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), raw, flags=re.S)
    return out.decode("utf-8", "surrogateescape")


class DumpScanner:
    """Fed the dump's bytes in order (:meth:`feed`), then :meth:`tables` and :meth:`migrations` tell its facts."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._tail = b""
        self._rows_of: str | None = None  # the table whose one-row-per-line INSERT is being read
        self._programs = False  # inside DELIMITER ;; ... DELIMITER ;
        self._create: str | None = None  # the table whose CREATE TABLE is being read (for django_migrations)
        self._columns: list[str] = []
        self._migration_values: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        end = chunk.rfind(b"\n") + 1
        if not end:
            self._tail += chunk
            return
        start = 0
        if self._tail:
            # The line cut by the last chunk, completed: read on its own, so the chunk itself is never copied.
            first = chunk.index(b"\n") + 1
            self._lines(self._tail + chunk[:first], len(self._tail) + first)
            start = first
        self._tail = chunk[end:]
        self._lines(chunk, end, start)

    def close(self) -> None:
        """The end of the stream: its last line, if it has no newline."""
        if self._tail:
            data, self._tail = self._tail + b"\n", b""
            self._lines(data, len(data))

    def _lines(self, data: bytes, end: int, pos: int = 0) -> None:
        """Read the complete lines ``data[pos:end]`` (``pos`` a line start, ``end`` just after a newline)."""
        while pos < end:
            if self._rows_of is not None:
                stop = data.find(b");\n", pos, end)  # the last row ends in ");", every other one in "),"
                last = end if stop < 0 else stop + 3
                self.counts[self._rows_of] += data.count(b"\n", pos, last)
                if self._rows_of == MIGRATIONS:
                    self._migration_values.append(data[pos:last])
                if stop >= 0:
                    self._rows_of = None
                pos = last
                continue
            if self._create is not None:
                # The statement's last line starts with ")": the column lines start with two spaces.
                if data.startswith(b")", pos):
                    at = pos
                else:
                    at = data.find(b"\n)", pos, end)
                    at = at + 1 if at >= 0 else -1  # the ")" after the newline
                part = data[pos : end if at < 0 else at]
                if self._create == MIGRATIONS:
                    self._columns += [_name(c) for c in _COLUMN.findall(part)]
                if at >= 0:
                    self._create = None
                pos = end if at < 0 else at
                continue
            m = _HEADER.search(data, pos, end)
            if m is None:
                return
            line_end = data.index(b"\n", m.start()) + 1
            if m.group(5):
                self._programs = m.group(6) != b";"
            elif self._programs:
                pass
            elif m.group(3):
                self._create = _name(m.group(4))
                self.counts.setdefault(self._create, 0)
                if self._create == MIGRATIONS:
                    self._columns = []
            else:
                table = _name(m.group(2))
                self.counts.setdefault(table, 0)
                body = data[m.end() : line_end - 1]
                if body.strip():  # MySQL's layout: the whole statement on this line
                    self.counts[table] += rows_in_line(body.rstrip(b";"))
                    if table == MIGRATIONS:
                        self._migration_values.append(body)
                else:
                    self._rows_of = table
            pos = line_end

    def tables(self) -> dict[str, int]:
        """Rows of every table the dump creates (0 for the empty ones)."""
        return dict(sorted(self.counts.items()))

    def migrations(self) -> list[list[str]]:
        """The ``django_migrations`` rows of the dump as ``[app, name]``, by id."""
        if not self._migration_values or not {"id", "app", "name"} <= set(self._columns):
            return []
        at = {c: i for i, c in enumerate(self._columns)}
        rows = []
        for t in _TUPLE.finditer(b"".join(self._migration_values)):
            values = [
                _unquote(v.group(1)) if v.group(1) is not None else (None if v.group(2) else v.group(3).decode())
                for v in _VALUE.finditer(t.group(1))
            ]
            rows.append((int(values[at["id"]]), values[at["app"]], values[at["name"]]))
        return [[app, name] for _, app, name in sorted(rows)]
