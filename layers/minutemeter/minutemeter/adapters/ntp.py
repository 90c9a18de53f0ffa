"""NTP client: ``ntplib`` packets over a UDP socket of our own.

``ntplib.NTPClient.request`` is not used: it defaults to version 2 and the service *name*
``"ntp"`` for the port, reads ``time.time()`` itself (so a clock step during the exchange
corrupts the delay), and never checks that the reply answers our request. Here ``ntplib`` only
builds and parses the 48-byte packets; everything else is ours:

- always NTP version 4, client mode, to a numeric port (123 unless told otherwise);
- one fresh socket per request, *connected* to the server's IPv4 address and port, so the kernel
  drops datagrams from anyone else and an ICMP "port unreachable" surfaces as an error;
- ``t1`` from the ``Clock`` port, ``t4 = t1 + (monotonic elapsed)``;
- our ``t1`` goes out as the transmit timestamp, and a reply counts only if its origin
  timestamp echoes those 8 bytes exactly; others are discarded while we keep waiting.

The reply's content (mode, stratum, kiss codes, leap, delay) is judged by
:func:`minutemeter.domain.ntp_math.assess_reply`.
"""

from __future__ import annotations

import ipaddress
import socket

import ntplib  # type: ignore[import-untyped]

from minutemeter.domain.ntp_math import (
    NtpOriginMismatchError,
    NtpReply,
    NtpResolveError,
    NtpTimeoutError,
    NtpTransportError,
    unix_to_ntp,
)
from minutemeter.ports import Clock

NTP_VERSION = 4
CLIENT_MODE = 3
PACKET_BYTES = 48
MAX_DATAGRAMS = 16  # replies read (and discarded as not ours) before giving up on one request
_ORIGIN = slice(24, 32)  # originate timestamp in a reply
_TRANSMIT = slice(40, 48)  # transmit timestamp in our request


class NtplibClient:
    """``minutemeter.ports.NtpClient`` over UDP; reads time only through ``clock``."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def resolve(self, host: str) -> str:
        """An IPv4 literal for ``host`` (returned as is when it already is one)."""
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            raise NtpResolveError(f"cannot resolve: {exc}", server=host) from exc
        for *_, sockaddr in infos:
            return str(sockaddr[0])
        raise NtpResolveError("no IPv4 address", server=host)

    def query(self, address: str, port: int = 123, *, timeout: float) -> NtpReply:
        """One request/reply exchange with the server at ``address:port`` (IPv4 literal).

        Raises :class:`NtpTimeoutError` (nothing, or only replies that were not ours:
        :class:`NtpOriginMismatchError`) and :class:`NtpTransportError`; ``ValueError`` for an
        address that is not an IPv4 literal. A datagram shorter than an NTP packet is skipped
        like one whose origin is not ours.
        """
        target = f"{address}:{port}"
        ipaddress.IPv4Address(address)  # ValueError for a name: resolve() first
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((address, port))
                m1 = self._clock.monotonic()
                t1 = self._clock.now().timestamp()
                request = ntplib.NTPPacket(
                    version=NTP_VERSION, mode=CLIENT_MODE, tx_timestamp=unix_to_ntp(t1)
                ).to_data()
                sock.send(request)
            except OSError as exc:
                raise NtpTransportError(f"cannot send: {exc}", server=target) from exc
            expected_origin = bytes(request[_TRANSMIT])
            bogus = 0
            for _ in range(MAX_DATAGRAMS):
                remaining = m1 + timeout - self._clock.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                try:
                    data = sock.recv(1024)
                except TimeoutError:
                    break
                except OSError as exc:  # ECONNREFUSED from ICMP port unreachable, ...
                    raise NtpTransportError(f"receive failed: {exc}", server=target) from exc
                m4 = self._clock.monotonic()
                if len(data) < PACKET_BYTES or data[_ORIGIN] != expected_origin:
                    bogus += 1
                    continue
                return _reply(data, t1=t1, t4=t1 + (m4 - m1))
            if bogus:
                raise NtpOriginMismatchError(
                    f"{bogus} datagram(s) that did not answer our request",
                    server=target, timeout=timeout, bogus=bogus,
                )
            raise NtpTimeoutError(f"no reply within {timeout:.3f} s", server=target,
                                  timeout=timeout)


def _reply(data: bytes, *, t1: float, t4: float) -> NtpReply:
    packet = ntplib.NTPPacket()
    packet.from_data(data)  # at least 48 bytes: always unpacks
    return NtpReply(
        leap=int(packet.leap),
        version=int(packet.version),
        mode=int(packet.mode),
        stratum=int(packet.stratum),
        poll=int(packet.poll),
        precision=int(packet.precision),
        root_delay=float(packet.root_delay),
        root_dispersion=float(packet.root_dispersion),
        ref_id=int(packet.ref_id),
        receive=float(packet.recv_timestamp),
        transmit=float(packet.tx_timestamp),
        t1=t1,
        t4=t4,
    )
