"""Real NTP servers for the tests: Debian's chronyd on 127.0.0.1, optionally under faketime.

``chronyd -x`` serves time without ever touching the system clock. Each instance gets its own
config in a temporary directory: a free UDP port on 127.0.0.1 only, no command port and no Unix
command socket (so instances never collide), clients from 127.0.0.1 only, and ``local stratum 8``
so it answers as a synchronised server at once (leap 0, stratum 8) without any upstream.

``faketime -f "+1.5s" chronyd ...`` serves a clock 1.5 s ahead. libfaketime shifts what chronyd
reads from ``clock_gettime``/``gettimeofday``, but not the receive timestamps the kernel attaches
to packets (SO_TIMESTAMPNS). chronyd 4.3 discards a kernel timestamp that differs from its own
reading by more than 1 s and then stamps the packet itself, so with a shift above 1 s every
timestamp it serves is shifted consistently; with a smaller shift its receive timestamp stays
real while its transmit timestamp is shifted, and the reply shows a negative delay (see
``test_a_sub_second_faketime_shift_makes_chronyd_inconsistent_and_it_is_rejected``).
``FAKETIME_DONT_FAKE_MONOTONIC=1`` keeps chronyd's monotonic clock real (libfaketime would
otherwise shift it too, which chronyd does not need).

Both tools are required: CI installs the ``chrony`` and ``faketime`` packages, so a missing one
fails the tests with a message instead of skipping them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from minutemeter.adapters.ntp import NtplibClient
from minutemeter.adapters.system import SystemClock
from minutemeter.domain.ntp_math import NtpError

HOST = "127.0.0.1"
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
CONFIG = """\
port {port}
bindaddress 127.0.0.1
bindcmdaddress /
cmdport 0
allow 127.0.0.1
local stratum 8
pidfile {dir}/chronyd.pid
driftfile {dir}/chrony.drift
"""


def require_tool(name: str, package: str) -> str:
    """The path of ``name``, or fail the test: CI installs ``package``."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))
    if path is None:
        pytest.fail(
            f"{name} not found: install Debian's {package} package "
            f"(apt-get install -y chrony faketime); the drift tests need a real NTP server",
            pytrace=False,
        )
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Chronyd:
    """A running chronyd; ``shift`` is what faketime adds to its clock (seconds)."""

    port: int
    shift: float
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


def _user_args() -> list[str]:
    """Stay the user we are: as root, ``-u root`` (the packaged default, ``_chrony``, could not
    write to pytest's private temporary directories); otherwise ``-U`` lets chronyd start
    without root, which ``-x`` on an unprivileged port does not need."""
    if os.geteuid() == 0:
        return ["-u", "root"]
    return ["-U", "-u", pwd.getpwuid(os.geteuid()).pw_name]


def _answers_synchronised(port: int, within: float) -> bool:
    """Wait until the server answers as a synchronised server (leap != 3, stratum 1..15).

    Whether the reply is *usable* is for the tests to judge: an instance under a small faketime
    shift answers, but inconsistently."""
    client = NtplibClient(SystemClock())
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            reply = client.query(HOST, port, timeout=0.2)
        except NtpError:
            time.sleep(0.05)
            continue
        if reply.leap != 3 and 0 < reply.stratum < 16:
            return True
        time.sleep(0.05)
    return False


@contextmanager
def chronyd(workdir: Path, *, shift: float = 0.0, ready_within: float = 10.0) -> Iterator[Chronyd]:
    """Start chronyd (under ``faketime -f "+<shift>s"`` when ``shift``), wait until it answers
    as a synchronised server, yield it, and kill its whole process group at the end."""
    binary = require_tool("chronyd", "chrony")
    wrapper = [require_tool("faketime", "faketime"), "-f", f"{shift:+g}s"] if shift else []
    workdir.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):  # a free port can be taken between probing and binding
        port = free_udp_port()
        config = workdir / "chrony.conf"
        config.write_text(CONFIG.format(port=port, dir=workdir))
        config.chmod(0o644)
        log = workdir / "chronyd.log"
        env = {**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        command = [*wrapper, binary, "-x", "-d", "-4", *_user_args(), "-f", str(config)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        server = Chronyd(port, shift, process, log)
        try:
            if _answers_synchronised(port, ready_within):
                yield server
                return
        finally:
            _stop(process)
    pytest.fail(f"chronyd did not answer on 127.0.0.1: {server.log_tail()}", pytrace=False)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the process group we started. Under faketime the group is faketime and its child
    chronyd: chronyd gets SIGTERM first, so that faketime reaps it and exits on its own (killing
    the wrapper first would leave chronyd to whichever init adopts it); SIGKILL to the group if
    that takes more than 5 s."""
    others = [pid for pid in _group_members(process.pid) if pid != process.pid]
    for pid in others or [process.pid]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # anything left in the group
    process.wait(timeout=5)


def _group_members(pgid: int) -> list[int]:
    """Processes in process group ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


@contextmanager
def silent_udp_port() -> Iterator[int]:
    """A bound UDP port on 127.0.0.1 that never answers (no ICMP unreachable either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        yield int(sock.getsockname()[1])


@contextmanager
def honest_pair_and_one_ahead(base: Path) -> Iterator[list[Chronyd]]:
    """Two honest chronyd instances and one 1.5 s ahead (under faketime), in that order.

    The body of the ``chrony_servers`` module fixture (a fixture defined here would have to be
    registered as a plugin before this module is imported)."""
    with (
        chronyd(base / "honest-a") as a,
        chronyd(base / "honest-b") as b,
        chronyd(base / "ahead", shift=1.5) as ahead,
    ):
        yield [a, b, ahead]
