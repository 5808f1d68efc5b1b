"""``dbsnap doctor``: the report of :mod:`dbsnap.pipelines.doctor`, as text or JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..context import Context
from ..errors import ExternalError
from ..report import Reporter
from ..settings import Settings
from .common import Obj, json_opt, out

if TYPE_CHECKING:
    from ..pipelines.doctor import Check


def report_text(checks: list[Check]) -> str:
    """One line per check (``ok``/``warn``/``fail``, name, detail); a ``fix:`` line under each one not ok."""
    from ..pipelines.doctor import FAIL, OK, WARN  # here: the checks load the engines' modules (fixed cost)

    width = max(len(c.name) for c in checks) + 2
    lines = []
    for c in checks:
        lines.append(f"{c.status:<5} {c.name:<{width}}{c.detail}")
        if c.status != OK and c.fix:
            lines.append(f"{'':<6}{'':<{width}}fix: {c.fix}")
    counts = {s: sum(1 for c in checks if c.status == s) for s in (OK, WARN, FAIL)}
    lines.append(f"{len(checks)} checks: {counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail")
    return "\n".join(lines)


@click.command()
@json_opt
@click.pass_obj
def doctor(obj: Obj, as_json: bool) -> None:
    """Check what dbsnap needs: versions, settings, database access and privileges, client tools, the store.

    One line per check: ok, warn or fail, each one not ok with its fix. Changes nothing (no store is
    created, no lock taken). Exits 0 when no check fails (warnings allowed), 5 otherwise.

    \b
    Example:
      dbsnap doctor
      dbsnap doctor --json | jq -r '.checks[] | select(.status != "ok") | .name'
    """
    from ..pipelines.doctor import diagnose, failed

    k = obj.kwargs

    def make_ctx() -> Context:
        # A silent reporter: a settings fallback is a line of the report, not a warning on stderr.
        settings = Settings(
            project=k["project"], store=k["store"], databases=k["database"], lock_timeout=k["lock_timeout"]
        )
        return Context(settings=settings, reporter=Reporter(), command="doctor")

    checks = diagnose(make_ctx)
    bad = failed(checks)
    if as_json:
        out({"ok": not bad, "checks": [c.as_dict() for c in checks]}, True)
    else:
        out(report_text(checks), False)
    if bad:
        raise ExternalError(f"{len(bad)} of {len(checks)} checks failed: {', '.join(c.name for c in bad)}")
