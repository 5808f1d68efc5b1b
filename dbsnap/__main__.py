"""``python -m dbsnap``."""

from .cli import run

run()
