"""Which minutes a run may bill: the source's window and its chunks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from minutemeter.domain.model import SourceConfig, SyncState, Window
from minutemeter.domain.timeutil import floor_minute


def plan_window(
    source: SourceConfig, state: SyncState, now: datetime, extra_lag: timedelta = timedelta(0)
) -> Window:
    """The next window of ``source`` at ``now``.

    ``since`` is the watermark (or the configured start); ``until`` is ``now - lag`` floored to
    the minute (``extra_lag``: what the clock guard adds), capped at ``since + max_window``. Only
    minutes whose end is at or before ``now - lag`` are inside, so a minute is billed only once
    it is complete. The window may be empty (``since >= until``).
    """
    since = state.last_completed_until or source.start
    until = floor_minute(now - timedelta(seconds=source.lag_seconds) - extra_lag)
    until = min(until, since + timedelta(seconds=source.max_window_seconds))
    return Window(since=since, until=until)


def split_window(window: Window, chunk: timedelta) -> Iterator[Window]:
    """Consecutive minute-aligned chunks of at most ``chunk`` covering ``window``."""
    if chunk < timedelta(minutes=1) or chunk % timedelta(minutes=1):
        raise ValueError("chunk must be a positive whole number of minutes")
    start = window.since
    while start < window.until:
        end = min(start + chunk, window.until)
        yield Window(since=start, until=end)
        start = end
