"""Named fault points, so tests can prove the atomicity promises by killing dbsnap at a chosen step.

``DBSNAP_FAULT=<point>`` (or ``<point>:raise``) makes :func:`point` kill the process with SIGKILL (or raise
``RuntimeError``) when execution reaches that point. Unset, a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    """Die (or raise) here when the environment asks for a fault at ``name``; otherwise do nothing."""
    spec = os.environ.get("DBSNAP_FAULT")
    if not spec:
        return
    target, _, action = spec.partition(":")
    if target != name:
        return
    if action == "raise":
        raise RuntimeError(f"injected fault at {name}")
    os.kill(os.getpid(), signal.SIGKILL)
