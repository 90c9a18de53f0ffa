"""Fetching one window of a source, whatever its kind: the source's reader (its transport's
paging and protocol checks applied inside) hands on page by page, each page's samples are
validated as it arrives, so that memory holds one page, not the window."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from minutemeter.domain.exporter_errors import SourceKindError
from minutemeter.domain.model import Snapshot, SourceConfig, SyncState, Window
from minutemeter.domain.validation import SampleRules, ValidationResult, validate_snapshots
from minutemeter.ports import CounterIdentity, CounterReader, SourceReaders

TimeLeft = Callable[[], float | None]  # seconds the next request may take (None: no limit)


def _no_limit() -> float | None:
    return None


def reader_for(readers: SourceReaders, source: SourceConfig) -> CounterReader:
    """The reader of ``source``'s kind; :class:`SourceKindError` when none is wired."""
    try:
        return readers[source.kind]
    except KeyError:
        raise SourceKindError(source.source_id, source.kind, sorted(readers)) from None


def expected_identity(source: SourceConfig, state: SyncState) -> CounterIdentity:
    """The identity a read must find: the configured node and env, else the ones the source's
    baseline was read from (``None``: learned from the first page, then enforced)."""
    return CounterIdentity(node_id=source.node_id or state.node_id,
                           env=source.env or state.env)


class WindowFetch:
    """The pages of ``window`` from ``source``'s reader, with sample validation applied.

    Iterating yields the validated snapshots of each page in order. ``guard`` runs before each
    request (deadline and lease checks: it raises to stop); ``time_left`` gives the seconds
    each request may take. Iteration raises what the reader raises: ``SourceProtocolError``
    for a broken page sequence, the wrong identity or more than ``MAX_PAGES_PER_WINDOW`` pages,
    ``ExporterError`` for transport failures, ``DeadlineError``. Quarantined samples collect in
    :attr:`validated` (capped, see ``ValidationResult``); :attr:`node_id` and :attr:`env` are
    the identity the pages named. Raises :class:`SourceKindError` at once when no reader is
    wired for the source's kind.
    """

    def __init__(
        self,
        readers: SourceReaders,
        source: SourceConfig,
        state: SyncState,
        window: Window,
        rules: SampleRules,
        guard: Callable[[], None] = lambda: None,
        time_left: TimeLeft = _no_limit,
    ) -> None:
        self._read = reader_for(readers, source).read(
            source, expected_identity(source, state), window,
            before_request=guard, time_left=time_left,
        )
        self._rules = rules
        self.validated = ValidationResult()

    @property
    def node_id(self) -> str | None:
        return self._read.node_id

    @property
    def env(self) -> str | None:
        return self._read.env

    @property
    def pages(self) -> int:
        return self._read.pages

    def __iter__(self) -> Iterator[list[Snapshot]]:
        for raw in self._read:
            validate_snapshots(raw, self._rules, self.validated)
            del raw  # the raw page goes before its validated snapshots are worked on
            yield self.validated.take_snapshots()
