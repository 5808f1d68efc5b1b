"""``dbsnap doctor``: check every precondition dbsnap's commands rely on, without changing anything.

Each check is a small function returning one or more :class:`Check` (``ok``, ``warn`` or ``fail``, with the fix
for anything not ok). A check that raises becomes a ``fail`` carrying its message, never a traceback. Nothing is
created, locked or modified: the store is not created, the lock is not taken (whether a live process holds it is
read from ``/proc/locks``), and the only write is a temporary file created and removed again to prove the store
(or the folder it will be created in) is writable, and a probe object written to and removed from the default
remote when one is configured.
"""

from .check import FAIL, OK, WARN, Check
from .run import diagnose, failed, run_checks

__all__ = ["FAIL", "OK", "WARN", "Check", "diagnose", "failed", "run_checks"]
