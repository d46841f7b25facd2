"""How long stages say what they are doing: a line per part, and counts for long loops.

A stage takes ``progress``: any callable that accepts a line of text. A reporter that also has
a ``tally(label, done, total)`` method is told the count of a long loop as it goes (the CLI
draws a bar with the time left on a terminal, and prints a line now and then otherwise); a
plain callable is told only when the loop starts and ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

Progress = Callable[[str], None]
LINE_SECONDS = 30.0  # without a terminal, a count line at most this often (and at 25 % steps)


def silent(message: str) -> None:
    """A progress callable that says nothing."""


def tally(progress: Progress, label: str, done: int, total: int) -> None:
    """Tell ``progress`` that ``done`` of ``total`` parts of ``label`` are done."""
    counter = getattr(progress, "tally", None)
    if counter is not None:
        counter(label, done, total)
    elif done == total:
        progress(f"{label}: {total:,} done")


class Reporter:
    """Progress on a stream: lines as given, counts as a tqdm bar on a terminal, else lines."""

    def __init__(self, stream: TextIO | None = None, prefix: Callable[[], str] = lambda: "") -> None:
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any | None = None  # the tqdm bar being drawn (tqdm has no types)
        self._label = ""
        self._last = 0.0
        self._shown = 0

    def __call__(self, message: str) -> None:
        """Print ``message`` as a line of its own, closing any bar being drawn."""
        self._close()
        print(f"{self.prefix()}{message} …", file=self.stream, flush=True)

    def tally(self, label: str, done: int, total: int) -> None:
        """Show ``done`` of ``total`` parts of ``label``: a bar on a terminal, else a line now and then.

        Without a terminal a line comes at each quarter, at the end, and once LINE_SECONDS (s)
        have passed since the last.
        """
        if label != self._label:
            self._close()
            self._label, self._last, self._shown = label, time.monotonic(), 0
        if self.terminal:
            self._draw(label, done, total)
        else:
            self._line(label, done, total)
        if done >= total:
            self._close()

    def _draw(self, label: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=f"  {label}", file=self.stream, leave=False, unit="")
        self._bar.update(done - self._bar.n)

    def _line(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        quarter = 4 * done // max(total, 1)
        if done >= total or quarter > self._shown or now - self._last >= LINE_SECONDS:
            print(f"{self.prefix()}  {label}: {done:,}/{total:,}", file=self.stream, flush=True)
            self._last, self._shown = now, quarter

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._label = ""


def indented(progress: Progress, prefix: str = "  ") -> Progress:
    """``progress`` with each line indented by ``prefix``; counts pass through unchanged."""
    return _Indented(progress, prefix)


class _Indented:
    def __init__(self, progress: Progress, prefix: str) -> None:
        self.progress, self.prefix = progress, prefix

    def __call__(self, message: str) -> None:
        self.progress(f"{self.prefix}{message}")

    def tally(self, label: str, done: int, total: int) -> None:
        tally(self.progress, f"{self.prefix}{label}", done, total)
