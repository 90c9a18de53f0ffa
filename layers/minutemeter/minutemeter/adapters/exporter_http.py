"""The exporter window API over HTTP with ``requests`` (shared/spec/exporter-api.md)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from minutemeter.domain.errors import ExporterError, SourceProtocolError
from minutemeter.domain.model import Page, RawSnapshot, SourceConfig, Window
from minutemeter.domain.timeutil import format_second

WINDOW_PATH = "/v1/usage/window"
MAX_BODY_BYTES = 32 * 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 3.05

TokenLookup = Callable[[SourceConfig], str | None]


def _no_token(source: SourceConfig) -> str | None:
    return None


class HttpExporter:
    """:class:`minutemeter.ports.Exporter` over one ``requests.Session``.

    Retries (with exponential backoff) only connection errors, read timeouts and 5xx answers;
    a 4xx is the exporter telling us something is wrong and fails at once.
    """

    def __init__(
        self,
        *,
        timeout_seconds: float,
        retries: int,
        token_lookup: TokenLookup = _no_token,
        session: requests.Session | None = None,
    ) -> None:
        self._timeout = (CONNECT_TIMEOUT_SECONDS, timeout_seconds)
        self._token_lookup = token_lookup
        self._session = session or _session(retries)

    def fetch_page(self, source: SourceConfig, window: Window, cursor: str | None) -> Page:
        params = {"since": format_second(window.since), "until": format_second(window.until)}
        if cursor is not None:
            params["cursor"] = cursor
        headers = {"Accept": "application/json"}
        token = self._token_lookup(source)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = source.url.rstrip("/") + WINDOW_PATH
        try:
            with self._session.get(
                url, params=params, headers=headers, timeout=self._timeout, stream=True
            ) as response:
                status = response.status_code
                body = _read_capped(response) if 200 <= status < 300 else _read_excerpt(response)
        except requests.RequestException as exc:
            raise ExporterError(f"exporter {source.source_id} unreachable: {exc}") from exc
        if not 200 <= status < 300:
            raise ExporterError(
                f"exporter {source.source_id} answered HTTP {status}: {_excerpt(body)}"
            )
        return parse_page(body)


def parse_page(body: bytes) -> Page:
    """Shape-check a response body; content checks are the domain's (validation, protocol)."""
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
            "next_cursor must be a string", field="next_cursor", value=next_cursor
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
            f"field {name!r} missing or not a {kind.__name__}", field=name, value=value
        )
    return value


def _read_capped(response: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise SourceProtocolError(
                f"exporter body larger than {MAX_BODY_BYTES} bytes", field="body"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _read_excerpt(response: requests.Response) -> bytes:
    """The start of an error body: enough for a log line, never the whole of a large one."""
    for chunk in response.iter_content(chunk_size=512):
        return bytes(chunk)
    return b""


def _excerpt(body: bytes) -> str:
    return body[:200].decode("utf-8", errors="replace")


def _session(retries: int) -> requests.Session:
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=0.25,
        backoff_max=4.0,
        status_forcelist=tuple(range(500, 600)),
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
