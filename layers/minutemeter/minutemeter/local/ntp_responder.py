"""A scriptable NTP server on 127.0.0.1, for the tests: it sends what chronyd cannot be made to.

It answers NTPv4 client requests with server-mode replies built by ``ntplib.NTPPacket``: correct
timestamps from its clock plus an injected offset, and the request's transmit timestamp echoed
byte for byte as the origin. A :class:`Behaviour` bends any of that: Kiss-o'-Death with a code,
leap indicator, stratum, mode, a wrong origin, a zero transmit timestamp, delays on the way in
(before the receive timestamp) and on the way out (after the transmit timestamp), or silence.
A script gives one behaviour per request, in order, before the standing behaviour applies.

Usage::

    with NtpResponder(Behaviour(offset=0.25)) as server:
        client.query("127.0.0.1", server.port, timeout=1.0)
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import ntplib  # type: ignore[import-untyped]

from minutemeter.adapters.system import SystemClock
from minutemeter.domain.ntp_math import unix_to_ntp
from minutemeter.ports import Clock

HOST = "127.0.0.1"
_REF_ID_UPSTREAM = 0x7F000002  # "synchronised to 127.0.0.2"


@dataclass(frozen=True)
class Behaviour:
    """How to answer one request. Seconds for times; ``precision`` is log2 seconds."""

    offset: float = 0.0  # added to this server's clock
    leap: int = 0
    stratum: int = 2
    mode: int = 4
    version: int | None = None  # None: the request's version
    kiss_code: str | None = None  # a Kiss-o'-Death: stratum 0, leap 3, ref id = the code
    wrong_origin: bool = False
    zero_transmit: bool = False
    silent: bool = False
    inbound_delay: float = 0.0  # the request "travels" this long before t2 is taken
    outbound_delay: float = 0.0  # the reply "travels" this long after t3 is taken
    root_delay: float = 0.0
    root_dispersion: float = 0.0
    precision: int = -20


@dataclass(frozen=True)
class Received:
    """A request as it arrived: server monotonic time, and its header fields."""

    monotonic: float
    version: int
    mode: int
    transmit: bytes


class NtpResponder:
    """A UDP NTP server on ``127.0.0.1`` (a free port) answering from a background thread."""

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        script: Sequence[Behaviour] = (),
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._behaviour = behaviour or Behaviour()
        self._script = list(script)
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((HOST, 0))
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name=f"ntp-{self.port}", daemon=True)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviour

    @behaviour.setter
    def behaviour(self, value: Behaviour) -> None:
        with self._lock:
            self._behaviour = value

    @property
    def received(self) -> list[Received]:
        """The requests so far, oldest first."""
        with self._lock:
            return list(self._received)

    def start(self) -> NtpResponder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> NtpResponder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                request, peer = self._sock.recvfrom(1024)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(request) < 48:
                continue
            with self._lock:
                index = len(self._received)
                self._received.append(Received(
                    self._clock.monotonic(), request[0] >> 3 & 7, request[0] & 7, request[40:48]
                ))
                behaviour = self._script[index] if index < len(self._script) else self._behaviour
            if behaviour.silent:
                continue
            reply = self._answer(request, behaviour)
            try:
                self._sock.sendto(reply, peer)
            except OSError:
                return

    def _now(self, behaviour: Behaviour) -> float:
        return self._clock.now().timestamp() + behaviour.offset

    def _answer(self, request: bytes, b: Behaviour) -> bytes:
        if b.inbound_delay:
            time.sleep(b.inbound_delay)
        t2 = self._now(b)
        version = b.version if b.version is not None else request[0] >> 3 & 7
        packet = ntplib.NTPPacket(version=version, mode=b.mode)
        packet.leap, packet.stratum, packet.ref_id = b.leap, b.stratum, _REF_ID_UPSTREAM
        if b.kiss_code is not None:
            packet.leap, packet.stratum = 3, 0
            packet.ref_id = int.from_bytes(b.kiss_code.encode("ascii")[:4].ljust(4, b"\0"), "big")
        packet.poll = request[2]
        packet.precision = b.precision
        packet.root_delay, packet.root_dispersion = b.root_delay, b.root_dispersion
        packet.ref_timestamp = unix_to_ntp(t2 - 16.0)
        packet.recv_timestamp = unix_to_ntp(t2)
        packet.tx_timestamp = 0 if b.zero_transmit else unix_to_ntp(self._now(b))
        reply = bytearray(packet.to_data())
        origin = request[40:48]  # echoed byte for byte, as a real server does
        reply[24:32] = bytes(x ^ 0x5A for x in origin) if b.wrong_origin else origin
        if b.outbound_delay:
            time.sleep(b.outbound_delay)
        return bytes(reply)
