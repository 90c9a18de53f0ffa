"""The exporter window API over HTTP with ``requests`` (shared/spec/exporter-api.md).

Everything an exporter sends is untrusted: bodies are capped, redirects are not followed, every
exporter-supplied string embedded in an error is clipped, and one call never outlives its
``deadline`` (see :mod:`minutemeter.adapters.http_deadline`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from minutemeter.adapters.http_deadline import DeadlineWatch, watched_session
from minutemeter.domain.errors import DeadlineError, ExporterError, SourceProtocolError
from minutemeter.domain.exporter_errors import BodyTooLargeError
from minutemeter.domain.model import Page, RawSnapshot, SourceConfig, Window
from minutemeter.domain.text import clip_line, clip_value
from minutemeter.domain.timeutil import format_second

WINDOW_PATH = "/v1/usage/window"
MAX_BODY_BYTES = 32 * 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 3.05
BACKOFF_FACTOR_SECONDS = 0.25  # retry n (n >= 1) waits 0 s, then 0.5 s, 1 s, 2 s, 4 s, ...
BACKOFF_MAX_SECONDS = 4.0
MAX_RETRY_SLEEP_SECONDS = 5.0  # cap on any wait between attempts, Retry-After included
READ_CHUNK_BYTES = 64 * 1024

TokenLookup = Callable[[SourceConfig], str | None]


def _no_token(source: SourceConfig) -> str | None:
    return None


class _RetryableError(Exception):
    """One failed attempt that may be retried: ``error`` is what to raise if it is not."""

    def __init__(self, error: ExporterError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class HttpExporter:
    """The window API's pages over one ``requests.Session``: the page client
    (:class:`minutemeter.adapters.exporter_reader.ExporterPages`) that
    :class:`~minutemeter.adapters.exporter_reader.ExporterReader` pages through and checks.

    Up to ``retries`` more attempts follow a connection error, a timeout, a connection broken
    mid-body, a 5xx or a 429, after an exponential backoff or the answer's ``Retry-After``
    (delta-seconds), either capped at ``MAX_RETRY_SLEEP_SECONDS``. Every other answer fails at
    once: a 3xx (redirects are never followed, to any host), any other 4xx, a body over
    ``max_body_bytes`` (default ``MAX_BODY_BYTES``) or one that breaks the contract. With
    ``time_left`` (a deadline that far ahead on ``monotonic``'s clock) no read timeout exceeds
    the time left, no wait outlasts it, and the exchange in flight is cut when it passes:
    ``DeadlineError``.
    """

    def __init__(
        self,
        *,
        timeout_seconds: float,
        retries: int,
        token_lookup: TokenLookup = _no_token,
        session: requests.Session | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_body_bytes: int | None = None,
    ) -> None:
        self._read_timeout = timeout_seconds
        self._max_body_bytes = MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes
        self._retries = retries
        self._token_lookup = token_lookup
        self._session = session or watched_session()
        self._monotonic = monotonic
        self._sleep = sleep

    def fetch_page(
        self,
        source: SourceConfig,
        window: Window,
        cursor: str | None,
        *,
        time_left: float | None = None,
    ) -> Page:
        deadline = None if time_left is None else self._monotonic() + time_left
        params = {"since": format_second(window.since), "until": format_second(window.until)}
        if cursor is not None:
            params["cursor"] = cursor
        headers = {"Accept": "application/json"}
        token = self._token_lookup(source)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = source.url.rstrip("/") + WINDOW_PATH
        attempt = 0
        while True:
            try:
                body = self._attempt(source, window, url, params, headers, deadline)
            except _RetryableError as failure:
                if attempt >= self._retries:
                    raise failure.error from failure.__cause__
                attempt += 1
                self._wait(source, _delay(attempt, failure.retry_after), deadline, failure)
                continue
            return parse_page(body)

    def _attempt(
        self,
        source: SourceConfig,
        window: Window,
        url: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        deadline: float | None,
    ) -> bytes:
        left = self._time_left(source, deadline)
        timeout = (min(CONNECT_TIMEOUT_SECONDS, left), min(self._read_timeout, left))
        with DeadlineWatch(deadline, self._monotonic) as watch:
            try:
                with self._session.get(url, params=params, headers=headers, timeout=timeout,
                                       stream=True, allow_redirects=False) as response:
                    watch.attach(response.raw.connection)
                    body = self._answer(source, window, response, deadline)
            except requests.RequestException as exc:
                if watch.fired:
                    raise _past(source, "while talking to the exporter") from exc
                error = ExporterError(
                    f"exporter {source.source_id} unreachable: {clip_line(str(exc))}"
                )
                if isinstance(exc, requests.ConnectionError | requests.Timeout
                              | requests.exceptions.ChunkedEncodingError):
                    raise _RetryableError(error) from exc
                raise error from exc
            if watch.fired:
                raise _past(source, "while reading the exporter's answer")
            return body

    def _answer(
        self, source: SourceConfig, window: Window, response: requests.Response,
        deadline: float | None,
    ) -> bytes:
        status = response.status_code
        if 200 <= status < 300:
            return self._read_capped(source, window, response, deadline)
        if 300 <= status < 400:
            raise ExporterError(
                f"exporter {source.source_id} answered HTTP {status} (a redirect to "
                f"{_origin(response.headers.get('Location'))}), which is not followed"
            )
        error = ExporterError(
            f"exporter {source.source_id} answered HTTP {status}: "
            f"{_excerpt(_read_excerpt(response))}"
        )
        if status >= 500 or status == 429:
            raise _RetryableError(error, _retry_after(response.headers.get("Retry-After")))
        raise error

    def _read_capped(
        self, source: SourceConfig, window: Window, response: requests.Response,
        deadline: float | None,
    ) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=READ_CHUNK_BYTES):
            size += len(chunk)
            if size > self._max_body_bytes:
                raise BodyTooLargeError(self._max_body_bytes, window.since, window.until)
            chunks.append(chunk)
            if deadline is not None and self._monotonic() >= deadline:
                raise _past(source, "while reading the exporter's body")
        return b"".join(chunks)

    def _time_left(self, source: SourceConfig, deadline: float | None) -> float:
        """Seconds until ``deadline`` (infinite without one); ``DeadlineError`` once passed."""
        if deadline is None:
            return float("inf")
        left = deadline - self._monotonic()
        if left <= 0:
            raise _past(source, "before a request to the exporter")
        return left

    def _wait(
        self, source: SourceConfig, delay: float, deadline: float | None,
        failure: _RetryableError,
    ) -> None:
        if deadline is not None and self._monotonic() + delay >= deadline:
            raise DeadlineError(
                f"exporter {source.source_id}: no time left before the deadline to retry "
                f"after: {failure.error}"
            ) from failure.error
        if delay > 0:
            self._sleep(delay)


def _past(source: SourceConfig, when: str) -> DeadlineError:
    return DeadlineError(f"exporter {source.source_id}: deadline passed {when}")


def _delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based), never over the cap."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_SLEEP_SECONDS)
    if attempt <= 1:
        return 0.0
    backoff = BACKOFF_FACTOR_SECONDS * (1 << min(attempt - 1, 30))
    return min(backoff, BACKOFF_MAX_SECONDS, MAX_RETRY_SLEEP_SECONDS)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as delta-seconds; an HTTP-date or garbage counts as absent."""
    if value is None or not value.strip().isdigit():
        return None
    return float(min(int(value.strip()[:12]), 10**9))


def _origin(location: str | None) -> str:
    """The scheme, host and port of a redirect target, never its path or query."""
    if not location:
        return "nowhere"
    try:
        parts = urlsplit(location.strip())
        port = parts.port
    except ValueError:
        return "an unparsable location"
    if not parts.scheme and not parts.hostname:
        return "the same origin"
    origin = f"{parts.scheme or '?'}://{parts.hostname or '?'}"
    return clip_line(origin if port is None else f"{origin}:{port}", 100)


def parse_page(body: bytes) -> Page:
    """Shape-check a response body; the paging rules are the reader's (``PageSequence``), the
    sample checks the service's (``domain.validation``)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, >4300-digit ints, nesting
        raise SourceProtocolError(
            f"exporter body is not usable JSON ({type(exc).__name__}): {_excerpt(body)}",
            field="body",
        ) from exc
    if not isinstance(document, dict):
        raise SourceProtocolError("exporter body is not a JSON object", field="body")
    node_id = _required(document, "node_id", str)
    env = _required(document, "env", str)
    snapshots = _required(document, "snapshots", list)
    has_more = _required(document, "has_more", bool)
    next_cursor = document.get("next_cursor")
    if next_cursor is not None and not isinstance(next_cursor, str):
        raise SourceProtocolError(
            "next_cursor must be a string", field="next_cursor", value=clip_value(next_cursor)
        )
    raw_snapshots = []
    for index, snapshot in enumerate(snapshots):
        if not isinstance(snapshot, dict) or not isinstance(snapshot.get("samples"), list):
            raise SourceProtocolError(
                f"snapshot {index} is not an object with a samples list",
                field=f"snapshots[{index}]",
            )
        raw_snapshots.append(
            RawSnapshot(taken_at=snapshot.get("taken_at"), samples=tuple(snapshot["samples"]))
        )
    return Page(
        node_id=node_id,
        env=env,
        snapshots=tuple(raw_snapshots),
        has_more=has_more,
        next_cursor=next_cursor,
        digest=hashlib.sha256(body).hexdigest(),
    )


def _required(document: dict[str, Any], name: str, kind: type) -> Any:
    value = document.get(name)
    if not isinstance(value, kind):
        raise SourceProtocolError(
            f"field {name!r} missing or not a {kind.__name__}", field=name,
            value=clip_value(value),
        )
    return value


def _read_excerpt(response: requests.Response) -> bytes:
    """The start of an error body: enough for a log line, never the whole of a large one."""
    for chunk in response.iter_content(chunk_size=512):
        return bytes(chunk)
    return b""


def _excerpt(body: bytes) -> str:
    return clip_line(body[:200].decode("utf-8", errors="replace"))
