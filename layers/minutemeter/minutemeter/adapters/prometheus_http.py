"""The Prometheus HTTP API's instant query (``GET /api/v1/query``) over ``requests``.

One call is one PromQL expression evaluated at one instant; the answer's ``data.result`` is
returned once the envelope is checked. Like the exporter's client
(:mod:`minutemeter.adapters.exporter_http`): bodies are capped (:class:`BodyTooLargeError`, the
collector then halves the window), redirects are not followed, anything the server sends that
ends up in an error is clipped, no call outlives its ``time_left`` (a
:class:`~minutemeter.adapters.http_deadline.DeadlineWatch`), and a connection error, a timeout,
a 429 or a 5xx is retried ``retries`` times with a capped exponential backoff.

Prometheus' own failures are typed (:class:`PrometheusQueryError`, an ``ExporterError``): an
answer with ``status: error`` (``errorType`` ``bad_data``, ``execution``, ``timeout``, ...), any
other 4xx, and a successful answer that carries ``warnings`` (a partial result, e.g. a remote
store that did not answer, must not be billed). The run fails and nothing moves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests

from minutemeter.adapters.http_deadline import DeadlineWatch, watched_session
from minutemeter.adapters.prometheus_auth import Authenticator
from minutemeter.domain.errors import DeadlineError, ExporterError, SourceProtocolError
from minutemeter.domain.exporter_errors import BodyTooLargeError
from minutemeter.domain.model import SourceConfig
from minutemeter.domain.text import clip_line

QUERY_PATH = "/api/v1/query"
MAX_BODY_BYTES = 32 * 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 3.05
BACKOFF_FACTOR_SECONDS = 0.25  # retry n (n >= 1) waits 0 s, then 0.5 s, 1 s, 2 s, 4 s
MAX_RETRY_SLEEP_SECONDS = 4.0
READ_CHUNK_BYTES = 64 * 1024


class PrometheusQueryError(ExporterError):
    """Prometheus refused or failed a query: ``status`` is the HTTP status, ``error_type`` the
    API's ``errorType`` (``bad_data``, ``execution``, ``timeout``, ``warnings`` for a result
    with warnings, ``http`` when the body said nothing)."""

    def __init__(self, source_id: str, *, status: int, error_type: str, detail: str) -> None:
        super().__init__(
            f"prometheus source {source_id!r}: HTTP {status}, {error_type}: {clip_line(detail)}"
        )
        self.source_id = source_id
        self.status = status
        self.error_type = error_type


class _Retryable(Exception):
    def __init__(self, error: ExporterError) -> None:
        super().__init__(str(error))
        self.error = error


class PrometheusHttp:
    """Instant queries against one source's Prometheus API base URL (``source.url``; a
    workspace URL ``.../workspaces/ws-.../`` for Amazon Managed Service for Prometheus)."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        retries: int,
        auth: Authenticator,
        session: requests.Session | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_body_bytes: int | None = None,
    ) -> None:
        self._read_timeout = timeout_seconds
        self._retries = retries
        self._auth = auth
        self._session = session or watched_session()
        self._monotonic = monotonic
        self._sleep = sleep
        self.max_body_bytes = MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes

    def query(
        self,
        source: SourceConfig,
        promql: str,
        at_ms: int | None,
        *,
        time_left: float | None,
        window: tuple[datetime, datetime],
    ) -> tuple[str, list[Any]]:
        """``promql`` evaluated at ``at_ms`` (Unix milliseconds; None: the server's now):
        the result type and the result list, numbers as ``Decimal``. ``window`` names the
        interval the query reads, for :class:`BodyTooLargeError`."""
        deadline = None if time_left is None else self._monotonic() + time_left
        params = [("query", promql)]
        if at_ms is not None:
            params.append(("time", f"{at_ms // 1000}.{at_ms % 1000:03d}"))
        query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in params)
        url = f"{source.url.rstrip('/')}{QUERY_PATH}?{query}"
        attempt = 0
        while True:
            try:
                body = self._attempt(source, url, deadline, window)
                return _result(source, body)
            except _Retryable as failure:
                if attempt >= self._retries:
                    raise failure.error from failure.__cause__
                attempt += 1
                delay = 0.0 if attempt <= 1 else min(
                    BACKOFF_FACTOR_SECONDS * (1 << min(attempt - 1, 10)), MAX_RETRY_SLEEP_SECONDS)
                if deadline is not None and self._monotonic() + delay >= deadline:
                    raise DeadlineError(
                        f"prometheus source {source.source_id!r}: no time left to retry after: "
                        f"{failure.error}") from failure.error
                if delay > 0:
                    self._sleep(delay)

    def _attempt(
        self, source: SourceConfig, url: str, deadline: float | None,
        window: tuple[datetime, datetime],
    ) -> bytes:
        left = float("inf") if deadline is None else deadline - self._monotonic()
        if left <= 0:
            raise _past(source, "before a query")
        headers = {"Accept": "application/json", **self._auth.headers(source, url)}
        timeout = (min(CONNECT_TIMEOUT_SECONDS, left), min(self._read_timeout, left))
        with DeadlineWatch(deadline, self._monotonic) as watch:
            try:
                with self._session.get(url, headers=headers, timeout=timeout, stream=True,
                                       allow_redirects=False) as response:
                    watch.attach(response.raw.connection)
                    status = response.status_code
                    body = self._read_capped(response, window, deadline, source)
            except requests.RequestException as exc:
                if watch.fired:
                    raise _past(source, "while talking to Prometheus") from exc
                error = ExporterError(f"prometheus source {source.source_id!r} unreachable: "
                                      f"{clip_line(str(exc))}")
                if isinstance(exc, requests.ConnectionError | requests.Timeout
                              | requests.exceptions.ChunkedEncodingError):
                    raise _Retryable(error) from exc
                raise error from exc
            if watch.fired:
                raise _past(source, "while reading Prometheus' answer")
        if 200 <= status < 300:
            return body
        error = _error_of(source, status, body)
        if status >= 500 or status == 429:
            raise _Retryable(error)
        raise error

    def _read_capped(
        self, response: requests.Response, window: tuple[datetime, datetime],
        deadline: float | None, source: SourceConfig,
    ) -> bytes:
        if 300 <= response.status_code < 400:
            return b""  # a redirect is never followed: its body is not needed
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=READ_CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_body_bytes:
                if response.status_code >= 300:
                    break  # an error body: its start says enough
                raise BodyTooLargeError(self.max_body_bytes, *window)
            chunks.append(chunk)
            if deadline is not None and self._monotonic() >= deadline:
                raise _past(source, "while reading Prometheus' body")
        return b"".join(chunks)


