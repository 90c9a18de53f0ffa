"""A scripted HTTP server on 127.0.0.1 standing in for Prometheus' API in the error tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Seen:
    """One request as the stub received it."""

    method: str
    path: str  # with the raw query string
    headers: dict[str, str]


Answer = tuple[int, dict[str, str], bytes]
Responder = Callable[[Seen], Answer]


def json_answer(status: int, document: Any) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(document).encode()


def matrix(series: list[dict[str, Any]]) -> Answer:
    return json_answer(200, {"status": "success",
                             "data": {"resultType": "matrix", "result": series}})


@dataclass
class StubPrometheus:
    """Answers each request with ``responder(request)``; keeps every request in ``seen``."""

    responder: Responder
    seen: list[Seen] = field(default_factory=list)

    def __enter__(self) -> StubPrometheus:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                request = Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
                stub.seen.append(request)
                status, headers, body = stub.responder(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
