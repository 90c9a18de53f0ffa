"""An overall deadline for one HTTP exchange over ``requests``.

``requests`` (and urllib3 under it) only bound each socket operation: a peer that sends one byte
of its status line, headers or body every few seconds never trips a read timeout and can hold a
caller for as long as it likes. :class:`DeadlineWatch` bounds the whole exchange: a timer
thread shuts the socket of the request in flight down when the deadline passes, which wakes the
blocked read at once (it then fails, or ends early); the caller checks :attr:`fired` to tell
that apart from a genuine transport failure.

Sessions built by :func:`watched_session` let the watch find the connection as soon as a request
is sent (so status line and headers are covered too); with any other session the caller attaches
``response.raw.connection`` after the headers, which covers the body only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

# The watch of the exchange this thread is running, set only inside ``with DeadlineWatch``.
_in_flight = threading.local()


class DeadlineWatch:
    """Context manager: shut the exchange's socket down at ``deadline`` (``monotonic`` clock).

    With ``deadline=None`` it does nothing (no timer thread). Attaching a connection after the
    deadline has fired shuts it down at once.
    """

    def __init__(self, deadline: float | None, monotonic: Callable[[], float]) -> None:
        self._deadline = deadline
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._fired = False

    @property
    def fired(self) -> bool:
        """Whether the deadline passed while the exchange was in flight."""
        with self._lock:
            return self._fired

    def attach(self, connection: object) -> None:
        """Watch ``connection`` (an urllib3 ``HTTPConnection``; anything else is ignored) and
        the socket it has now, if any (``http.client`` drops a connection's socket once a
        response that ends with the connection has it, so that is kept too)."""
        if self._deadline is None or not isinstance(connection, HTTPConnection):
            return
        sock = connection.sock
        with self._lock:
            if connection not in self._connections:
                self._connections.append(connection)
            if sock is not None and sock not in self._sockets:
                self._sockets.append(sock)
            fired = self._fired
        if fired:
            self._fire()

    def __enter__(self) -> DeadlineWatch:
        if self._deadline is not None:
            delay = max(0.0, self._deadline - self._monotonic())
            self._timer = threading.Timer(delay, self._fire)
            self._timer.daemon = True
            self._timer.start()
        _in_flight.watch = self
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _in_flight.watch = None
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            sockets = list(self._sockets)
            sockets += [c.sock for c in self._connections if c.sock is not None]
        for sock in sockets:
            _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for an SSLSocket: it wakes a read blocked in another
    # thread without touching the TLS object that read is using. Already closed: nothing to do.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _attach_in_flight(connection: HTTPConnection) -> None:
    watch = getattr(_in_flight, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_in_flight(self)  # before connecting: the socket is found when the watch fires
        super().request(*args, **kwargs)

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        _attach_in_flight(self)  # connected now: keep the socket itself
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_in_flight(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        _attach_in_flight(self)
        return super().getresponse()


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPConnectionPool,
    "https": _WatchedHTTPSConnectionPool,
}


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)  # via a proxy (HTTP_PROXY) too
        return manager


def watched_session(pool_maxsize: int = 4) -> requests.Session:
    """A session with no retries of its own whose connections a :class:`DeadlineWatch` finds
    as soon as they send a request."""
    session = requests.Session()
    adapter = _WatchedAdapter(max_retries=0, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
