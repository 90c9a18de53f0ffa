"""Fetching one window from an exporter: every page checked and validated as it arrives, and
handed on page by page, so that memory holds one page, not the window."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from minutemeter.domain.errors import SourceProtocolError
from minutemeter.domain.model import Snapshot, SourceConfig, SyncState, Window
from minutemeter.domain.protocol import PageSequence
from minutemeter.domain.validation import SampleRules, ValidationResult, validate_snapshots
from minutemeter.ports import Exporter

MAX_PAGES_PER_WINDOW = 10_000

TimeLeft = Callable[[], float | None]  # seconds the next request may take (None: no limit)


def _no_limit() -> float | None:
    return None


class WindowFetch:
    """The pages of ``window``, paging rules (``PageSequence``) and sample validation applied.

    Iterating yields the validated snapshots of each page in order. ``guard`` runs before each
    request (deadline and lease checks: it raises to stop); ``time_left`` gives the seconds
    each request may take. Iteration raises ``SourceProtocolError`` for a broken
    page sequence or more than ``MAX_PAGES_PER_WINDOW`` pages, ``ExporterError`` for transport
    failures. Quarantined samples collect in :attr:`validated` (capped, see
    ``ValidationResult``); :attr:`node_id` and :attr:`env` are the identity the pages named.
    """

    def __init__(
        self,
        exporter: Exporter,
        source: SourceConfig,
        state: SyncState,
        window: Window,
        rules: SampleRules,
        guard: Callable[[], None] = lambda: None,
        time_left: TimeLeft = _no_limit,
    ) -> None:
        self._exporter = exporter
        self._source = source
        self._window = window
        self._rules = rules
        self._guard = guard
        self._time_left = time_left
        self.sequence = PageSequence(expected_node=source.node_id or state.node_id,
                                     expected_env=source.env or state.env)
        self.validated = ValidationResult()

    @property
    def node_id(self) -> str | None:
        return self.sequence.node_id

    @property
    def env(self) -> str | None:
        return self.sequence.env

    @property
    def pages(self) -> int:
        return self.sequence.pages

    def __iter__(self) -> Iterator[list[Snapshot]]:
        cursor: str | None = None
        while True:
            self._guard()
            page = self._exporter.fetch_page(
                self._source, self._window, cursor, time_left=self._time_left()
            )
            cursor = self.sequence.accept(page)
            validate_snapshots(page.snapshots, self._rules, self.validated)
            del page
            yield self.validated.take_snapshots()
            if cursor is None:
                return
            if self.sequence.pages >= MAX_PAGES_PER_WINDOW:
                raise SourceProtocolError(
                    f"more than {MAX_PAGES_PER_WINDOW} pages for one window", field="page"
                )
