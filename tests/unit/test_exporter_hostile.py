"""HttpExporter against hostile exporters on 127.0.0.1: slow bodies and headers, long
Retry-After, redirects, huge strings and huge bodies.

Every request crosses a real socket to a scripted ``ThreadingHTTPServer``; nothing is patched
except the body cap (to keep bodies small) and the sleep between retries (recorded, not slept).
Deadlines are absolute ``time.monotonic()`` times; the elapsed-time assertions check that a
deadline holds (deadline 2 s, generous slack), not how fast anything is.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from minutemeter.adapters import exporter_http
from minutemeter.adapters.exporter_http import MAX_RETRY_SLEEP_SECONDS, HttpExporter
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.domain.errors import DeadlineError, ExporterError, SourceProtocolError
from minutemeter.domain.exporter_errors import BodyTooLargeError
from minutemeter.domain.model import SourceConfig, Window
from minutemeter.local.ddb import free_port
from minutemeter.ports import CounterIdentity

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(minutes=15))
GOOD = json.dumps({"node_id": "node-a", "env": "prod", "snapshots": [], "has_more": False,
                   "next_cursor": ""}).encode()
DEADLINE_SECONDS = 2.0
SLACK_LIMIT_SECONDS = 6.0  # the call must be over well before this (deadline + slack)
HUGE = "x" * 600_000

Script = Callable[[BaseHTTPRequestHandler, int], None]


class ScriptedServer:
    """An HTTP server on 127.0.0.1 whose GET handler runs ``script(handler, request_number)``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                # The client cutting us off (a deadline, a refused redirect) is expected.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.script(self, len(server.paths) - 1)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
         headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def good(handler: BaseHTTPRequestHandler, number: int) -> None:
    send(handler, 200, GOOD)


@pytest.fixture
def stop() -> threading.Event:
    """Set when the test ends: scripts that stall or trickle wait on it, so they end too."""
    return threading.Event()


@pytest.fixture
def serve(stop: threading.Event) -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        servers.append(ScriptedServer(script).__enter__())
        return servers[-1]

    yield start
    stop.set()
    for server in servers:
        server.__exit__()


def _source(url: str) -> SourceConfig:
    return SourceConfig(source_id="s1", url=url, start=T0)


def _client(retries: int = 0, timeout: float = 5.0, **kwargs: Any) -> HttpExporter:
    return HttpExporter(timeout_seconds=timeout, retries=retries, **kwargs)


def _fetch_within_deadline(client: HttpExporter, url: str) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(DeadlineError) as caught:
        client.fetch_page(_source(url), WINDOW, None, time_left=DEADLINE_SECONDS)
    return caught.value, time.monotonic() - started


