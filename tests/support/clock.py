"""A clock for tests: wall time and monotonic time move only when the test says so."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta


class FakeClock:
    """Implements ``minutemeter.ports.Clock``. Thread-safe enough for reads."""

    def __init__(self, now: datetime | str) -> None:
        if isinstance(now, str):
            now = datetime.fromisoformat(now.replace("Z", "+00:00"))
        self._now = now.astimezone(UTC)
        self._monotonic = 1000.0
        self._ids = itertools.count(1)

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def new_run_id(self) -> str:
        return f"run-{next(self._ids):04d}"

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds

    def set(self, now: datetime) -> None:
        self._now = now.astimezone(UTC)


class FakeBudget:
    """A budget that the test sets directly (seconds remaining)."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def remaining_seconds(self) -> float | None:
        return self.remaining
