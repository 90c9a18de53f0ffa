"""The drift check against real NTP servers: Debian's chronyd on 127.0.0.1.

Two honest instances and one run under ``faketime -f "+1.5s"`` (see ``tests/support/chrony.py``
for the configuration and for how faketime reaches chronyd). All three serve this machine's own
clock, so the true offsets are exactly 0 and +1.5 s. chronyd and faketime are required: a
missing one fails these tests with a message (CI installs both).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minutemeter.adapters.ntp import NtplibClient
from minutemeter.adapters.system import SystemClock
from minutemeter.domain.drift_assessment import DriftStatus
from minutemeter.domain.ntp_math import NtpSample, Rejection, RejectReason, assess_reply
from minutemeter.service.drift import DriftReport, run_drift_check
from tests.support.chrony import (
    Chronyd,
    chronyd,
    honest_pair_and_one_ahead,
    silent_udp_port,
)

HOST = "127.0.0.1"
FEW_MS = 0.005


@pytest.fixture(scope="module")
def chrony_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Chronyd]]:
    """Two honest chronyd instances and one 1.5 s ahead, shared by this module's tests."""
    with honest_pair_and_one_ahead(tmp_path_factory.mktemp("chrony")) as servers:
        yield servers


def sample_of(server: Chronyd) -> NtpSample:
    client = NtplibClient(SystemClock())
    outcome = assess_reply(client.query(HOST, server.port, timeout=1.0))
    assert isinstance(outcome, NtpSample), outcome
    return outcome


def drift_check(*ntp: str, budget_s: float = 5.0, timeout_s: float = 0.5) -> DriftReport:
    clock = SystemClock()
    return run_drift_check(
        clock, NtplibClient(clock), time.sleep, tss=None, ntp=list(ntp), link_local=None,
        samples=3, ntp_spacing_s=0.05, timeout_s=timeout_s, budget_s=budget_s,
    )


def test_an_honest_chronyd_measures_within_a_few_ms_of_zero(
    chrony_servers: list[Chronyd],
) -> None:
    for server in chrony_servers[:2]:
        sample = sample_of(server)
        assert abs(sample.offset) < FEW_MS
        assert abs(sample.offset - 0.0) <= sample.error_bound()
        assert (sample.stratum, sample.leap) == (8, 0)
        assert 0 <= sample.delay < 0.01


def test_faketime_shifts_what_chronyd_serves_by_one_and_a_half_seconds(
    chrony_servers: list[Chronyd],
) -> None:
    ahead = chrony_servers[2]
    sample = sample_of(ahead)
    assert abs(sample.offset - 1.5) < FEW_MS
    assert abs(sample.offset - 1.5) <= sample.error_bound()
    assert 0 <= sample.delay < 0.01  # every timestamp chronyd serves is shifted alike


def test_the_shifted_chronyd_is_the_falseticker_among_three(
    chrony_servers: list[Chronyd],
) -> None:
    honest_a, honest_b, ahead = chrony_servers
    report = drift_check(honest_a.address, honest_b.address, ahead.address)
    v = report.verdict
    assert v.selection.truechimers == (honest_a.address, honest_b.address)
    assert v.selection.falsetickers == (ahead.address,)
    assert (v.status, v.basis, v.valid_servers, v.falsetickers) == (
        DriftStatus.OK, "quorum", 3, 1)
    assert v.offset is not None and v.bound is not None
    assert abs(v.offset) < FEW_MS and abs(v.offset - 0.0) <= v.bound
    rows = {s.server: s for s in report.servers}
    assert rows[ahead.address].status == "falseticker"
    ahead_sample = rows[ahead.address].sample
    assert ahead_sample is not None and abs(ahead_sample.offset - 1.5) < FEW_MS
    assert all(rows[s.address].samples == 3 for s in chrony_servers)


def test_a_silent_server_is_handled_within_the_budget(chrony_servers: list[Chronyd]) -> None:
    honest_a, honest_b, _ = chrony_servers
    with silent_udp_port() as port:
        started = time.monotonic()
        report = drift_check(honest_a.address, honest_b.address, f"{HOST}:{port}",
                             budget_s=1.5, timeout_s=0.4)
        took = time.monotonic() - started
    assert took < 2.0
    silent = next(s for s in report.servers if s.server == f"{HOST}:{port}")
    assert (silent.status, silent.samples, silent.timeouts) == ("timeout", 0, 3)
    assert report.verdict.timeout_count == 3
    assert report.verdict.status is DriftStatus.OK and report.verdict.valid_servers == 2


def test_a_sub_second_faketime_shift_makes_chronyd_inconsistent_and_it_is_rejected(
    tmp_path: Path,
) -> None:
    """Why the shifted server runs 1.5 s ahead: under a shift below chronyd's 1 s sanity limit
    it keeps the kernel's (unshifted) receive timestamp but shifts its transmit timestamp, so
    the reply claims the server held our request for 0.3 s that never passed: negative delay."""
    with chronyd(tmp_path / "small-shift", shift=0.3) as server:
        client = NtplibClient(SystemClock())
        outcome = assess_reply(client.query(HOST, server.port, timeout=1.0))
    assert isinstance(outcome, Rejection) and outcome.reason is RejectReason.BAD_DELAY
