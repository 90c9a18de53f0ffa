"""The reader of kind ``exporter``: our window API (shared/spec/exporter-api.md), page by page.

:class:`ExporterReader` is the :class:`minutemeter.ports.CounterReader` of
``SourceKind.EXPORTER``. It asks a page client (:class:`ExporterPages`, in production
:class:`minutemeter.adapters.exporter_http.HttpExporter`) for one page at a time, follows the
cursor, and holds every page to the window API's paging rules
(:class:`minutemeter.domain.protocol.PageSequence`) before handing its snapshots on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from minutemeter.domain.model import Page, RawSnapshot, SourceConfig, Window
from minutemeter.domain.protocol import PageSequence, check_page_count
from minutemeter.ports import CounterIdentity, CounterReader, WindowRead


class ExporterPages(Protocol):
    """One page of the window API at a time (implemented by ``HttpExporter``). A seam inside
    this adapter, not a port: the service layer only sees :class:`ExporterReader`."""

    def fetch_page(
        self,
        source: SourceConfig,
        window: Window,
        cursor: str | None,
        *,
        time_left: float | None = None,
    ) -> Page:
        """One page of ``[window.since, window.until)`` after ``cursor`` (None: the first);
        raises ``ExporterError``, ``SourceProtocolError`` (``BodyTooLargeError`` when the body
        is over the client's cap) and ``DeadlineError`` once ``time_left`` seconds (retries
        included; None: no limit) have run out."""


class ExporterReader:
    """:class:`minutemeter.ports.CounterReader` over the window API's pages from ``pages``."""

    def __init__(self, pages: ExporterPages) -> None:
        self._pages = pages

    def read(
        self,
        source: SourceConfig,
        expected: CounterIdentity,
        window: Window,
        *,
        before_request: Callable[[], None],
        time_left: Callable[[], float | None],
    ) -> ExporterWindowRead:
        return ExporterWindowRead(self._pages, source, expected, window,
                                  before_request=before_request, time_left=time_left)


class ExporterWindowRead:
    """The pages of one window, each accepted by a :class:`PageSequence` before its snapshots
    are yielded; at most ``MAX_PAGES_PER_WINDOW`` of them."""

    def __init__(
        self,
        pages: ExporterPages,
        source: SourceConfig,
        expected: CounterIdentity,
        window: Window,
        *,
        before_request: Callable[[], None],
        time_left: Callable[[], float | None],
    ) -> None:
        self._pages = pages
        self._source = source
        self._window = window
        self._before_request = before_request
        self._time_left = time_left
        self._sequence = PageSequence(expected_node=expected.node_id,
                                      expected_env=expected.env)
        self._cursor: str | None = None

    @property
    def node_id(self) -> str | None:
        return self._sequence.node_id

    @property
    def env(self) -> str | None:
        return self._sequence.env

    @property
    def pages(self) -> int:
        return self._sequence.pages

    def __iter__(self) -> Iterator[Sequence[RawSnapshot]]:
        while True:
            self._before_request()
            yield self._next_page()  # this frame keeps no reference to the page it yields
            if self._cursor is None:
                return
            check_page_count(self._sequence.pages)

    def _next_page(self) -> tuple[RawSnapshot, ...]:
        """The next page's snapshots, once the page is accepted; records its cursor."""
        page = self._pages.fetch_page(self._source, self._window, self._cursor,
                                      time_left=self._time_left())
        self._cursor = self._sequence.accept(page)
        return page.snapshots


def _implements_the_ports(
    reader: ExporterReader, read: ExporterWindowRead
) -> tuple[CounterReader, WindowRead]:
    """Never called: mypy checks here that the adapter fits the ports (as Go's
    ``var _ Port = (*Adapter)(nil)``), not only where bootstrap happens to use it."""
    return reader, read
