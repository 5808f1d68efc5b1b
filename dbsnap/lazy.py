"""Modules imported on first use, for what most commands never touch (a command's fixed cost, issue 14)."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for ``dbsnap.pipelines.<name>``: imports it on the first attribute asked for, then forwards."""

    def __init__(self, name: str) -> None:
        self._name = f"dbsnap.pipelines.{name}"
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


def lazy(name: str) -> LazyModule:
    """A stand-in for the pipeline module ``name``, imported when first used."""
    return LazyModule(name)
