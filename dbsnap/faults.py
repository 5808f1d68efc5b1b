"""Named fault points, so tests can prove the atomicity promises by killing dbsnap at a chosen step.

``DBSNAP_FAULT=<point>`` makes :func:`point` kill the process with SIGKILL when execution reaches that point;
``<point>:raise`` raises ``RuntimeError`` instead, ``<point>:sleep`` pauses there for ``DBSNAP_FAULT_SECONDS``
(default 3) so a test can act while dbsnap is mid-way, and ``<point>:wait`` creates the file
``DBSNAP_FAULT_FILE`` and pauses until the test removes it (at most 120 s); ``<point>:term`` sends dbsnap a
real SIGTERM there (what ``timeout``, systemd and ``docker stop`` send), which it handles like Ctrl-C. Several
faults may be given, separated by commas (``a:wait,b``): a test can pause at one point, act, then have dbsnap
die at the next.
Unset, a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time


def point(name: str) -> None:
    """Die (or raise, or pause) here when the environment asks for a fault at ``name``; otherwise do nothing."""
    spec = os.environ.get("DBSNAP_FAULT")
    if not spec:
        return
    for one in spec.split(","):
        target, _, action = one.strip().partition(":")
        if target == name:
            _act(name, action)


def _act(name: str, action: str) -> None:
    if action == "raise":
        raise RuntimeError(f"injected fault at {name}")
    if action == "term":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next instruction; never carry on past the point
        return
    if action in ("sleep", "wait"):
        if action == "sleep":
            time.sleep(float(os.environ.get("DBSNAP_FAULT_SECONDS", "3")))
            return
        flag = os.environ["DBSNAP_FAULT_FILE"]
        with open(flag, "w") as f:
            f.write(str(os.getpid()))
        deadline = time.monotonic() + 120
        while os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.01)
        return
    os.kill(os.getpid(), signal.SIGKILL)
