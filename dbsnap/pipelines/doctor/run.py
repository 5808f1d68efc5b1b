"""Every check of ``dbsnap doctor``, in report order."""

from __future__ import annotations

from collections.abc import Callable

from ...context import Context
from ...errors import DbsnapError
from ...project.discovery import Project
from .check import FAIL, Check, guard
from .databases import check_databases
from .project import check_dbsnap, check_django, check_migrations, check_project, check_python, check_settings
from .remote import check_remote
from .store import check_branch_states, check_journal, check_lock, check_safety, check_space, check_store


def run_checks(ctx: Context) -> list[Check]:
    """Every check, in report order. Changes nothing (see the package docstring)."""
    checks = guard("python", check_python) + guard("dbsnap", check_dbsnap)
    project = None
    project_checks = guard("project", check_project, ctx)
    checks += project_checks
    if project_checks[0].status != FAIL:
        holder: list[Project] = []
        checks += guard("settings", check_settings, ctx, holder)
        if holder:
            project = holder[0]
            checks += guard("django", check_django, project)
            checks += guard("migrations", check_migrations, project)
    if project is not None:
        checks += guard("databases", check_databases, ctx, project)
    store = ctx.store.root
    checks += guard("store", check_store, store)
    checks += guard("disk space", check_space, ctx)
    if project is not None:
        checks += guard("safety snapshots", check_safety, ctx)
    checks += guard("lock", check_lock, store)
    checks += guard("journal", check_journal, ctx)
    checks += guard("branch states", check_branch_states, ctx)
    checks += guard("remote", check_remote, ctx)
    return checks


def diagnose(make_ctx: Callable[[], Context]) -> list[Check]:
    """``run_checks`` on the context ``make_ctx`` builds; when it cannot be built, say why as a failed check."""
    try:
        ctx = make_ctx()
    except DbsnapError as e:
        return (
            guard("python", check_python)
            + guard("dbsnap", check_dbsnap)
            + [Check("configuration", FAIL, e.message, e.hint or "fix the configuration named above")]
        )
    return run_checks(ctx)


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == FAIL]