def _past(source: SourceConfig, when: str) -> DeadlineError:
    return DeadlineError(f"prometheus source {source.source_id!r}: deadline passed {when}")


def _document(body: bytes) -> Any:
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=Decimal)
    except (ValueError, RecursionError):
        return None


def _error_of(source: SourceConfig, status: int, body: bytes) -> PrometheusQueryError:
    """A non-2xx answer as a typed error: the API's ``errorType`` and ``error`` if it sent
    them (status 400 ``bad_data``, 422 ``execution``, 503 ``timeout``...)."""
    document = _document(body)
    if isinstance(document, dict) and isinstance(document.get("errorType"), str):
        return PrometheusQueryError(source.source_id, status=status,
                                    error_type=clip_line(document["errorType"], 40),
                                    detail=str(document.get("error", "")))
    if 300 <= status < 400:
        return PrometheusQueryError(source.source_id, status=status, error_type="redirect",
                                    detail="redirects are not followed")
    return PrometheusQueryError(source.source_id, status=status, error_type="http",
                                detail=body[:200].decode("utf-8", errors="replace"))


def _result(source: SourceConfig, body: bytes) -> tuple[str, list[Any]]:
    """The ``data`` of a 2xx answer, after the envelope is checked."""
    document = _document(body)
    if not isinstance(document, dict):
        raise SourceProtocolError(
            f"prometheus source {source.source_id!r}: the answer is not a JSON object",
            field="body")
    if document.get("status") != "success":
        raise PrometheusQueryError(
            source.source_id, status=200,
            error_type=clip_line(str(document.get("errorType", "status")), 40),
            detail=str(document.get("error", f"status {document.get('status')!r}")))
    warnings = document.get("warnings")
    if warnings:
        raise PrometheusQueryError(source.source_id, status=200, error_type="warnings",
                                   detail="; ".join(str(w) for w in warnings)[:300])
    data = document.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("result"), list):
        raise SourceProtocolError(
            f"prometheus source {source.source_id!r}: data.result is missing", field="data")
    kind = data.get("resultType")
    return (kind if isinstance(kind, str) else ""), data["result"]
