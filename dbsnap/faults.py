"""Named fault points, so tests can prove the atomicity promises by killing dbsnap at a chosen step.

``DBSNAP_FAULT=<point>`` makes :func:`point` kill the process with SIGKILL when execution reaches that point;
``<point>:raise`` raises ``RuntimeError`` instead, and ``<point>:sleep`` pauses there for
``DBSNAP_FAULT_SECONDS`` (default 3) so a test can act while dbsnap is mid-way; ``<point>:term`` sends dbsnap a
real SIGTERM there (what ``timeout``, systemd and ``docker stop`` send), which it handles like Ctrl-C.
Unset, a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time


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
    if action == "term":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next instruction; never carry on past the point
        return
    if action == "sleep":
        time.sleep(float(os.environ.get("DBSNAP_FAULT_SECONDS", "3")))
        return
    os.kill(os.getpid(), signal.SIGKILL)
