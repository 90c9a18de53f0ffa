"""The reader of kind ``exporter``: pages followed by cursor and held to the window API's paging
rules (``PageSequence``) inside the adapter, one page in memory, guards and time limits asked
before every request. The page client is a scripted fake; HTTP itself is
test_exporter_http.py's."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.adapters.exporter_reader import ExporterReader, ExporterWindowRead
from minutemeter.domain import protocol
from minutemeter.domain.errors import DeadlineError, ExporterError, SourceProtocolError
from minutemeter.domain.model import Page, RawSnapshot, SourceConfig, Window
from minutemeter.ports import CounterIdentity, CounterReader

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(minutes=15))
SOURCE = SourceConfig(source_id="s1", url="http://127.0.0.1:9", start=T0)
UNKNOWN = CounterIdentity(node_id=None, env=None)


def _page(number: int, *, more: bool, node: str = "node-a", env: str = "prod",
          digest: str | None = None) -> Page:
    at = T0 + timedelta(seconds=15 * (number + 1))
    return Page(
        node_id=node, env=env,
        snapshots=(RawSnapshot(taken_at=at.isoformat(), samples=({"n": number},)),),
        has_more=more,
        next_cursor=(T0 + timedelta(minutes=number + 1)).isoformat() if more else None,
        digest=digest if digest is not None else f"p{number}",
    )


class ScriptedPages:
    """A page client answering from ``pages`` in order (forgetting each once answered),
    recording every call."""

    def __init__(self, pages: Sequence[Page | Exception]) -> None:
        self._pages = list(pages)
        self.calls: list[tuple[str | None, float | None]] = []

    def fetch_page(self, source: SourceConfig, window: Window, cursor: str | None, *,
                   time_left: float | None = None) -> Page:
        self.calls.append((cursor, time_left))
        answer = self._pages.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _read(pages: ScriptedPages, expected: CounterIdentity = UNKNOWN, *,
          before_request: Callable[[], None] = lambda: None,
          time_left: Callable[[], float | None] = lambda: None) -> ExporterWindowRead:
    reader: CounterReader = ExporterReader(pages)  # the adapter fits the port (mypy)
    read = reader.read(SOURCE, expected, WINDOW, before_request=before_request,
                       time_left=time_left)
    assert isinstance(read, ExporterWindowRead)
    return read


def test_pages_are_followed_by_cursor_and_yielded_one_batch_each() -> None:
    pages = ScriptedPages([_page(0, more=True), _page(1, more=True), _page(2, more=False)])
    read = _read(pages)

    batches = [list(batch) for batch in read]

    assert [[s.samples for s in batch] for batch in batches] == [
        [({"n": 0},)], [({"n": 1},)], [({"n": 2},)],
    ]
    assert [cursor for cursor, _ in pages.calls] == [
        None, (T0 + timedelta(minutes=1)).isoformat(), (T0 + timedelta(minutes=2)).isoformat(),
    ]
    assert (read.node_id, read.env, read.pages) == ("node-a", "prod", 3)


def test_nothing_is_requested_until_the_read_is_iterated() -> None:
    pages = ScriptedPages([_page(0, more=False)])
    read = _read(pages)

    assert pages.calls == [] and read.pages == 0
    assert (read.node_id, read.env) == (None, None)  # not learned yet


def test_the_expected_identity_is_enforced_on_every_page() -> None:
    # GIVEN a source expected on node-a / prod, whose second page names node-b
    pages = ScriptedPages([_page(0, more=True), _page(1, more=False, node="node-b")])
    read = _read(pages, CounterIdentity(node_id="node-a", env="prod"))
    batches = iter(read)
    next(batches)

    # WHEN the read goes on, THEN the adapter refuses it, naming the field
    with pytest.raises(SourceProtocolError) as caught:
        next(batches)
    assert (caught.value.field, caught.value.value) == ("node_id", "node-b")
    assert read.pages == 1


def test_an_unknown_identity_is_learned_from_the_first_page_then_enforced() -> None:
    pages = ScriptedPages([_page(0, more=True, env="qa"), _page(1, more=False, env="prod")])
    read = _read(pages, CounterIdentity(node_id="node-a", env=None))

    with pytest.raises(SourceProtocolError) as caught:
        list(read)

    assert caught.value.field == "env"
    assert (read.node_id, read.env) == ("node-a", "qa")


def test_a_repeated_page_stops_the_read_inside_the_adapter() -> None:
    pages = ScriptedPages([_page(0, more=True, digest="same"), _page(1, more=True, digest="same"),
                           _page(2, more=False)])
    with pytest.raises(SourceProtocolError) as caught:
        list(_read(pages))

    assert caught.value.field == "page"
    assert len(pages.calls) == 2  # nothing asked after the broken page


def test_a_broken_cursor_stops_the_read() -> None:
    broken = Page(node_id="node-a", env="prod", snapshots=(), has_more=True, next_cursor="",
                  digest="p0")
    pages = ScriptedPages([broken, _page(1, more=False)])
    with pytest.raises(SourceProtocolError) as caught:
        list(_read(pages))

    assert caught.value.field == "next_cursor"
    assert len(pages.calls) == 1


def test_at_most_max_pages_per_window_are_requested(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a limit of 3 pages and an exporter that always has more
    monkeypatch.setattr(protocol, "MAX_PAGES_PER_WINDOW", 3)
    pages = ScriptedPages([_page(n, more=True) for n in range(10)])
    read = _read(pages)
    batches: list[Sequence[RawSnapshot]] = []

    # WHEN the read goes on past the limit
    with pytest.raises(SourceProtocolError, match="more than 3 pages for one window") as caught:
        batches.extend(read)

    # THEN the three pages were handed on, and no fourth was requested
    assert caught.value.field == "page"
    assert len(batches) == 3 and len(pages.calls) == 3


def test_a_last_page_at_the_limit_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MAX_PAGES_PER_WINDOW", 2)
    pages = ScriptedPages([_page(0, more=True), _page(1, more=False)])

    assert len(list(_read(pages))) == 2


def test_before_request_runs_before_each_request_and_stops_the_read() -> None:
    pages = ScriptedPages([_page(0, more=True), _page(1, more=True), _page(2, more=False)])
    guarded: list[int] = []

    def before_request() -> None:
        guarded.append(len(pages.calls))
        if len(pages.calls) == 2:
            raise DeadlineError("deadline near")

    with pytest.raises(DeadlineError):
        list(_read(pages, before_request=before_request))

    assert guarded == [0, 1, 2]  # before the 1st, 2nd and (refused) 3rd request
    assert len(pages.calls) == 2


def test_time_left_is_asked_before_each_request_and_passed_on() -> None:
    pages = ScriptedPages([_page(0, more=True), _page(1, more=False)])
    left = iter([9.5, 4.25])

    list(_read(pages, time_left=lambda: next(left)))

    assert [seconds for _, seconds in pages.calls] == [9.5, 4.25]


def test_transport_errors_pass_through_unchanged() -> None:
    error = ExporterError("exporter s1 answered HTTP 503: busy")
    pages = ScriptedPages([_page(0, more=True), error])

    with pytest.raises(ExporterError) as caught:
        list(_read(pages))

    assert caught.value is error


def test_the_reader_keeps_no_page_once_its_batch_is_handed_on() -> None:
    # GIVEN pages the test can watch being freed
    first, second = _page(0, more=True), _page(1, more=False)
    watched = [weakref.ref(first), weakref.ref(second)]
    pages = ScriptedPages([first, second])
    del first, second
    batches = iter(_read(pages))

    # WHEN the first batch is handed on (the read suspended there)
    batch = next(batches)
    gc.collect()

    # THEN nothing holds the first page any more: memory is a page, not the window
    assert watched[0]() is None
    assert batch[0].samples == ({"n": 0},)
    assert len(list(batches)) == 1
