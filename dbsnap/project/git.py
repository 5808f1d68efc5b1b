"""What dbsnap asks git: the branch checked out, the hooks folder, worktrees, and a commit's migration files.

Every call is an argument list with a time bound; git's own ``GIT_*`` variables (which a hook inherits, some of
them relative to the folder git ran in) are dropped, so git finds the repository from the folder it runs in.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from .. import procs
from ..errors import ConfigError, ExternalError

TIMEOUT = 10.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"GIT_TERMINAL_PROMPT": "0"}


def git(cwd: Path, *args: str, check: bool = True, binary: bool = False) -> str | bytes:
    """``git args`` run in ``cwd``; its stdout. ConfigError (not a git repository) or ExternalError otherwise."""
    try:
        proc = procs.run(
            ["git", *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT
        )
    except FileNotFoundError as e:
        raise ExternalError("git not found on PATH") from e
    except subprocess.TimeoutExpired as e:
        raise ExternalError(f"git {args[0]} did not finish within {TIMEOUT:g} s") from e
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        if any("not a git repository" in ln for ln in err):
            raise ConfigError(f"{cwd} is not inside a git repository", hint="run 'git init' or use another folder")
        raise ExternalError(f"git {' '.join(args[:2])} failed: {err[-1] if err else f'exit {proc.returncode}'}")
    return proc.stdout if binary else proc.stdout.decode(errors="replace")


def toplevel(cwd: Path) -> Path:
    """The root of the worktree ``cwd`` is in."""
    return Path(str(git(cwd, "rev-parse", "--show-toplevel")).strip())


def hooks_dir(cwd: Path) -> Path:
    """Where git looks for hooks (``core.hooksPath`` honoured; shared by every worktree), absolute."""
    out = Path(str(git(cwd, "rev-parse", "--git-path", "hooks")).strip())
    return out if out.is_absolute() else (cwd / out).resolve()


def common_dir(cwd: Path) -> Path:
    """The repository's own folder, shared by all its worktrees (``.git`` of the main one)."""
    out = Path(str(git(cwd, "rev-parse", "--git-common-dir")).strip())
    return out if out.is_absolute() else (cwd / out).resolve()


def current_branch(cwd: Path) -> str | None:
    """The branch checked out (``feature/x``), or None on a detached HEAD."""
    out = str(git(cwd, "symbolic-ref", "-q", "--short", "HEAD", check=False)).strip()
    return out or None


def previous_branch(cwd: Path) -> str | None:
    """The branch checked out before the last checkout (``@{-1}``), or None when git does not know one."""
    out = str(git(cwd, "rev-parse", "--abbrev-ref", "@{-1}", check=False)).strip()
    return out if out and out != "HEAD" and not out.startswith("fatal") else None


def branches(cwd: Path) -> set[str]:
    """The repository's local branches."""
    return {ln for ln in str(git(cwd, "for-each-ref", "--format=%(refname:short)", "refs/heads")).splitlines() if ln}


def commit_of(cwd: Path, ref: str) -> str | None:
    out = str(git(cwd, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)).strip()
    return out or None


def worktrees(cwd: Path) -> list[tuple[Path, str | None]]:
    """(root, branch or None) of every worktree of the repository that still exists."""
    out, root, branch = [], None, None
    for ln in [*str(git(cwd, "worktree", "list", "--porcelain")).splitlines(), ""]:
        if ln.startswith("worktree "):
            root, branch = Path(ln[len("worktree ") :]), None
        elif ln.startswith("branch refs/heads/"):
            branch = ln[len("branch refs/heads/") :]
        elif not ln and root is not None:
            if root.is_dir():
                out.append((root, branch))
            root = None
    return out


def blob_id(data: bytes) -> str:
    """The id git gives a file with this content (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def tree_files(top: Path, commit: str, paths: list[str]) -> dict[str, str]:
    """``{path relative to top: blob id}`` of the files under ``paths`` (relative to top) in ``commit``."""
    if not paths:
        return {}
    out = bytes(git(top, "ls-tree", "-r", "-z", "--full-tree", commit, "--", *paths, binary=True))
    files = {}
    for rec in out.split(b"\0"):
        if not rec:
            continue
        meta, _, name = rec.partition(b"\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == b"blob":
            files[name.decode(errors="surrogateescape")] = parts[2].decode()
    return files


def blob(top: Path, commit: str, path: str) -> bytes:
    """The content of ``path`` (relative to top) in ``commit``."""
    return bytes(git(top, "cat-file", "blob", f"{commit}:{path}", binary=True))
