"""The source registry's bounds: what ``sources put`` accepts, and what a stored record must
satisfy to be operated on at all.

Two levels, on purpose:

- **Accepted** (:data:`EARLIEST_START`, :data:`LATEST_START`, the ``MAX_*`` bounds checked by
  ``service.sources.validate_source``): the policy for new values.
- **Operable** (:func:`operability_problem`): the weaker bounds under which every piece of
  datetime arithmetic on a stored source is safe (a start with a four-digit year, far enough
  from year 9999 that ``start`` or ``now`` plus any duration of the source still fits, and no
  duration over :data:`MAX_OPERABLE_SECONDS`). A stored record that fails them, or that does not
  parse, is *unreadable*: listings report it as an :class:`UnreadableSource`, ``get_source``
  raises :class:`SourceUnreadableError`, and ``sources put ID --url ...`` replaces it. Records
  stored under an older, looser policy that are still operable keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from minutemeter.domain.errors import MinutemeterError
from minutemeter.domain.model import SourceConfig, SourceKind
from minutemeter.domain.text import shorten

EARLIEST_START = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_START = datetime(9000, 1, 1, tzinfo=UTC)
MAX_CLOCK_TOLERANCE_SECONDS = 7 * 86_400

EARLIEST_OPERABLE_START = datetime(1000, 1, 1, tzinfo=UTC)
MAX_OPERABLE_SECONDS = 366 * 86_400
MAX_ECHO = 100  # characters of stored or caller text repeated in a message


@dataclass(frozen=True)
class UnreadableSource:
    """A registry record that cannot be read as a :class:`SourceConfig`; ``error`` says why."""

    source_id: str
    error: str


class SourceUnreadableError(MinutemeterError):
    """The source's registry record is unreadable (``reason``); ``sources put`` replaces it."""

    def __init__(self, source_id: str, reason: str) -> None:
        shown = shorten(source_id, MAX_ECHO)
        super().__init__(
            f"source {shown!r} has an unreadable registry record ({reason}); "
            f"replace it with `minutemeter sources put {shown} --url URL [...]`"
        )
        self.source_id = source_id
        self.reason = reason


def operability_problem(source: SourceConfig) -> str | None:
    """Why datetime arithmetic on ``source`` would be unsafe, or ``None`` when it is safe."""
    if source.start.tzinfo is None:
        return "start has no time zone"
    if not EARLIEST_OPERABLE_START <= source.start <= LATEST_START:
        return f"start {source.start.isoformat()} is outside years 1000-9000"
    durations = {
        "lag_seconds": source.lag_seconds,
        "max_window_seconds": source.max_window_seconds,
        "lease_seconds": source.lease_seconds,
        "clock_tolerance_seconds": source.clock_tolerance_seconds or 1,
        "clock_margin_ms": source.clock_margin_ms // 1000,
    }
    for name, value in durations.items():
        if not 0 <= value <= MAX_OPERABLE_SECONDS:
            return f"{name} {shorten(str(value), 24)} is outside 0-{MAX_OPERABLE_SECONDS} s"
    if source.max_window_seconds < 60 or source.lease_seconds < 1:
        return "max_window_seconds under 60 or lease_seconds under 1"
    if source.kind is SourceKind.PROMETHEUS and not (source.selector and source.account_label):
        return "a prometheus source without selector or account_label"
    return None
