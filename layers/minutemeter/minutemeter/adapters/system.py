"""The system clock: the one place that reads wall time, the monotonic clock and randomness."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minutemeter.ports import Clock


class SystemClock:
    """:class:`minutemeter.ports.Clock` backed by the operating system."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def new_run_id(self) -> str:
        stamp = self.now().strftime("%Y%m%dT%H%M%S")
        return f"{stamp}-{secrets.token_hex(6)}"


class LambdaBudget:
    """:class:`minutemeter.ports.Budget` from a Lambda context's remaining time."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def remaining_seconds(self) -> float | None:
        return float(self._context.get_remaining_time_in_millis()) / 1000.0


class TimeoutBudget:
    """:class:`minutemeter.ports.Budget` of ``seconds`` from its creation, measured on the
    clock's monotonic time (what the Lambda context's remaining time is to the collector;
    ``collect --timeout``)."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._deadline = clock.monotonic() + seconds

    def remaining_seconds(self) -> float | None:
        return self._deadline - self._clock.monotonic()
