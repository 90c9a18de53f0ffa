"""What the local billing servers (``stripe_server.py``, ``lago_server.py``) share: a threaded
HTTP server on 127.0.0.1, its lifecycle, the "store, then stall the answer" knob, and the
request plumbing. Each server parses its own body (form or JSON) and answers in ``respond``."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlparse

Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON document, extra headers


class LocalApiServer:
    """``start()`` binds 127.0.0.1 (``port`` 0: a free one) and serves in a daemon thread."""

    def __init__(self, port: int = 0) -> None:
        self.requests = 0
        self._stalls = 0
        self._stall_seconds = 0.0
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True

    # -- what each server defines ------------------------------------------------------------
    def parse_body(self, raw: bytes) -> Any:
        """The request body as ``respond`` takes it."""
        raise NotImplementedError

    def respond(self, method: str, path: str, body: Any, auth: str | None) -> Answer:
        raise NotImplementedError

    def answer_headers(self) -> dict[str, str]:
        """Headers every answer carries (asked after ``respond``)."""
        return {}

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()  # free any stalled answer
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` (or Ctrl-C)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the stall knob ----------------------------------------------------------------------
    def stall_next(self, count: int, seconds: float) -> None:
        """For the next ``count`` requests: handle them (store the event), then hold the answer
        ``seconds`` before sending it: the client times out after the server accepted."""
        with self._lock:
            self._stalls, self._stall_seconds = count, seconds

    def _take_stall(self) -> float:
        with self._lock:
            if self._stalls <= 0:
                return 0.0
            self._stalls -= 1
            return self._stall_seconds

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = server.parse_body(self.rfile.read(length) if length else b"")
                status, document, headers = server.respond(
                    method, urlparse(self.path).path, body, self.headers.get("Authorization"))
                stall = server._take_stall()
                if stall:
                    server._released.wait(stall)
                payload = json.dumps(document).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in {**server.answer_headers(), **headers}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout): what it sent stays stored

            def do_POST(self) -> None:
                self._serve("POST")

            def do_GET(self) -> None:
                self._serve("GET")

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
