"""The command line: a thin click adapter over :mod:`dbsnap.api`, and the rendering of its results.

``main`` (the root group, every command registered on it, the one place where errors become messages and exit
codes) imports the command modules; they import only ``common`` and the layers below, never ``main`` or each
other. ``dbsnap`` (the script), ``python -m dbsnap`` and ``dbsnap.cli:run`` all start here.
"""

from .main import cli, main, run

__all__ = ["cli", "main", "run"]
