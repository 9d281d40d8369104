"""A progress bar for the long commands (imports, bulk retries, replays), on
standard error so the command's answer on standard output stays clean.

On a terminal it redraws one line: ``retried [########------------]  40/100
40%``. Elsewhere (a log, CI, a pipe) it writes a line at each tenth of the
way and at the end, so a long run shows it is moving without flooding the
log. No dependency: it is one line of text.
"""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 24


class ProgressBar:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._tenth_shown = -1
        self._last_written = ""

    def line(self) -> str:
        share = self.done / self.total if self.total else 1.0
        filled = round(WIDTH * share)
        bar = "#" * filled + "-" * (WIDTH - filled)
        width = len(str(self.total))
        return f"{self.label} [{bar}] {self.done:>{width}}/{self.total} {share:4.0%}"

    def update(self, done: int) -> None:
        self.done = min(max(done, 0), self.total) if self.total else done
        if self.live:
            self.stream.write("\r" + self.line())
            self.stream.flush()
            return
        tenth = int(10 * self.done / self.total) if self.total else 10
        if tenth > self._tenth_shown:
            self._tenth_shown = tenth
            self._write_line()

    def ended_at(self, done: int) -> None:
        """There was less to do than expected: ``done`` is all of it."""
        self.total = done
        self.update(done)

    def close(self) -> None:
        """End the bar's line (on a terminal), or write where it ended (elsewhere)."""
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
        elif self._last_written != self.line():
            self._write_line()

    def _write_line(self) -> None:
        self._last_written = self.line()
        self.stream.write(self._last_written + "\n")
        self.stream.flush()
