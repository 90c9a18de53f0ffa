"""HttpExporter against a real SampleExporter on 127.0.0.1: parsing, auth, retries, failures.

No patching of ``requests``: every request crosses a real socket to the sample exporter, whose
``fault`` hook stands in for a misbehaving exporter.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from minutemeter.adapters import exporter_http
from minutemeter.adapters.exporter_http import HttpExporter
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.domain.errors import ExporterError, SourceProtocolError
from minutemeter.domain.model import RawSnapshot, SourceConfig, Window
from minutemeter.local.ddb import free_port
from minutemeter.local.exporter import (
    Fault,
    SampleExporter,
    StaticHistory,
    account_ids,
    rfc3339,
)
from minutemeter.ports import CounterIdentity

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(minutes=15))
A, B = account_ids(2)
GOOD_DOCUMENT: dict[str, Any] = {
    "node_id": "node-a",
    "env": "prod",
    "snapshots": [{"taken_at": "2026-11-22T10:00:15Z",
                   "samples": [{"account_id": A, "total_bytes": 1}]}],
    "has_more": False,
    "next_cursor": "",
}


def _source(url: str, token_secret: str | None = None) -> SourceConfig:
    return SourceConfig(source_id="s1", url=url, start=T0, token_secret=token_secret)


def _history(count: int) -> StaticHistory:
    items = []
    for i in range(count):
        at = T0 + timedelta(seconds=15 * (i + 1))
        items.append((at, {"taken_at": rfc3339(at),
                           "samples": [{"account_id": A, "total_bytes": 100 * i},
                                       {"account_id": B, "total_bytes": 7 * i}]}))
    return StaticHistory(items)


def _answer(status: int, body: bytes, *, times: int | None = None) -> Fault:
    """A fault hook answering ``(status, body)`` to the first ``times`` requests (all if None)."""

    def fault(
        number: int, query: Mapping[str, str], document: dict[str, Any]
    ) -> tuple[int, bytes] | None:
        if times is None or number < times:
            return status, body
        return None

    return fault


@pytest.fixture(scope="module")
def _server() -> Iterator[SampleExporter]:
    # One server for the module: stopping one takes up to 0.5 s (serve_forever's poll interval).
    with SampleExporter(_history(5), page_size=3) as server:
        yield server


@pytest.fixture
def exporter(_server: SampleExporter) -> SampleExporter:
    """The shared sample exporter, well-behaved and with no requests recorded."""
    _server.fault = None
    _server.token = None
    _server.requests.clear()
    return _server


def _client(retries: int = 2, timeout: float = 2.0, **kwargs: Any) -> HttpExporter:
    return HttpExporter(timeout_seconds=timeout, retries=retries, **kwargs)


# -- a good page ------------------------------------------------------------------------------
def test_a_good_page_parses_into_a_page(exporter: SampleExporter) -> None:
    bodies: list[bytes] = []

    def capture(number: int, query: Mapping[str, str], document: dict[str, Any]) -> Any:
        bodies.append(json.dumps(document).encode())
        return 200, bodies[-1]

    exporter.fault = capture
    page = _client().fetch_page(_source(exporter.url), WINDOW, None)

    assert (page.node_id, page.env, page.has_more) == ("node-a", "prod", True)
    assert page.next_cursor == "2026-11-22T10:01:00.000Z"  # the 4th snapshot starts page 2
    assert page.digest == hashlib.sha256(bodies[0]).hexdigest()
    assert len(page.snapshots) == 3
    assert page.snapshots[0] == RawSnapshot(
        taken_at="2026-11-22T10:00:15.000Z",
        samples=({"account_id": A, "total_bytes": 0}, {"account_id": B, "total_bytes": 0}),
    )
    assert [s.taken_at for s in page.snapshots] == [
        "2026-11-22T10:00:15.000Z", "2026-11-22T10:00:30.000Z", "2026-11-22T10:00:45.000Z",
    ]


def test_the_cursor_fetches_the_next_page(exporter: SampleExporter) -> None:
    client = _client()
    first = client.fetch_page(_source(exporter.url), WINDOW, None)
    second = client.fetch_page(_source(exporter.url), WINDOW, first.next_cursor)

    assert [s.taken_at for s in second.snapshots] == [
        "2026-11-22T10:01:00.000Z", "2026-11-22T10:01:15.000Z",
    ]
    assert second.has_more is False and second.next_cursor == ""
    assert second.digest != first.digest


def test_the_reader_pages_through_the_window_over_http(exporter: SampleExporter) -> None:
    read = ExporterReader(_client()).read(
        _source(exporter.url), CounterIdentity(node_id=None, env=None), WINDOW,
        before_request=lambda: None, time_left=lambda: 5.0)

    batches = [[s.taken_at for s in batch] for batch in read]

    assert batches == [
        ["2026-11-22T10:00:15.000Z", "2026-11-22T10:00:30.000Z", "2026-11-22T10:00:45.000Z"],
        ["2026-11-22T10:01:00.000Z", "2026-11-22T10:01:15.000Z"],
    ]
    assert (read.node_id, read.env, read.pages) == ("node-a", "prod", 2)
    assert [r.get("cursor") for r in exporter.requests] == [None, "2026-11-22T10:01:00.000Z"]


def test_the_reader_refuses_an_exporter_that_repeats_its_page(exporter: SampleExporter) -> None:
    # GIVEN an exporter that answers every request with its first page (has_more, cursor)
    first: list[bytes] = []

    def repeat(number: int, query: Mapping[str, str], document: dict[str, Any]) -> Any:
        if not first:
            first.append(json.dumps(document).encode())
        return 200, first[0]

    exporter.fault = repeat
    read = ExporterReader(_client()).read(
        _source(exporter.url), CounterIdentity(node_id="node-a", env="prod"), WINDOW,
        before_request=lambda: None, time_left=lambda: None)

    # WHEN the window is read, THEN the adapter refuses the repeat itself
    with pytest.raises(SourceProtocolError) as caught:
        list(read)
    assert caught.value.field == "page"
    assert len(exporter.requests) == 2


def test_query_is_second_precision_rfc3339_and_the_cursor_is_passed_through(
    exporter: SampleExporter,
) -> None:
    window = Window(T0 + timedelta(seconds=30, microseconds=999_999), T0 + timedelta(minutes=15))
    client = _client()
    client.fetch_page(_source(exporter.url + "/"), window, None)  # a trailing slash is fine
    client.fetch_page(_source(exporter.url), window, "2026-11-22T10:05:00.123Z")

    assert exporter.requests == [
        {"since": "2026-11-22T10:00:30Z", "until": "2026-11-22T10:15:00Z"},
        {"since": "2026-11-22T10:00:30Z", "until": "2026-11-22T10:15:00Z",
         "cursor": "2026-11-22T10:05:00.123Z"},
    ]


# -- the bearer token -------------------------------------------------------------------------
def test_bearer_token_is_sent_only_when_the_source_has_one(exporter: SampleExporter) -> None:
    exporter.token = "t0ken-123"
    asked: list[str | None] = []

    def lookup(source: SourceConfig) -> str | None:
        asked.append(source.token_secret)
        return "t0ken-123" if source.token_secret else None

    client = _client(token_lookup=lookup)
    page = client.fetch_page(_source(exporter.url, token_secret="ssm:/tok"), WINDOW, None)
    assert len(page.snapshots) == 3
    with pytest.raises(ExporterError, match="HTTP 401") as caught:
        client.fetch_page(_source(exporter.url), WINDOW, None)

    assert type(caught.value) is ExporterError
    assert asked == ["ssm:/tok", None]
    assert len(exporter.requests) == 2  # a 401 is not retried


def test_a_wrong_token_is_refused(exporter: SampleExporter) -> None:
    exporter.token = "t0ken-123"
    client = _client(token_lookup=lambda source: "stale-token")
    with pytest.raises(ExporterError, match="HTTP 401"):
        client.fetch_page(_source(exporter.url, token_secret="ssm:/tok"), WINDOW, None)


def test_without_a_token_lookup_no_token_is_sent(exporter: SampleExporter) -> None:
    exporter.token = "t0ken-123"
    with pytest.raises(ExporterError, match="HTTP 401"):
        _client().fetch_page(_source(exporter.url, token_secret="ssm:/tok"), WINDOW, None)


# -- retries ----------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 503, 599])
def test_5xx_is_retried_and_then_succeeds(exporter: SampleExporter, status: int) -> None:
    exporter.fault = _answer(status, b'{"error":"busy"}', times=2)
    page = _client(retries=2).fetch_page(_source(exporter.url), WINDOW, None)

    assert len(exporter.requests) == 3
    assert len(page.snapshots) == 3


def test_5xx_forever_fails_after_retries_plus_one_attempts(exporter: SampleExporter) -> None:
    exporter.fault = _answer(503, b"overloaded")
    with pytest.raises(ExporterError, match="HTTP 503: overloaded") as caught:
        _client(retries=2).fetch_page(_source(exporter.url), WINDOW, None)

    assert type(caught.value) is ExporterError
    assert len(exporter.requests) == 3


def test_no_retries_means_one_attempt(exporter: SampleExporter) -> None:
    exporter.fault = _answer(500, b"")
    with pytest.raises(ExporterError, match="HTTP 500"):
        _client(retries=0).fetch_page(_source(exporter.url), WINDOW, None)
    assert len(exporter.requests) == 1


@pytest.mark.parametrize("status", [400, 403, 404])  # 429 is retried: test_exporter_hostile
def test_4xx_is_not_retried(exporter: SampleExporter, status: int) -> None:
    exporter.fault = _answer(status, b'{"error":"no"}')
    with pytest.raises(ExporterError, match=f"HTTP {status}") as caught:
        _client(retries=3).fetch_page(_source(exporter.url), WINDOW, None)

    assert type(caught.value) is ExporterError
    assert len(exporter.requests) == 1


def test_a_3xx_is_an_error_not_a_page(exporter: SampleExporter) -> None:
    exporter.fault = _answer(304, b"")
    with pytest.raises(ExporterError, match="HTTP 304"):
        _client().fetch_page(_source(exporter.url), WINDOW, None)


# -- transport failures -----------------------------------------------------------------------
def test_connection_refused_is_an_exporter_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    with pytest.raises(ExporterError, match="unreachable") as caught:
        _client(retries=1).fetch_page(_source(url), WINDOW, None)
    assert type(caught.value) is ExporterError


def test_read_timeout_is_retried_then_an_exporter_error(exporter: SampleExporter) -> None:
    release = threading.Event()
    stalled: list[threading.Thread] = []

    def stall(number: int, query: Mapping[str, str], document: dict[str, Any]) -> Any:
        stalled.append(threading.current_thread())
        release.wait(5)
        return None

    exporter.fault = stall
    started = time.monotonic()
    try:
        with pytest.raises(ExporterError, match="unreachable") as caught:
            _client(retries=1, timeout=0.3).fetch_page(_source(exporter.url), WINDOW, None)
    finally:
        elapsed = time.monotonic() - started
        release.set()
        for thread in stalled:  # let the handlers finish (and hit the closed socket) in this test
            thread.join(5)

    assert type(caught.value) is ExporterError
    assert len(exporter.requests) == 2
    assert 0.6 <= elapsed < 3.0


# -- malformed bodies -------------------------------------------------------------------------
_MISSING = object()


def _with(**changes: Any) -> bytes:
    """GOOD_DOCUMENT with fields replaced (or removed with ``_MISSING``), as a body."""
    document = dict(GOOD_DOCUMENT)
    for name, value in changes.items():
        if value is _MISSING:
            del document[name]
        else:
            document[name] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        (b"", "body", None),
        (b"<html>502 Bad Gateway</html>", "body", None),
        (b'{"node_id": "node-a", "env": "pr', "body", None),  # truncated
        (b"\xff\xfe\xfa", "body", None),  # not UTF-8
        (b"[]", "body", None),
        (b'[{"node_id": "node-a"}]', "body", None),
        (b'"node-a"', "body", None),
        (b"null", "body", None),
        (_with(node_id=_MISSING), "node_id", None),
        (_with(node_id=7), "node_id", 7),
        (_with(node_id=None), "node_id", None),
        (_with(env=_MISSING), "env", None),
        (_with(env=["prod"]), "env", ["prod"]),
        (_with(snapshots=_MISSING), "snapshots", None),
        (_with(snapshots={"taken_at": "x"}), "snapshots", {"taken_at": "x"}),
        (_with(has_more=_MISSING), "has_more", None),
        (_with(has_more="false"), "has_more", "false"),
        (_with(has_more=0), "has_more", 0),
        (_with(next_cursor=5), "next_cursor", 5),
        (_with(next_cursor=["2026-11-22T10:05:00Z"]), "next_cursor", ["2026-11-22T10:05:00Z"]),
    ],
)
def test_malformed_body_is_a_protocol_error_naming_the_field(
    exporter: SampleExporter, body: bytes, field: str, value: object
) -> None:
    exporter.fault = _answer(200, body)
    with pytest.raises(SourceProtocolError) as caught:
        _client().fetch_page(_source(exporter.url), WINDOW, None)

    assert caught.value.field == field
    assert caught.value.value == value
    assert len(exporter.requests) == 1  # a bad body is not retried


@pytest.mark.parametrize(
    ("snapshots", "field"),
    [
        ([1], "snapshots[0]"),
        (["2026-11-22T10:00:15Z"], "snapshots[0]"),
        ([None], "snapshots[0]"),
        ([{"taken_at": "2026-11-22T10:00:15Z"}], "snapshots[0]"),
        ([{"taken_at": "2026-11-22T10:00:15Z", "samples": {"account_id": A}}], "snapshots[0]"),
        ([{"taken_at": "2026-11-22T10:00:15Z", "samples": []}, {"samples": None}],
         "snapshots[1]"),
    ],
)
def test_a_snapshot_without_a_samples_list_is_a_protocol_error(
    exporter: SampleExporter, snapshots: list[object], field: str
) -> None:
    exporter.fault = _answer(200, _with(snapshots=snapshots))
    with pytest.raises(SourceProtocolError) as caught:
        _client().fetch_page(_source(exporter.url), WINDOW, None)
    assert caught.value.field == field


def test_shape_only_content_is_left_to_the_domain(exporter: SampleExporter) -> None:
    # A missing taken_at and garbage samples pass the shape check untouched (validation
    # quarantines them later); a null next_cursor is the same as none.
    snapshots = [{"samples": ["junk", {"total_bytes": -1}]}]
    exporter.fault = _answer(200, _with(snapshots=snapshots, next_cursor=None))
    page = _client().fetch_page(_source(exporter.url), WINDOW, None)

    assert page.snapshots == (RawSnapshot(taken_at=None, samples=("junk", {"total_bytes": -1})),)
    assert page.next_cursor is None


# -- body size --------------------------------------------------------------------------------
def test_body_at_the_cap_is_read_and_one_byte_more_is_refused(
    exporter: SampleExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _with()
    exporter.fault = _answer(200, body)
    monkeypatch.setattr(exporter_http, "MAX_BODY_BYTES", len(body))
    assert _client().fetch_page(_source(exporter.url), WINDOW, None).node_id == "node-a"

    monkeypatch.setattr(exporter_http, "MAX_BODY_BYTES", len(body) - 1)
    with pytest.raises(SourceProtocolError, match="sent more than") as caught:
        _client().fetch_page(_source(exporter.url), WINDOW, None)
    assert caught.value.field == "body"


def test_an_oversized_body_is_refused(
    exporter: SampleExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporter_http, "MAX_BODY_BYTES", 1000)
    exporter.fault = _answer(200, b" " * 200_000 + _with())  # several 64 KiB chunks
    with pytest.raises(SourceProtocolError) as caught:
        _client().fetch_page(_source(exporter.url), WINDOW, None)
    assert caught.value.field == "body"


# -- untrusted JSON that Python's json module refuses in other ways -------------------------------
def test_a_counter_with_too_many_digits_is_a_protocol_error(exporter: SampleExporter) -> None:
    huge = b'{"account_id": "' + A.encode() + b'", "total_bytes": ' + b"9" * 5000 + b"}"
    body = _with(snapshots=[]).replace(b'"snapshots": []',
                                       b'"snapshots": [{"taken_at": "x", "samples": [' + huge
                                       + b"]}]")
    exporter.fault = _answer(200, body)
    with pytest.raises(SourceProtocolError) as caught:
        _client().fetch_page(_source(exporter.url), WINDOW, None)
    assert caught.value.field == "body"


def test_deeply_nested_json_is_a_protocol_error(exporter: SampleExporter) -> None:
    exporter.fault = _answer(200, b"[" * 100_000)
    with pytest.raises(SourceProtocolError) as caught:
        _client().fetch_page(_source(exporter.url), WINDOW, None)
    assert caught.value.field == "body"
