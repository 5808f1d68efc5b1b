"""One line of the doctor's report, and the guard that turns a check that raises into a failed line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from ...errors import DbsnapError

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    """One line of the report. ``fix`` says what to do when ``status`` is not ``ok``."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def guard(name: str, fn: Callable[..., Check | list[Check]], *args) -> list[Check]:
    """Run one check; an exception becomes a ``fail`` with its message (the hint of a DbsnapError as the fix)."""
    try:
        result = fn(*args)
    except DbsnapError as e:
        return [Check(name, FAIL, e.message, e.hint)]
    except Exception as e:
        text = str(e).strip().splitlines()
        return [Check(name, FAIL, f"{type(e).__name__}: {text[0]}" if text else type(e).__name__)]
    return result if isinstance(result, list) else [result]
