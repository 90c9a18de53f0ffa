"""A small progress bar for long CLI work, on stderr (stdout stays pure JSON)."""

from __future__ import annotations

import time
from typing import TextIO

WIDTH = 30


class ProgressBar:
    """``update(done, total)`` redraws one line on a terminal; elsewhere (a pipe, a CI log) it
    prints a line per tenth so logs stay short."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._started = time.monotonic()
        self._tty = stream.isatty()
        self._last_tenth = -1
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        if total <= 0:
            return
        fraction = done / total
        elapsed = time.monotonic() - self._started
        eta = elapsed / fraction - elapsed if fraction else 0.0
        filled = int(WIDTH * fraction)
        text = (f"{self._label} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total} "
                f"{elapsed:.0f}s elapsed, ~{eta:.0f}s left")
        if self._tty:
            self._stream.write("\r" + text)
            self._drawn = True
        elif int(fraction * 10) != self._last_tenth:
            self._last_tenth = int(fraction * 10)
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