# -- 1. an overall deadline -------------------------------------------------------------------
def test_a_body_trickling_one_byte_every_two_seconds_stops_at_the_deadline(
    serve: Callable[[Script], ScriptedServer], stop: threading.Event
) -> None:
    def trickle(handler: BaseHTTPRequestHandler, number: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        while not stop.is_set():
            handler.wfile.write(b" ")
            stop.wait(2.0)

    server = serve(trickle)
    # The read timeout (5 s) is longer than the gap between bytes: only a deadline stops this.
    error, elapsed = _fetch_within_deadline(_client(retries=3, timeout=5.0), server.url)
    assert elapsed < SLACK_LIMIT_SECONDS
    assert len(server.paths) == 1  # not retried once the deadline has passed
    assert "deadline" in str(error)


def test_headers_trickling_one_byte_every_two_seconds_stop_at_the_deadline(
    serve: Callable[[Script], ScriptedServer], stop: threading.Event
) -> None:
    def trickle(handler: BaseHTTPRequestHandler, number: int) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():
            handler.wfile.write(b"X")
            stop.wait(2.0)

    server = serve(trickle)
    _, elapsed = _fetch_within_deadline(_client(retries=3, timeout=5.0), server.url)
    assert elapsed < SLACK_LIMIT_SECONDS


def test_the_read_timeout_never_exceeds_the_time_left(
    serve: Callable[[Script], ScriptedServer], stop: threading.Event
) -> None:
    def stall(handler: BaseHTTPRequestHandler, number: int) -> None:
        stop.wait(30.0)

    server = serve(stall)
    _, elapsed = _fetch_within_deadline(_client(retries=0, timeout=30.0), server.url)
    assert elapsed < SLACK_LIMIT_SECONDS


def test_the_reader_hands_each_request_its_time_left_and_stops_at_the_deadline(
    serve: Callable[[Script], ScriptedServer], stop: threading.Event
) -> None:
    # GIVEN an exporter whose body trickles, read through the exporter kind's reader
    def trickle(handler: BaseHTTPRequestHandler, number: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        while not stop.is_set():
            handler.wfile.write(b" ")
            stop.wait(2.0)

    server = serve(trickle)
    read = ExporterReader(_client(retries=3, timeout=5.0)).read(
        _source(server.url), CounterIdentity(node_id=None, env=None), WINDOW,
        before_request=lambda: None, time_left=lambda: DEADLINE_SECONDS)
    started = time.monotonic()
    # WHEN it is read, THEN the deadline holds there too
    with pytest.raises(DeadlineError):
        list(read)
    assert time.monotonic() - started < SLACK_LIMIT_SECONDS
    assert len(server.paths) == 1 and read.pages == 0


def test_a_deadline_already_passed_sends_no_request(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(good)
    with pytest.raises(DeadlineError):
        _client().fetch_page(_source(server.url), WINDOW, None, time_left=-1)
    assert server.paths == []


def test_a_deadline_that_holds_changes_nothing(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(good)
    client = _client()
    for _ in range(3):  # the same pooled connection, watched each time
        page = client.fetch_page(_source(server.url), WINDOW, None,
                                 time_left=30)
        assert page.node_id == "node-a"
    assert len(server.paths) == 3


# -- 2. Retry-After is capped and never outlasts the deadline --------------------------------
def _busy_then_good(status: int, retry_after: str) -> Script:
    def script(handler: BaseHTTPRequestHandler, number: int) -> None:
        if number == 0:
            send(handler, status, b'{"error":"busy"}', {"Retry-After": retry_after})
        else:
            good(handler, number)

    return script


def test_a_retry_after_of_an_hour_waits_only_the_cap(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(_busy_then_good(503, "3600"))
    slept: list[float] = []
    page = _client(retries=2, sleep=slept.append).fetch_page(_source(server.url), WINDOW, None)
    assert page.node_id == "node-a"
    assert slept == [MAX_RETRY_SLEEP_SECONDS]
    assert MAX_RETRY_SLEEP_SECONDS <= 5.0
    assert len(server.paths) == 2


def test_a_retry_after_past_the_deadline_is_not_waited_for(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(_busy_then_good(503, "3600"))
    error, elapsed = _fetch_within_deadline(_client(retries=2), server.url)
    assert elapsed < SLACK_LIMIT_SECONDS
    assert "HTTP 503" in str(error)
    assert len(server.paths) == 1


def test_429_is_retried_after_its_retry_after(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(_busy_then_good(429, "1"))
    slept: list[float] = []
    page = _client(retries=1, sleep=slept.append).fetch_page(_source(server.url), WINDOW, None)
    assert page.node_id == "node-a"
    assert slept == [1.0]
    assert len(server.paths) == 2


def test_429_forever_fails_after_retries_plus_one_attempts(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(lambda handler, number: send(handler, 429, b"slow down"))
    slept: list[float] = []
    with pytest.raises(ExporterError, match="HTTP 429: slow down") as caught:
        _client(retries=2, sleep=slept.append).fetch_page(_source(server.url), WINDOW, None)
    assert type(caught.value) is ExporterError
    assert len(server.paths) == 3
    assert slept == [0.5]  # the backoff (no Retry-After): the first retry is immediate


# -- 3. redirects are not followed ----------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_not_followed(
    serve: Callable[[Script], ScriptedServer], status: int
) -> None:
    elsewhere = serve(good)
    location = elsewhere.url + "/steal?token=" + "y" * 5000

    def redirect(handler: BaseHTTPRequestHandler, number: int) -> None:
        send(handler, status, b"secret body " * 100, {"Location": location})

    server = serve(redirect)
    with pytest.raises(ExporterError) as caught:
        _client(retries=2).fetch_page(_source(server.url), WINDOW, None)
    message = str(caught.value)
    assert type(caught.value) is ExporterError
    assert f"HTTP {status}" in message and elsewhere.url in message
    assert "steal" not in message and "secret" not in message and len(message) < 400
    assert elsewhere.paths == []
    assert len(server.paths) == 1


def test_a_same_origin_redirect_is_not_followed_either(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(lambda handler, number: (
        send(handler, 302, b"", {"Location": "/v1/usage/window2"}) if number == 0
        else good(handler, number)
    ))
    with pytest.raises(ExporterError, match="HTTP 302"):
        _client().fetch_page(_source(server.url), WINDOW, None)
    assert len(server.paths) == 1


# -- 4. exporter-supplied text is clipped in errors -------------------------------------------
def test_a_huge_cursor_does_not_make_a_huge_unreachable_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ExporterError, match="unreachable") as caught:
        _client(retries=0).fetch_page(_source(url), WINDOW, HUGE)
    assert len(str(caught.value)) < 1000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"node_id": [HUGE]}, "node_id"),
        ({"env": {"k": HUGE}}, "env"),
        ({"has_more": HUGE}, "has_more"),
        ({"snapshots": HUGE}, "snapshots"),
        ({"next_cursor": [HUGE] * 3}, "next_cursor"),
    ],
)
def test_huge_values_are_clipped_on_protocol_errors(
    serve: Callable[[Script], ScriptedServer], changes: dict[str, object], field: str
) -> None:
    document = {**json.loads(GOOD), **changes}
    body = json.dumps(document).encode()
    server = serve(lambda handler, number: send(handler, 200, body))
    with pytest.raises(SourceProtocolError) as caught:
        _client().fetch_page(_source(server.url), WINDOW, None)
    assert caught.value.field == field
    assert len(str(caught.value)) < 1000
    assert len(repr(caught.value.value)) < 1000


@pytest.mark.parametrize("status", [200, 404, 500])
def test_a_huge_body_never_makes_a_huge_message(
    serve: Callable[[Script], ScriptedServer], status: int
) -> None:
    body = b"<html>" + HUGE.encode()
    server = serve(lambda handler, number: send(handler, status, body))
    with pytest.raises(ExporterError) as caught:
        _client(retries=0).fetch_page(_source(server.url), WINDOW, None)
    assert len(str(caught.value)) < 1000


# -- 5. the body cap is a BodyTooLargeError that says what to do ------------------------------
def test_a_body_over_the_cap_is_body_too_large(
    serve: Callable[[Script], ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporter_http, "MAX_BODY_BYTES", 1000)
    server = serve(lambda handler, number: send(handler, 200, b" " * 200_000 + GOOD))
    with pytest.raises(BodyTooLargeError) as caught:
        _client().fetch_page(_source(server.url), WINDOW, None)
    error = caught.value
    assert isinstance(error, SourceProtocolError) and error.field == "body"
    assert (error.limit_bytes, error.since, error.until) == (1000, WINDOW.since, WINDOW.until)
    assert str(error) == (
        "the exporter sent more than 1000 bytes for window [2026-11-22T10:00:00Z, "
        "2026-11-22T10:15:00Z); make it page (has_more/next_cursor) or lower the source's "
        "--max-window"
    )


def test_a_gzip_bomb_is_body_too_large(
    serve: Callable[[Script], ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporter_http, "MAX_BODY_BYTES", 1024 * 1024)
    bomb = gzip.compress(b" " * (8 * 1024 * 1024) + GOOD)  # 8 MiB from about 8 KiB
    server = serve(lambda handler, number: send(handler, 200, bomb, {"Content-Encoding": "gzip"}))
    with pytest.raises(BodyTooLargeError):
        _client().fetch_page(_source(server.url), WINDOW, None)


def test_an_error_body_stays_on_one_line(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(lambda handler, number: send(handler, 400, b'{\n  "error":\r\n"no\x1b[31m"}'))
    with pytest.raises(ExporterError) as caught:
        _client().fetch_page(_source(server.url), WINDOW, None)
    assert str(caught.value) == 'exporter s1 answered HTTP 400: {   "error":  "no?[31m"}'
