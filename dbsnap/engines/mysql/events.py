"""Events created disabled in dbsnap's own schemas: a dump restored into a scratch schema (a swap's, ``verify
--deep``'s, an import's) must not start the server's event scheduler on it.

``mysqldump --events`` writes each event as the statement ``SHOW CREATE EVENT`` gives, on one line up to its body:
``/*!50106 EVENT `name` ON SCHEDULE ... ON COMPLETION [NOT] PRESERVE ENABLE DO ...``. :class:`DisabledEvents`
passes a dump's chunks on with every ``ENABLE`` there turned into ``DISABLE`` and remembers those events' names;
the swap then installs them in the live schema from the statement read back from the scratch schema with the
status put back (:func:`enabled_again`: not ``ALTER EVENT ... ENABLE``, which would make the role running dbsnap
the event's definer).

Only a line that starts with the event's ``/*!50106 CREATE*/`` is touched: a dump never has a line break inside
a value, so no row can look like one. Events come after every table's data, so the stream is only searched (at the
speed of ``bytes.find``) until the first one; from there on it is handled line by line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

MARK = b"\n/*!50106 CREATE*/ "
_STATUS = re.compile(
    rb"^(/\*!50106 CREATE\*/ (?:/\*!50117 DEFINER=[^\n]*?\*/ )?/\*!50106 EVENT `((?:[^`]|``)+)` ON SCHEDULE "
    rb"[^\n]*? ON COMPLETION (?:NOT )?PRESERVE )ENABLE(?=[\s*])",
    re.M,
)


class DisabledEvents:
    """A filter of dump chunks; ``enabled`` lists the events it disabled (their names, as the server knows them)."""

    def __init__(self) -> None:
        self.enabled: list[str] = []

    def chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        it = iter(chunks)
        keep = b""  # the end of the last chunk, in case the mark is cut in two
        for chunk in it:
            data = keep + chunk if keep else chunk
            at = data.find(MARK)
            if at < 0:
                cut = max(0, len(data) - len(MARK) + 1)
                keep = data[cut:]
                if cut:
                    yield data[:cut]
                continue
            yield data[: at + 1]
            yield from self._lines(data[at + 1 :], it)
            return
        if keep:
            yield keep

    def _lines(self, first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
        """From a line start on: whole lines, each event's status rewritten."""
        tail = first
        for chunk in rest:
            data = tail + chunk
            end = data.rfind(b"\n") + 1
            tail = data[end:]
            if end:
                yield self._rewrite(data[:end])
        if tail:
            yield self._rewrite(tail)

    def _rewrite(self, block: bytes) -> bytes:
        if MARK[1:] not in block:
            return block
        return _STATUS.sub(self._disable, block)

    def _disable(self, m: re.Match[bytes]) -> bytes:
        self.enabled.append(m.group(2).replace(b"``", b"`").decode("utf-8", "replace"))
        return m.group(1) + b"DISABLE"


_SHOWN = re.compile(r"( ON COMPLETION (?:NOT )?PRESERVE )DISABLE(?= )")


def enabled_again(create: str) -> str:
    """``SHOW CREATE EVENT``'s statement of an event this filter disabled, with its status ``ENABLE`` again."""
    return _SHOWN.sub(r"\1ENABLE", create, count=1)
