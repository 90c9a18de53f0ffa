"""The NTP adapter and the drift-check service against our own responder on 127.0.0.1.

The responder (``minutemeter.local.ntp_responder``) sends what chronyd cannot be made to send:
Kiss-o'-Death, leap 3, stratum 16, a wrong origin, mode 3, a zero transmit timestamp, delays on
one path only, leap indicator 1, or nothing. The last section checks the service's pacing rules
with a scripted client and a fake clock (no sockets), where 15 s can pass in no time.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from minutemeter.adapters.ntp import NtplibClient
from minutemeter.adapters.system import SystemClock
from minutemeter.domain.drift import Role
from minutemeter.domain.drift_assessment import DriftStatus
from minutemeter.domain.ntp_math import (
    KissAction,
    NtpOriginMismatchError,
    NtpReply,
    NtpResolveError,
    NtpSample,
    NtpTimeoutError,
    NtpTransportError,
    Rejection,
    RejectReason,
    assess_reply,
    unix_to_ntp,
)
from minutemeter.local.ntp_responder import Behaviour, NtpResponder
from minutemeter.observability import drift_metrics
from minutemeter.service.drift import DriftReport, run_drift_check
from tests.support.clock import FakeClock

LOOPBACK = "127.0.0.1"
FAST = {"tss_spacing_s": 0.05, "ntp_spacing_s": 0.05, "timeout_s": 0.5, "budget_s": 5.0}


@pytest.fixture
def client() -> NtplibClient:
    return NtplibClient(SystemClock())


@pytest.fixture
def responder() -> Iterator[NtpResponder]:
    with NtpResponder() as server:
        yield server


def measure(
    client: NtplibClient, server: NtpResponder, behaviour: Behaviour
) -> NtpSample | Rejection:
    server.behaviour = behaviour
    return assess_reply(client.query(LOOPBACK, server.port, timeout=1.0))


def check(**kwargs: object) -> DriftReport:
    options: dict[str, object] = {"tss": None, "ntp": (), "link_local": None, **FAST, **kwargs}
    return run_drift_check(SystemClock(), NtplibClient(SystemClock()), time.sleep, **options)  # type: ignore[arg-type]


def by_server(report: DriftReport) -> dict[str, dict[str, object]]:
    return {str(s["server"]): s for s in report.to_json()["servers"]}  # type: ignore[attr-defined]


# -- the adapter -----------------------------------------------------------------------------------
def test_a_request_is_ntpv4_client_mode_and_the_reply_measures_the_injected_offset(
    client: NtplibClient, responder: NtpResponder
) -> None:
    sample = measure(client, responder, Behaviour(offset=0.25))
    assert isinstance(sample, NtpSample)
    assert abs(sample.offset - 0.25) <= sample.error_bound()
    assert abs(sample.offset - 0.25) < 0.005 and 0 <= sample.delay < 0.05
    (request,) = responder.received
    assert (request.version, request.mode) == (4, 3)
    assert request.transmit != bytes(8)  # our t1 went out as the transmit timestamp


@pytest.mark.parametrize(
    ("code", "action"),
    [("DENY", KissAction.STOP), ("RSTR", KissAction.STOP), ("RATE", KissAction.SLOW_DOWN),
     ("INIT", KissAction.DISCARD)],
)
def test_kiss_of_death_is_rejected_with_its_code(
    client: NtplibClient, responder: NtpResponder, code: str, action: KissAction
) -> None:
    outcome = measure(client, responder, Behaviour(kiss_code=code))
    assert isinstance(outcome, Rejection)
    assert (outcome.reason, outcome.kiss_code, outcome.kiss_action) == (
        RejectReason.KISS_OF_DEATH, code, action)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (Behaviour(leap=3), RejectReason.UNSYNCHRONISED),
        (Behaviour(stratum=16), RejectReason.UNSYNCHRONISED),
        (Behaviour(mode=3), RejectReason.BAD_MODE),
        (Behaviour(zero_transmit=True), RejectReason.ZERO_TIMESTAMP),
    ],
    ids=["leap-3", "stratum-16", "mode-3", "zero-transmit"],
)
def test_unusable_replies_are_rejected(
    client: NtplibClient, responder: NtpResponder, behaviour: Behaviour, reason: RejectReason
) -> None:
    outcome = measure(client, responder, behaviour)
    assert isinstance(outcome, Rejection) and outcome.reason is reason


def test_a_reply_that_does_not_echo_our_request_is_not_an_answer(
    client: NtplibClient, responder: NtpResponder
) -> None:
    responder.behaviour = Behaviour(wrong_origin=True)
    started = time.monotonic()
    with pytest.raises(NtpOriginMismatchError) as raised:
        client.query(LOOPBACK, responder.port, timeout=0.3)
    assert raised.value.bogus == 1
    assert 0.29 <= time.monotonic() - started < 1.0  # kept listening for the real answer


@pytest.mark.parametrize(
    ("behaviour", "bias"),
    [(Behaviour(inbound_delay=0.2), +0.1), (Behaviour(outbound_delay=0.2), -0.1)],
    ids=["slow-request", "slow-reply"],
)
def test_an_asymmetric_path_biases_the_offset_but_the_bound_still_holds_the_truth(
    client: NtplibClient, responder: NtpResponder, behaviour: Behaviour, bias: float
) -> None:
    sample = measure(client, responder, behaviour)
    assert isinstance(sample, NtpSample)
    assert sample.offset == pytest.approx(bias, abs=0.01)  # half the asymmetry
    assert sample.delay == pytest.approx(0.2, abs=0.02)
    assert abs(sample.offset - 0.0) <= sample.error_bound()  # the true offset is 0


def test_leap_indicator_1_is_a_valid_sample_that_carries_the_announcement(
    client: NtplibClient, responder: NtpResponder
) -> None:
    sample = measure(client, responder, Behaviour(leap=1))
    assert isinstance(sample, NtpSample) and sample.leap == 1


def test_a_silent_server_times_out_on_time(client: NtplibClient, responder: NtpResponder) -> None:
    responder.behaviour = Behaviour(silent=True)
    started = time.monotonic()
    with pytest.raises(NtpTimeoutError) as raised:
        client.query(LOOPBACK, responder.port, timeout=0.3)
    assert not isinstance(raised.value, NtpOriginMismatchError)
    assert 0.29 <= time.monotonic() - started < 1.0


def test_a_closed_port_is_a_transport_error(client: NtplibClient) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    with pytest.raises(NtpTransportError):  # ICMP port unreachable on a connected socket
        client.query(LOOPBACK, port, timeout=0.5)


def test_names_resolve_to_ipv4_literals(client: NtplibClient) -> None:
    assert client.resolve("127.0.0.1") == "127.0.0.1"
    assert client.resolve("localhost") == "127.0.0.1"
    with pytest.raises(ValueError):
        client.query("localhost", 123, timeout=0.1)  # a name must be resolved first


@dataclass
class SteppingClock:
    """Real monotonic time; the wall clock jumps by ``step`` after its first reading."""

    step: float
    readings: int = 0
    real: SystemClock = field(default_factory=SystemClock)

    def now(self) -> datetime:
        self.readings += 1
        moment = self.real.now().timestamp() + (self.step if self.readings > 1 else 0.0)
        return datetime.fromtimestamp(moment, UTC)

    def monotonic(self) -> float:
        return self.real.monotonic()

    def new_run_id(self) -> str:
        return "step"


def test_a_wall_clock_step_during_the_exchange_does_not_corrupt_the_delay(
    responder: NtpResponder,
) -> None:
    clock = SteppingClock(step=30.0)
    stepped = NtplibClient(clock)
    sample = assess_reply(stepped.query(LOOPBACK, responder.port, timeout=1.0))
    clock.now()  # the step happens now, after t1 was read; t4 never reads the wall clock
    assert isinstance(sample, NtpSample)
    assert 0 <= sample.delay < 0.05 and abs(sample.offset) < 0.005


# -- the service against responders --------------------------------------------------------------
def test_deny_stops_asking_and_counts_as_a_kiss_of_death() -> None:
    with NtpResponder(Behaviour(kiss_code="DENY")) as deny, NtpResponder() as good:
        report = check(tss=good.address, ntp=[deny.address], samples=3)
    assert len(deny.received) == 1 and len(good.received) == 3
    row = by_server(report)[deny.address]
    assert (row["status"], row["kiss_codes"], row["samples"]) == ("kod", ["DENY"], 0)
    assert report.verdict.kod_count == 1


def test_rate_doubles_the_spacing_to_that_server() -> None:
    script = [Behaviour(kiss_code="RATE"), Behaviour(), Behaviour()]
    with NtpResponder(script=script) as server:
        report = check(ntp=[server.address], samples=3, ntp_spacing_s=0.2)
    first, second, third = (r.monotonic for r in server.received)
    assert second - first >= 0.35 and third - second >= 0.35  # 0.2 s doubled, then kept
    row = by_server(report)[server.address]
    assert (row["status"], row["samples"], row["kiss_codes"]) == ("ok", 2, ["RATE"])


def test_three_servers_outvote_the_one_that_is_off() -> None:
    with (
        NtpResponder() as tss,
        NtpResponder() as honest,
        NtpResponder(Behaviour(offset=1.5)) as off,
    ):
        report = check(tss=tss.address, ntp=[honest.address, off.address], samples=2)
    v = report.verdict
    assert v.selection.falsetickers == (off.address,)
    assert (v.status, v.basis, v.valid_servers, v.falsetickers) == (
        DriftStatus.OK, "quorum", 3, 1)
    assert abs(v.offset or 1.0) < 0.005 and abs((v.offset or 1.0) - 0.0) <= (v.bound or 0.0)
    assert by_server(report)[off.address]["status"] == "falseticker"


def test_a_silent_server_is_handled_within_the_budget() -> None:
    with NtpResponder() as good, NtpResponder(Behaviour(silent=True)) as silent:
        started = time.monotonic()
        report = check(tss=good.address, ntp=[silent.address], samples=3, timeout_s=0.4,
                       budget_s=1.0)
        took = time.monotonic() - started
    assert took < 1.5
    row = by_server(report)[silent.address]
    assert row["status"] == "timeout" and row["samples"] == 0
    assert report.verdict.timeout_count == row["timeouts"] == 2  # a third would overrun
    assert report.verdict.valid_servers == 1


def test_the_link_local_probe_is_reported_never_used() -> None:
    with NtpResponder() as tss, NtpResponder() as pool, NtpResponder(Behaviour(offset=3.0)) as ll:
        report = check(tss=tss.address, ntp=[pool.address], link_local=ll.address)
    assert len(ll.received) == 1  # probed once
    row = by_server(report)[ll.address]
    assert (row["role"], row["status"]) == ("link-local", "ok")
    assert report.link_local_reachable is True
    assert report.verdict.status is DriftStatus.OK and report.verdict.valid_servers == 2


def test_the_report_carries_the_cli_contract_fields_in_milliseconds() -> None:
    with NtpResponder(Behaviour(offset=0.02)) as tss, NtpResponder(Behaviour(offset=0.02)) as p:
        report = check(tss=tss.address, ntp=[p.address], samples=2)
    data = json.loads(report.to_json_text())
    for row in data["servers"]:
        assert {"server", "role", "address", "offset_ms", "delay_ms", "error_bound_ms", "stratum",
                "leap", "samples", "status", "reason"} <= row.keys()
        assert row["offset_ms"] == pytest.approx(20.0, abs=3.0)
        assert row["address"] == LOOPBACK and row["stratum"] == 2 and row["leap"] == 0
    assert {r["role"] for r in data["servers"]} == {"tss", "ntp"}
    assert data["tss_minus_ntp_ms"] == pytest.approx(0.0, abs=3.0)
    assert data["verdict"]["status"] == "ok" and data["verdict"]["basis"] == "quorum"
    assert set(data["selection"]) >= {"truechimers", "falsetickers", "offset_ms", "error_bound_ms"}
    stored = report.clock_verdict()
    assert stored.status == "ok" and stored.valid_sources == 2
    assert abs(float(stored.offset_ms) - 20.0) < 3.0 and stored.bound_ms >= 0


@dataclass
class ShiftedClock:
    """Real clocks moved to another wall-clock instant (monotonic untouched)."""

    at: datetime
    real: SystemClock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self._shift = self.at.timestamp() - self.real.now().timestamp()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.real.now().timestamp() + self._shift, UTC)

    def monotonic(self) -> float:
        return self.real.monotonic()

    def new_run_id(self) -> str:
        return "shifted"


def test_a_leap_indicator_on_the_last_day_of_june_silences_tss_versus_pool() -> None:
    # 20:00 UTC on 2026-06-30, 8 h into the smear window a leap announced by the pool servers
    # would open: TSS (smeared, as our clock) sits 1/3 s behind the pool.
    clock = ShiftedClock(datetime(2026, 6, 30, 20, tzinfo=UTC))
    pool = Behaviour(offset=0.3333, leap=1)
    with (
        NtpResponder(clock=clock) as tss,
        NtpResponder(pool, clock=clock) as pool_a,
        NtpResponder(pool, clock=clock) as pool_b,
    ):
        report = run_drift_check(clock, NtplibClient(clock), time.sleep, tss=tss.address,
                                 ntp=[pool_a.address, pool_b.address], link_local=None,
                                 samples=2, **FAST)  # type: ignore[arg-type]
    v = report.verdict
    assert str(v.smear_leap) == "2026-06-30:+1" and [str(x) for x in v.announced_leaps] == [
        "2026-06-30:+1"]
    assert v.tss_minus_ntp == pytest.approx(-0.3333, abs=0.005)
    assert (v.status, v.basis, v.falsetickers) == (DriftStatus.OK, "quorum", 0)
    assert by_server(report)[pool_a.address]["leap"] == 1
    # and the TSS-vs-pool metric is not published inside the window, so its alarm stays quiet
    published = {point.name for point in drift_metrics(report)}
    assert "TssMinusPoolAbs" not in published and "ClockOffset" in published


# -- the service's pacing, with a scripted client (no sockets) -------------------------------------
class ScriptedClient:
    """Answers every query at once with a perfect reply; records when (monotonic) it was asked."""

    def __init__(self, clock: FakeClock, addresses: dict[str, str]) -> None:
        self.clock = clock
        self.addresses = addresses
        self.asked: list[tuple[str, float]] = []

    def resolve(self, host: str) -> str:
        if host not in self.addresses:
            raise NtpResolveError("no such host", server=host)
        return self.addresses[host]

    def query(self, address: str, port: int = 123, *, timeout: float) -> NtpReply:
        self.asked.append((address, self.clock.monotonic()))
        t1 = self.clock.now().timestamp()
        return NtpReply(
            leap=0, version=4, mode=4, stratum=2, poll=0, precision=-20, root_delay=0.0,
            root_dispersion=0.0, ref_id=1, receive=unix_to_ntp(t1 + 0.001),
            transmit=unix_to_ntp(t1 + 0.001), t1=t1, t4=t1 + 0.002,
        )


def paced(addresses: dict[str, str], **kwargs: object) -> tuple[ScriptedClient, DriftReport]:
    clock = FakeClock("2026-11-25T12:00:00Z")
    scripted = ScriptedClient(clock, addresses)
    options: dict[str, object] = {"tss": None, "link_local": None, "samples": 3,
                                  "ntp_spacing_s": 0.1, "timeout_s": 1.0, "budget_s": 60.0,
                                  **kwargs}
    report = run_drift_check(clock, scripted, clock.advance, **options)  # type: ignore[arg-type]
    return scripted, report


def test_a_pool_server_is_asked_at_most_once_per_15_seconds() -> None:
    scripted, report = paced({"pool.example": "192.0.2.10"}, ntp=["pool.example"])
    times = [at for _, at in scripted.asked]
    assert len(times) == 3
    assert [b - a for a, b in itertools.pairwise(times)] == [15.0, 15.0]
    assert by_server(report)["pool.example"]["address"] == "192.0.2.10"


def test_a_loopback_ntp_server_keeps_the_requested_spacing() -> None:
    scripted, _ = paced({"127.0.0.1": "127.0.0.1"}, ntp=["127.0.0.1:1123"])
    times = [at for _, at in scripted.asked]
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [0.1, 0.1]


def test_the_budget_cuts_sampling_short_instead_of_overrunning() -> None:
    scripted, report = paced({"pool.example": "192.0.2.10"}, ntp=["pool.example"], budget_s=20.0)
    assert len(scripted.asked) == 2  # at 0 s and 15 s; a third at 30 s would end past 20 s
    assert by_server(report)["pool.example"]["samples"] == 2


def test_an_unresolvable_name_is_reported_not_raised() -> None:
    _, report = paced({}, ntp=["nowhere.example"])
    row = by_server(report)["nowhere.example"]
    assert (row["status"], row["address"]) == ("unresolved", None)
    assert report.verdict.status is DriftStatus.UNKNOWN
    assert Role.NTP.value == row["role"]
