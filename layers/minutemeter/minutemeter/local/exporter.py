"""A sample exporter: a real HTTP server on 127.0.0.1 that speaks the window API.

Used by ``make demo``, the tests and the benchmarks. Histories are either synthetic (counters
that grow by pseudo-random amounts, optional resets) or given snapshot by snapshot, raw, so that
tests can send exactly the garbage an exporter in the wild sends. A ``fault`` hook lets a test
replace any response.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

RawSnapshot = dict[str, Any]
Positioned = tuple[datetime, RawSnapshot]
FaultResponse = tuple[int, bytes]
Fault = Callable[[int, Mapping[str, str], dict[str, Any]], FaultResponse | None]


def rfc3339(moment: datetime) -> str:
    """Millisecond RFC 3339, as many exporters write it."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class SyntheticCounters:
    """Cumulative counters per account, a snapshot every ``interval`` from ``origin``.

    Snapshot ``k`` is taken at ``origin + k * interval + jitter(k)``; each account grows by a
    pseudo-random amount per snapshot (``seed``-determined); an account listed in ``resets``
    restarts near zero at the first snapshot at or after its reset time; an account in ``appear``
    is absent before that snapshot index. ``live_clock``, when
    given, hides snapshots taken after its ``now()`` (a live exporter).
    """

    accounts: Sequence[str]
    origin: datetime
    interval: timedelta = timedelta(seconds=15)
    seed: int = 7
    max_increase: int = 5_000_000
    resets: Mapping[str, datetime] = field(default_factory=dict)
    appear: Mapping[str, int] = field(default_factory=dict)
    live_clock: Callable[[], datetime] | None = None
    end: datetime | None = None
    _values: list[dict[str, int]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def taken_at(self, k: int) -> datetime:
        jitter_ms = random.Random(self.seed * 1_000_003 + k).randrange(0, 900)
        return self.origin + k * self.interval + timedelta(milliseconds=jitter_ms)

    def values(self, k: int) -> dict[str, int]:
        with self._lock:
            while len(self._values) <= k:
                index = len(self._values)
                previous = self._values[-1] if self._values else {}
                rng = random.Random(self.seed * 7_919 + index)
                moment = self.taken_at(index)
                prior = self.taken_at(index - 1) if index else None
                current = {}
                for account in self.accounts:
                    if index < self.appear.get(account, 0):
                        continue
                    reset_at = self.resets.get(account)
                    if reset_at is not None and prior is not None and prior < reset_at <= moment:
                        current[account] = rng.randrange(0, 1000)
                    else:
                        base = previous.get(account, rng.randrange(0, 10**9))
                        current[account] = base + rng.randrange(0, self.max_increase)
                self._values.append(current)
            return dict(self._values[k])

    def snapshots(
        self, since: datetime, until: datetime, limit: int | None = None
    ) -> list[Positioned]:
        """Snapshots with ``since <= taken_at < until`` (and not in the live future); the first
        ``limit`` of them when given (a page needs no more, however long the window)."""
        stop = until
        if self.live_clock is not None:
            stop = min(stop, self.live_clock() + timedelta(microseconds=1))
        if self.end is not None:
            stop = min(stop, self.end)
        k = max(0, int((since - self.origin) / self.interval) - 1)
        out: list[Positioned] = []
        while limit is None or len(out) < limit:
            moment = self.taken_at(k)
            if moment >= stop:
                break
            if moment >= since:
                values = self.values(k)
                out.append((moment, {
                    "taken_at": rfc3339(moment),
                    "samples": [
                        {"account_id": a, "total_bytes": v} for a, v in values.items()
                    ],
                }))
            k += 1
        return out

    def history(self, until: datetime) -> list[tuple[datetime, dict[str, int]]]:
        """Every snapshot before ``until`` as (taken_at, values): the input of the oracle."""
        return [
            (moment, {s["account_id"]: s["total_bytes"] for s in raw["samples"]})
            for moment, raw in self.snapshots(self.origin, until)
        ]


@dataclass
class StaticHistory:
    """Snapshots given one by one: (position time, raw snapshot JSON object)."""

    items: list[Positioned]

    def snapshots(
        self, since: datetime, until: datetime, limit: int | None = None
    ) -> list[Positioned]:
        ordered = sorted(self.items, key=lambda p: p[0])
        found = [(t, raw) for t, raw in ordered if since <= t < until]
        return found if limit is None else found[:limit]


class SampleExporter:
    """The HTTP server. ``start()`` binds 127.0.0.1 on a free port in a daemon thread."""

    def __init__(
        self,
        history: SyntheticCounters | StaticHistory,
        *,
        node_id: str = "node-a",
        env: str = "prod",
        page_size: int = 40,
        token: str | None = None,
        fault: Fault | None = None,
        port: int = 0,
    ) -> None:
        self.history = history
        self.node_id = node_id
        self.env = env
        self.page_size = page_size
        self.token = token
        self.fault = fault
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SampleExporter:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread (``minutemeter dev exporter``) until :meth:`stop` is called
        from another thread or an exception (Ctrl-C's ``KeyboardInterrupt``) ends it; the
        socket is closed either way."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def __enter__(self) -> SampleExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def respond(self, path: str, query: Mapping[str, str], auth: str | None) -> FaultResponse:
        """Build the response for one request (the HTTP handler only transports it)."""
        with self._lock:
            number = len(self.requests)
            self.requests.append(dict(query))
        if path != "/v1/usage/window":
            return 404, b'{"error":"not found"}'
        if self.token is not None and auth != f"Bearer {self.token}":
            return 401, b'{"error":"unauthorized"}'
        try:
            since, until = parse_time(query["since"]), parse_time(query["until"])
            cursor = parse_time(query["cursor"]) if query.get("cursor") else None
            limit = int(query.get("limit", self.page_size))
        except (KeyError, ValueError):
            return 400, b'{"error":"bad query"}'
        start = cursor or since
        # One snapshot past the page says whether there is more and where the next page starts
        # (a negative limit slices from the end, as before: then every snapshot is needed).
        wanted = limit + 1 if limit >= 0 else None
        items = self.history.snapshots(start, until, limit=wanted) if start < until else []
        page, rest = items[:limit], items[limit:]
        document: dict[str, Any] = {
            "node_id": self.node_id,
            "env": self.env,
            "snapshots": [raw for _, raw in page],
            "has_more": bool(rest),
            "next_cursor": rfc3339(rest[0][0]) if rest else "",
        }
        if self.fault is not None:
            custom = self.fault(number, query, document)
            if custom is not None:
                return custom
        return 200, json.dumps(document).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
                status, body = exporter.respond(
                    parsed.path, query, self.headers.get("Authorization")
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (a killed collector, a timeout): nothing to do

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def account_ids(count: int, seed: int = 1) -> list[str]:
    """``count`` stable UUID-shaped account ids."""
    out = []
    for i in range(count):
        digest = hashlib.sha256(f"account-{seed}-{i}".encode()).hexdigest()
        out.append(f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}")
    return out
