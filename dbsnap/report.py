"""Reporters: where progress and step lines go. Results are returned, never printed, by the library."""

from __future__ import annotations

import shutil
import sys
import threading
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

    def stop_progress(self) -> None:
        """End the live progress line, if one is drawn (before an error is reported)."""


class ProgressCounter:
    """Counts bytes and phases; on a terminal a ticker thread redraws one stderr line every ``TICK`` seconds.

    Called with a number of bytes (the ``Progress`` callable the engines take). ``total`` is what the bytes are
    measured against (the database's size for a dump, the payload's for a restore); a percentage and an ETA are
    shown while the count is below it (an estimate can be passed: the percentage never shows 100 before the end).
    ``phase(name)`` starts a named phase: the previous one is left on its own line with its elapsed time, so the
    terminal keeps a record of where the time went. The elapsed time keeps ticking while nothing is counted (an
    index build, a checkpoint), so the line never sits still for more than a second. With ``stream`` None
    (library use, not a terminal, ``--quiet``, ``--json``) nothing is drawn and no thread is started.
    """

    TICK = 0.25

    def __init__(
        self, stream: TextIO | None, label: str, total: int | None, owner: HumanReporter | None = None
    ) -> None:
        self.stream, self.label, self.total, self.owner = stream, label, total, owner
        self.done = 0
        self.items = 0
        self.detail = ""
        self.current: str | None = None
        self.started = self.phase_started = time.monotonic()
        self.drawn = False
        self.show_bytes = True
        self.note = ""
        self.counted_from = 0  # bytes already counted when the phase started: its rate is measured from there
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if stream is not None:
            self._thread = threading.Thread(target=self._tick, name="dbsnap-progress", daemon=True)
            self._thread.start()

    def __call__(self, n: int) -> None:
        self.done += n  # drawn by the ticker: counting stays cheap on the hot path

    def phase(self, name: str, total: int | None = None, show_bytes: bool = True) -> None:
        """Start phase ``name`` (a no-op when it is the current one): the item count restarts; ``total`` replaces
        what bytes are measured against (and restarts the count); ``show_bytes`` False hides the byte count (a
        phase that reads no more input, such as building indexes)."""
        with self._lock:
            if name == self.current:
                return
            if self.stream is not None and self.current is not None:
                self._draw(final=True)
            self.current, self.phase_started = name, time.monotonic()
            self.items, self.detail, self.show_bytes = 0, "", show_bytes
            if total is not None:
                self.total, self.done = total, 0
                self.counted_from = 0
            else:
                self.counted_from = self.done

    def set_total(self, total: int, note: str = "") -> None:
        """Measure the bytes against ``total`` from now on; ``note`` is shown beside it (the database's size)."""
        self.total, self.note = total or None, note

    def item(self, detail: str = "", count: bool = True) -> None:
        """One more object of the current phase (an index, a table), ``detail`` naming it; ``count`` False only
        names what is being worked on now."""
        self.items += count
        self.detail = detail

    def close(self) -> None:
        """Stop the ticker and leave the last line (with its elapsed time) on the terminal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            with self._lock:
                if self.drawn:
                    self._draw(final=True)
        if self.owner is not None and self.owner.active is self:
            self.owner.active = None

    def write_over(self, stream: TextIO, text: str) -> None:
        """Write ``text`` in place of the live line (redrawn below it on the next tick); under the ticker's lock,
        so a redraw never lands between the two."""
        with self._lock:
            if self.drawn and self.stream is not None:
                self.stream.write("\r\x1b[K")
                self.drawn = False
            stream.write(text)
            stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(self.TICK):
            with self._lock:
                self._draw()

    def line(self, now: float | None = None, final: bool = False) -> str:
        """The text of the progress line at ``now``: what, the phase's elapsed time first (a narrow terminal cuts
        the end of the line, never that), then bytes, percentage and ETA, then the object being worked on."""
        now = time.monotonic() if now is None else now
        spent = now - self.phase_started
        head = f"{self.label}" + (f" {self.current}" if self.current else "") + ": " + _duration(spent)
        parts = [head]
        counting = self.show_bytes and (self.done or self.total)
        if counting:
            of = f" of ~{human_bytes(self.total)}" if self.total and self.note else ""
            of = of or (f" of {human_bytes(self.total)}" if self.total else "")
            parts.append(human_bytes(self.done) + of + (f" ({self.note})" if self.note else ""))
        if counting and self.total and not final and self.done < self.total:
            parts.append(f"{100 * self.done / self.total:.0f}%")
            gained = self.done - self.counted_from
            if gained > 0 and spent > 0.5:
                parts.append(f"ETA {_duration((self.total - self.done) * spent / gained)}")
        if self.items:
            parts.append(f"{self.items} items" if final or not self.detail else f"#{self.items} {self.detail}")
        return "  " + "  ".join(parts)

    def _draw(self, final: bool = False) -> None:
        assert self.stream is not None
        width = shutil.get_terminal_size((100, 24)).columns - 1
        text = self.line(final=final)[:width]
        self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        self.stream.flush()
        self.drawn = not final


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"  # tenths while it is short, so the line visibly moves
    s = int(seconds + 0.5)
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"


class HumanReporter(Reporter):
    """Writes to stderr; progress bars only when stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, live: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = live and not quiet  # progress lines: off with --quiet and --json
        self.active: ProgressCounter | None = None

    def _write(self, text: str) -> None:
        if self.active is not None:  # a step or a warning never lands in the middle of a progress line
            self.active.write_over(self.stream, text + "\n")
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def step(self, text: str) -> None:
        if not self.quiet:
            self._write(text)

    def warn(self, text: str) -> None:
        self._write(f"warning: {text}")

    def stop_progress(self) -> None:
        if self.active is not None:
            self.active.close()

    def progress(self, label: str, total: int | None = None) -> ProgressCounter:
        """A live progress line on a terminal; a silent counter otherwise (a pipe, a file, ``--quiet``)."""
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        if not (tty and self.live):
            return ProgressCounter(None, label, total)
        if self.active is not None:
            self.active.close()  # one live line at a time
        self.active = ProgressCounter(self.stream, label, total, owner=self)
        return self.active


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
