"""The command line: a thin click adapter over :mod:`dbsnap.api`, and the rendering of its results.

``app`` (the root group, every command registered on it, the one place where errors become messages and exit
codes) imports the command modules; they import ``common``, ``render`` and the layers below, never ``app``, so
nothing imports in a loop. ``dbsnap`` (the script), ``python -m dbsnap`` and ``dbsnap.cli:run`` all start here.
"""

from .app import cli, main, run

__all__ = ["cli", "main", "run"]
