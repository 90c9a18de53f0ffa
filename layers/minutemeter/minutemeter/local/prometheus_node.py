"""A simulated storage node for a local Prometheus to scrape: ``/metrics`` on 127.0.0.1.

Each bucket (named by its account UUID) has a cumulative byte counter,
``mm_bucket_received_bytes_total{bucket="<uuid>"}``. While :attr:`SimulatedNode.running`, every
scrape first adds a deterministic increment to each counter, then answers: so every increment
is in a value Prometheus reads, and :attr:`increments` (per bucket, all increments ever made) is
exactly what a correct biller charges once the baseline is taken before the first increment.
:meth:`go_down` makes scrapes fail (Prometheus marks the series stale), :meth:`restart` brings
the node back with every counter at zero (a process restart), optionally with new buckets.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

METRIC = "mm_bucket_received_bytes"


class SimulatedNode:
    """The node's counters and its ``/metrics`` endpoint (see the module)."""

    def __init__(self, buckets: Iterable[str], *, initial: int = 1000, seed: int = 7) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._values = {bucket: initial for bucket in buckets}
        self.increments = dict.fromkeys(self._values, 0)
        self.running = False
        self.down = False
        self.scrapes = 0  # answered scrapes
        self.failed_scrapes = 0
        self._server: ThreadingHTTPServer | None = None

    def values(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)

    def go_down(self) -> None:
        with self._lock:
            self.down = True

    def restart(self, new_buckets: Iterable[str] = ()) -> None:
        """Up again, every counter (and each new bucket's) back at zero."""
        with self._lock:
            for bucket in new_buckets:
                self.increments.setdefault(bucket, 0)
            self._values = dict.fromkeys(self.increments, 0)
            self.down = False

    def exposition(self) -> bytes | None:
        """One scrape's answer (None: the node is down)."""
        with self._lock:
            if self.down:
                self.failed_scrapes += 1
                return None
            if self.running:
                for bucket in self._values:
                    step = self._rng.choice((0, 1, 512, 4096, 1_048_576))
                    self._values[bucket] += step
                    self.increments[bucket] += step
            self.scrapes += 1
            lines = [f"# TYPE {METRIC}_total counter"]
            lines += [f'{METRIC}_total{{bucket="{b}"}} {v}' for b, v in self._values.items()]
        return ("\n".join(lines) + "\n").encode()

    @property
    def target(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> SimulatedNode:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = node.exposition() if self.path.startswith("/metrics") else b""
                status = 200 if body else 503
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
