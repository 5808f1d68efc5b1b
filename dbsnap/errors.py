"""One error hierarchy; each class carries the exit code the CLI uses.

The CLI is the only place that turns these into a message and an exit code; the library raises them and never
prints. Every message is one line that names what went wrong; ``hint`` says what to do about it.
"""

from __future__ import annotations

import errno


def os_error_text(e: OSError) -> str:
    """An OSError in words: ``no space left on device (path)`` for a full disk or quota, else its strerror."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device ({e.filename or 'the store'})"
    return f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")


class DbsnapError(Exception):
    """Base class: an expected failure with a one-line message and an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def failure_line(exc: BaseException) -> str:
    """A failure in one line: a DbsnapError's message, an OSError in words (:func:`os_error_text`), anything
    else with its type."""
    if isinstance(exc, DbsnapError):
        return exc.message
    if isinstance(exc, OSError):
        return os_error_text(exc)
    return f"{type(exc).__name__}: {exc}"


class UsageError(DbsnapError):
    """Bad arguments: invalid name, missing confirmation, conflicting flags."""

    exit_code = 2


class SnapshotNotFound(DbsnapError):
    """The named snapshot does not exist in the store."""

    exit_code = 3


class ConfigError(DbsnapError):
    """The project, its settings or the dbsnap configuration cannot be used."""

    exit_code = 4


class ExternalError(DbsnapError):
    """An external tool failed, is missing or too old, or the database cannot be reached."""

    exit_code = 5


class IntegrityError(DbsnapError):
    """A snapshot is damaged or a verification found a difference."""

    exit_code = 6


class ResetError(DbsnapError):
    """A reset step failed; the message names the step and the safety snapshot."""

    exit_code = 7


class SchemaDrift(ResetError):
    """``reset --keep-data`` refused: the fresh migrations do not describe the schema the database has. Nothing
    was changed. ``differences``: per database alias, the :class:`dbsnap.schema.Difference` list (exit 7)."""

    exit_code = 7

    def __init__(self, message: str, differences: dict[str, list], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.differences = differences


class RollbackError(DbsnapError):
    """A rollback could not complete; the message describes the state left behind."""

    exit_code = 8


class StoreLocked(DbsnapError):
    """Another dbsnap process holds the store lock."""

    exit_code = 11


class Interrupted(DbsnapError):
    """Ctrl-C, SIGTERM or SIGHUP arrived; whatever was half-done has been undone. Exit 128 + the signal number:
    130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP)."""

    exit_code = 130

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 130) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code
