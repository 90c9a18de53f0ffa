"""Errors of reading sources that the service layer acts on (it must not import adapters)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from minutemeter.domain.errors import ConfigError, ExporterError, SourceProtocolError
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


class SourceKindError(ConfigError):
    """No reader is wired for the source's ``kind`` (``bootstrap`` maps each kind to one):
    nothing of the source can be read, so nothing moves; ``known`` are the kinds that can."""

    def __init__(self, source_id: str, kind: str, known: Iterable[str]) -> None:
        kinds = ", ".join(str(k) for k in known) or "none"
        super().__init__(
            f"source {source_id!r} is of kind {str(kind)!r}, which no reader here can read "
            f"(kinds read: {kinds}); wire its adapter in bootstrap, or register the source "
            "with a kind that is"
        )
        self.source_id = source_id
        self.kind = kind


class WindowNotReadyError(ExporterError):
    """The source has not ingested up to the window's end yet (a Prometheus source whose newest
    sample of the selector is older than ``until``, aware UTC): billing the window now could
    miss samples that are still on their way, so the run bills up to the window before it and
    stops. ``newest`` is the newest sample seen, or ``None`` when there is none."""

    def __init__(self, source_id: str, until: datetime, newest: datetime | None) -> None:
        seen = "no recent sample" if newest is None else f"the newest at {format_second(newest)}"
        super().__init__(
            f"source {source_id!r} has not ingested up to {format_second(until)} yet ({seen}): "
            "that window is not billed yet"
        )
        self.source_id = source_id
        self.until = until
        self.newest = newest
