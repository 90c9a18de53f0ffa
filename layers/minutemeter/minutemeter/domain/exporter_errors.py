"""Exporter errors the service layer acts on (it must not import the HTTP adapter)."""

from __future__ import annotations

from datetime import datetime

from minutemeter.domain.errors import SourceProtocolError
from minutemeter.domain.timeutil import format_second


class BodyTooLargeError(SourceProtocolError):
    """One page's body went over the adapter's size cap: the window (or the page) must shrink.

    ``limit_bytes`` is the cap; ``since`` and ``until`` (aware UTC) the requested window.
    """

    def __init__(self, limit_bytes: int, since: datetime, until: datetime) -> None:
        super().__init__(
            f"the exporter sent more than {limit_bytes} bytes for window "
            f"[{format_second(since)}, {format_second(until)}); make it page "
            "(has_more/next_cursor) or lower the source's --max-window",
            field="body",
        )
        self.limit_bytes = limit_bytes
        self.since = since
        self.until = until
