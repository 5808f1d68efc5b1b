"""The git ``post-checkout`` hook that makes the database follow the branch: installed, chained, removed.

The hook is a small shell script in the folder git reads hooks from (``git rev-parse --git-path hooks``: the
repository's ``hooks/``, shared by its worktrees, or ``core.hooksPath``). It runs a hook that was there before
(kept as ``post-checkout.dbsnap-chained`` with ``--chain``, or with ``--force``), then ``dbsnap branch hook``,
which prints one line and never fails: the checkout's exit status is the chained hook's, or 0.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..project import git
from ..store.fsutil import atomic_write

HOOK = "post-checkout"
CHAINED = "post-checkout.dbsnap-chained"
MARK = "# dbsnap-branch-hook 1"


@dataclass
class HookInfo:
    path: Path
    installed: bool  # dbsnap's hook is there
    foreign: bool  # another hook is there instead
    chained: Path | None  # the hook dbsnap's runs first


def hook_text(top: Path, root: Path, python: str, chained: Path | None) -> str:
    rel = os.path.relpath(root, top)
    lines = [
        "#!/bin/sh",
        MARK,
        "# Installed by 'dbsnap branch install'; 'dbsnap branch uninstall' removes it.",
        "# git post-checkout: $1 the previous HEAD, $2 the new HEAD, $3 1 for a branch checkout, 0 for files.",
        "# The database follows the branch; this never fails a checkout (one line, exit 0 or the chained hook's).",
        "status=0",
    ]
    if chained is not None:
        c = shlex.quote(str(chained))
        lines.append(f'if [ -x {c} ]; then {c} "$@" || status=$?; fi')
    lines += [
        f'{shlex.quote(python)} -m dbsnap --project {shlex.quote(rel)} branch hook "$1" "$2" "$3" </dev/null || true',
        'exit "$status"',
        "",
    ]
    return "\n".join(lines)


def info(root: Path) -> HookInfo:
    folder = git.hooks_dir(root)
    path = folder / HOOK
    text = path.read_text(errors="replace") if path.is_file() else ""
    ours = MARK in text
    chained = folder / CHAINED
    return HookInfo(
        path=path, installed=ours, foreign=path.exists() and not ours, chained=chained if chained.exists() else None
    )


def install(root: Path, *, chain: bool = False, force: bool = False) -> HookInfo:
    """Write the hook (rewriting dbsnap's own). A foreign hook is refused unless ``chain`` (kept, run first) or
    ``force`` (kept aside as the chained hook too: nothing is ever lost, 'uninstall' puts it back)."""
    top = git.toplevel(root)
    now = info(root)
    folder = now.path.parent
    if now.foreign:
        if not (chain or force):
            raise UsageError(
                f"{now.path} exists and is not dbsnap's; nothing was changed",
                hint="--chain keeps it and runs it before dbsnap's hook (--force too, for hooks you mean to replace)",
            )
        if now.chained is not None:
            raise UsageError(f"{now.path} is foreign and {now.chained} exists too; sort them out by hand")
        os.rename(now.path, folder / CHAINED)
    folder.mkdir(parents=True, exist_ok=True)
    chained = folder / CHAINED if (folder / CHAINED).exists() else None
    atomic_write(now.path, hook_text(top, root, sys.executable, chained), mode=0o755)
    return info(root)


def uninstall(root: Path) -> HookInfo:
    """Remove dbsnap's hook and put a chained one back in its place; a foreign hook is never touched."""
    now = info(root)
    if now.foreign:
        raise UsageError(f"{now.path} is not dbsnap's hook; nothing was changed")
    if now.installed:
        if now.chained is not None:
            os.replace(now.chained, now.path)
        else:
            now.path.unlink()
    return info(root)
