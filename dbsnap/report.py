"""Reporters: where progress and step lines go. Results are returned, never printed, by the library."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Reporter:
    """Silent reporter (library use); the human one overrides the methods it shows."""

    def step(self, text: str) -> None:
        """A line saying what is being done now."""

    def warn(self, text: str) -> None:
        """Something the user should know: a fallback, a taken-over lock."""

    def progress(self, label: str, total: int | None = None) -> ProgressCounter:
        return ProgressCounter(None, label, total)


class ProgressCounter:
    """Counts bytes and redraws one stderr line at most a few times per second (only on a terminal)."""

    def __init__(self, stream: TextIO | None, label: str, total: int | None) -> None:
        self.stream, self.label, self.total = stream, label, total
        self.done = 0
        self.last = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self.last < 0.25:
            return
        self.last = now
        pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
        self.stream.write(f"\r  {self.label}: {human_bytes(self.done)}{pct}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.last:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


class HumanReporter(Reporter):
    """Writes to stderr; progress bars only when stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def step(self, text: str) -> None:
        if not self.quiet:
            self._write(text)

    def warn(self, text: str) -> None:
        self._write(f"warning: {text}")

    def progress(self, label: str, total: int | None = None) -> ProgressCounter:
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        return ProgressCounter(self.stream if tty and not self.quiet else None, label, total)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
