"""Ready-to-install schedules (cron line, systemd service + timer) that run ``dbsnap save --prune``."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from .errors import UsageError


def dbsnap_command() -> str:
    """How a scheduler should start this dbsnap: the script installed beside this Python (``.venv/bin/dbsnap``),
    else this Python with ``-m dbsnap``.

    The interpreter's folder is compared unresolved: a virtualenv's ``python`` is a symlink to the base
    interpreter, and resolving it would look for the script in ``/usr/bin``.
    """
    exe = Path(os.path.abspath(sys.executable)).parent / "dbsnap"
    if exe.is_file() and os.access(exe, os.X_OK):
        return shlex.quote(str(exe))
    return f"{shlex.quote(sys.executable)} -m dbsnap"


def _at(at: str) -> tuple[int, int]:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", at)
    if not m:
        raise UsageError(f"invalid time {at!r}: use HH:MM (24 h)")
    return int(m.group(1)), int(m.group(2))


def cron_line(project: Path, store: Path, at: str = "03:17", command: str | None = None) -> str:
    """One crontab line: every day at ``at``, save + prune, output appended to a log beside the store."""
    hour, minute = _at(at)
    cmd = command or dbsnap_command()
    log = store.parent / "dbsnap-cron.log"
    return (
        f"{minute} {hour} * * * cd {shlex.quote(str(project))} && "
        f"{cmd} --quiet --lock-timeout 600 --store {shlex.quote(str(store))} save --prune "
        f">> {shlex.quote(str(log))} 2>&1"
    )


def systemd_units(project: Path, store: Path, at: str = "03:17", command: str | None = None) -> dict[str, str]:
    """``dbsnap-<project>.service`` and ``.timer`` (Persistent=true: a missed run happens at next boot)."""
    hour, minute = _at(at)
    cmd = command or dbsnap_command()
    unit = f"dbsnap-{re.sub(r'[^A-Za-z0-9_-]', '-', project.name)}"
    service = f"""[Unit]
Description=dbsnap snapshot and retention for {project}
After=network-online.target postgresql.service

[Service]
Type=oneshot
WorkingDirectory={project}
ExecStart={cmd} --quiet --lock-timeout 600 --store {store} save --prune
"""
    timer = f"""[Unit]
Description=Daily dbsnap snapshot for {project}

[Timer]
OnCalendar=*-*-* {hour:02d}:{minute:02d}:00
Persistent=true
RandomizedDelaySec=5min

[Install]
WantedBy=timers.target
"""
    return {f"{unit}.service": service, f"{unit}.timer": timer}
