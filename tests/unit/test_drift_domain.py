"""The drift domain: NTP arithmetic, reply checks, selection, leap seconds, the verdict.

Timestamps in the hand-computed examples are dyadic fractions on a round Unix second, so every
value is exact in binary floating point and the expected numbers can be written down.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from minutemeter.domain.drift import (
    LEAP_SECONDS,
    POOL_MIN_SPACING_SECONDS,
    Interval,
    LeapSecond,
    Role,
    ServerSpec,
    announced_leap,
    leap_in_window,
    parse_leap_second,
    parse_server,
    sample_spacing,
    select_truechimers,
    smear_difference,
    with_leap_seconds,
)
from minutemeter.domain.drift_assessment import (
    DriftAssessment,
    DriftStatus,
    DriftThresholds,
    ServerEstimate,
    assess_drift,
)
from minutemeter.domain.errors import InputError
from minutemeter.domain.ntp_math import (
    NTP_UNIX_DELTA,
    PHI,
    KissAction,
    NtpReply,
    NtpSample,
    Rejection,
    RejectReason,
    assess_reply,
    best_sample,
    kiss_action,
    ntp_to_unix,
    offset_and_delay,
    unix_to_ntp,
)

BASE = 1_782_864_000.0  # 2026-07-01T00:00:00Z
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def reply(
    t1: float = 0.0, t2: float = 0.625, t3: float = 0.75, t4: float = 0.25, **fields: object
) -> NtpReply:
    """A valid server reply; times are seconds after BASE."""
    base = NtpReply(
        leap=0, version=4, mode=4, stratum=2, poll=0, precision=-20, root_delay=0.0,
        root_dispersion=0.0, ref_id=0x7F000002, receive=unix_to_ntp(BASE + t2),
        transmit=unix_to_ntp(BASE + t3), t1=BASE + t1, t4=BASE + t4,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def kod(code: str) -> NtpReply:
    return reply(stratum=0, leap=3, ref_id=int.from_bytes(code.encode().ljust(4, b"\0"), "big"))


# -- arithmetic -----------------------------------------------------------------------------------
def test_offset_and_delay_from_the_four_timestamps() -> None:
    # The server is 0.5625 s ahead; the round trip took 0.25 s, 0.125 s of it inside the server.
    assert offset_and_delay(0.0, 0.625, 0.75, 0.25) == (0.5625, 0.125)
    assert offset_and_delay(10.0, 9.5, 9.5, 10.0) == (-0.5, 0.0)  # server 0.5 s behind us


def test_a_reply_becomes_a_sample_with_the_servers_minus_local_sign() -> None:
    sample = assess_reply(reply())
    assert isinstance(sample, NtpSample)
    assert (sample.offset, sample.delay, sample.stratum, sample.leap) == (0.5625, 0.125, 2, 0)
    assert sample.precision == 2.0**-20


def test_ntp_timestamps_convert_across_the_2036_era_boundary() -> None:
    assert unix_to_ntp(0.0) == NTP_UNIX_DELTA
    era_end = 2**32 - NTP_UNIX_DELTA  # 2036-02-07T06:28:16Z in Unix seconds
    assert unix_to_ntp(era_end + 10.0) == 10.0
    assert ntp_to_unix(10.0, near_unix=era_end + 5.0) == era_end + 10.0
    assert ntp_to_unix(2**32 - 6.0, near_unix=era_end + 5.0) == era_end - 6.0
    assert ntp_to_unix(unix_to_ntp(BASE + 0.75), near_unix=BASE) == BASE + 0.75


def test_the_error_bound_adds_every_term() -> None:
    sample = NtpSample(offset=0.0, delay=0.25, root_delay=0.125, root_dispersion=0.0625,
                       precision=2.0**-10, stratum=2, leap=0, t1=BASE)
    assert sample.error_bound() == 0.125 + 0.0625 + 0.0625 + 2.0**-10
    assert sample.error_bound(age=100.0) == pytest.approx(sample.error_bound() + 100 * PHI)
    assert sample.error_bound(age=-5.0) == sample.error_bound()  # never shrinks


def test_the_bound_contains_the_truth_whatever_the_path_asymmetry() -> None:
    true_offset = 0.3
    for outbound, inbound in [(0.2, 0.0), (0.0, 0.2), (0.05, 0.15), (0.1, 0.1)]:
        t1 = 0.0
        t2 = t1 + outbound + true_offset
        t3 = t2 + 0.001
        t4 = t3 - true_offset + inbound
        sample = assess_reply(reply(t1, t2, t3, t4))
        assert isinstance(sample, NtpSample)
        assert abs(sample.offset - true_offset) <= sample.error_bound() + 1e-9


# -- reply checks ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"mode": 3}, RejectReason.BAD_MODE),
        ({"mode": 5}, RejectReason.BAD_MODE),
        ({"version": 0}, RejectReason.BAD_VERSION),
        ({"version": 5}, RejectReason.BAD_VERSION),
        ({"leap": 3}, RejectReason.UNSYNCHRONISED),
        ({"stratum": 16}, RejectReason.UNSYNCHRONISED),
        ({"stratum": 255}, RejectReason.UNSYNCHRONISED),
        ({"transmit": 0.0}, RejectReason.ZERO_TIMESTAMP),
        ({"receive": 0.0}, RejectReason.ZERO_TIMESTAMP),
        ({"t4": BASE + 0.1}, RejectReason.BAD_DELAY),  # t4 - t1 < t3 - t2: negative delay
        ({"t4": BASE + 1.125}, RejectReason.BAD_DELAY),  # delay exactly 1 s
    ],
)
def test_replies_that_must_not_be_used_are_rejected(
    fields: dict[str, object], reason: RejectReason
) -> None:
    outcome = assess_reply(reply(**fields))  # type: ignore[arg-type]
    assert isinstance(outcome, Rejection)
    assert outcome.reason is reason
    assert outcome.kiss_code is None


def test_delay_edges_zero_accepted_just_under_a_second_accepted() -> None:
    zero = assess_reply(reply(0.0, 0.5, 0.5, 0.0))
    assert isinstance(zero, NtpSample) and zero.delay == 0.0
    assert isinstance(assess_reply(reply(t4=0.125 + 0.999)), NtpSample)


@pytest.mark.parametrize(
    ("code", "action"),
    [("DENY", KissAction.STOP), ("RSTR", KissAction.STOP), ("RATE", KissAction.SLOW_DOWN),
     ("INIT", KissAction.DISCARD), ("STEP", KissAction.DISCARD)],
)
def test_kiss_of_death_carries_its_code_and_what_it_asks(code: str, action: KissAction) -> None:
    outcome = assess_reply(kod(code))
    assert isinstance(outcome, Rejection)
    assert (outcome.reason, outcome.kiss_code, outcome.kiss_action) == (
        RejectReason.KISS_OF_DEATH, code, action,
    )
    assert kiss_action(code) is action


def test_kiss_codes_are_read_as_ascii_with_nuls_dropped() -> None:
    assert kod("NKE").kiss_code == "NKE"
    assert reply(ref_id=0x41_0A_42_00).kiss_code == "A?B"


def test_the_minimum_delay_sample_is_kept() -> None:
    def sample(offset: float, delay: float) -> NtpSample:
        return NtpSample(offset, delay, 0.0, 0.0, 0.0, 2, 0, BASE)

    slow, fast, tie = sample(0.9, 0.300), sample(0.1, 0.020), sample(0.5, 0.020)
    assert best_sample([slow, fast, tie]) is fast
    assert best_sample([]) is None


# -- servers and spacing --------------------------------------------------------------------------
def test_servers_are_host_and_numeric_port() -> None:
    assert parse_server("time.aws.com", Role.TSS) == ServerSpec("time.aws.com", 123, Role.TSS)
    spec = parse_server(" 127.0.0.1:12345 ", Role.NTP)
    assert (spec.host, spec.port, spec.label) == ("127.0.0.1", 12345, "127.0.0.1:12345")
    assert parse_server("pool.example:123", Role.NTP).label == "pool.example"
    for bad in ["ntp.example:ntp", ":123", "host:0", "host:65536", "[::1]:123", "a b", "h:+1"]:
        with pytest.raises(InputError):
            parse_server(bad, Role.NTP)


def test_never_more_than_one_request_per_15_s_to_a_pool_server() -> None:
    assert POOL_MIN_SPACING_SECONDS == 15.0
    assert sample_spacing(Role.NTP, "192.0.2.10", 2.0) == 15.0
    assert sample_spacing(Role.NTP, "192.0.2.10", 20.0) == 20.0
    assert sample_spacing(Role.NTP, "not-an-address", 1.0) == 15.0  # unknown: assume a pool
    assert sample_spacing(Role.NTP, "127.0.0.1", 0.05) == 0.05  # our own loopback servers
    assert sample_spacing(Role.TSS, "52.94.0.1", 2.0) == 2.0  # TSS is not the pool


# -- selection ------------------------------------------------------------------------------------
def test_one_falseticker_among_three_is_outvoted() -> None:
    chosen = select_truechimers([
        Interval("a", 0.000, 0.010), Interval("b", 0.004, 0.010), Interval("c", 1.500, 0.010),
    ])
    assert (chosen.truechimers, chosen.falsetickers, chosen.majority) == (("a", "b"), ("c",), True)
    assert chosen.low == pytest.approx(-0.006) and chosen.high == pytest.approx(0.010)
    assert chosen.offset == pytest.approx(0.002) and chosen.bound == pytest.approx(0.008)


def test_two_disjoint_pairs_have_no_majority() -> None:
    chosen = select_truechimers([
        Interval("a", 0.0, 0.01), Interval("b", 0.005, 0.01),
        Interval("c", 1.0, 0.01), Interval("d", 1.005, 0.01),
    ])
    assert not chosen.majority and chosen.ambiguous
    assert (chosen.truechimers, chosen.falsetickers, chosen.offset) == ((), (), None)


def test_all_agree_and_touching_intervals_overlap() -> None:
    chosen = select_truechimers([Interval("a", 0.0, 0.5), Interval("b", 1.0, 0.5),
                                 Interval("c", 0.5, 0.5)])
    assert (chosen.truechimers, chosen.falsetickers) == (("a", "b", "c"), ())
    assert (chosen.low, chosen.high) == (0.5, 0.5)


def test_a_tie_between_two_different_sets_is_ambiguous() -> None:
    # b and c each agree with the wide a, but not with each other: one of them lies.
    chosen = select_truechimers([Interval("a", 5.0, 5.0), Interval("b", 0.5, 0.5),
                                 Interval("c", 9.5, 0.5)])
    assert chosen.ambiguous and not chosen.majority


def test_nothing_and_one_interval() -> None:
    assert select_truechimers([]).truechimers == ()
    one = select_truechimers([Interval("a", 0.25, 0.125)])
    assert (one.truechimers, one.majority, one.offset, one.bound) == (("a",), True, 0.25, 0.125)


# -- leap seconds and smearing --------------------------------------------------------------------
def test_the_leap_second_table_holds_the_27_historical_ones() -> None:
    assert len(LEAP_SECONDS) == 27  # TAI - UTC: 10 s in 1972, 37 s since 2017
    assert LEAP_SECONDS[0] == LeapSecond(date(1972, 6, 30), 1)
    assert LEAP_SECONDS[-1] == LeapSecond(date(2016, 12, 31), 1)
    assert LEAP_SECONDS[-1].instant == datetime(2017, 1, 1, tzinfo=UTC)


def test_future_leap_seconds_can_be_added() -> None:
    extra = parse_leap_second("2027-06-30:-1")
    assert extra == LeapSecond(date(2027, 6, 30), -1)
    table = with_leap_seconds([extra, parse_leap_second("2016-12-31")])
    assert len(table) == 28 and table[-1] == extra
    assert parse_leap_second("2027-12-31").delta == 1
    for bad in ["2027-06-29", "2027-06-30:+2", "June"]:
        with pytest.raises(InputError):
            parse_leap_second(bad)


def test_the_smear_window_runs_noon_to_noon_utc() -> None:
    leap = LeapSecond(date(2016, 12, 31))
    noon_before, noon_after = datetime(2016, 12, 31, 12, tzinfo=UTC), datetime(2017, 1, 1, 12,
                                                                               tzinfo=UTC)
    tick = timedelta(microseconds=1)
    assert (leap.smear_start, leap.smear_end) == (noon_before, noon_after)
    assert leap_in_window(noon_before - tick, LEAP_SECONDS) is None
    assert leap_in_window(noon_before, LEAP_SECONDS) == leap
    assert leap_in_window(noon_after - tick, LEAP_SECONDS) == leap
    assert leap_in_window(noon_after, LEAP_SECONDS) is None


def test_the_smear_difference_reaches_half_a_second_at_the_leap() -> None:
    leap = LeapSecond(date(2016, 12, 31))
    midnight = leap.instant
    assert smear_difference(leap.smear_start, leap) == 0.0
    assert smear_difference(midnight - timedelta(hours=6), leap) == -0.25  # smeared is behind
    assert smear_difference(midnight - timedelta(microseconds=1), leap) == pytest.approx(-0.5)
    assert smear_difference(midnight, leap) == 0.5  # the pool stepped back a second
    assert smear_difference(midnight + timedelta(hours=6), leap) == 0.25
    assert smear_difference(leap.smear_end, leap) == 0.0
    deleted = LeapSecond(date(2016, 12, 31), -1)
    assert smear_difference(midnight - timedelta(hours=6), deleted) == 0.25


def test_a_leap_indicator_announces_a_leap_at_the_end_of_the_month() -> None:
    last_day = datetime(2026, 6, 30, 20, tzinfo=UTC)
    assert announced_leap(last_day, 1) == LeapSecond(date(2026, 6, 30), 1)
    assert announced_leap(last_day, 2) == LeapSecond(date(2026, 6, 30), -1)
    assert announced_leap(datetime(2026, 6, 5, tzinfo=UTC), 1) == LeapSecond(date(2026, 6, 30))
    assert announced_leap(datetime(2028, 2, 29, 13, tzinfo=UTC), 1) == LeapSecond(
        date(2028, 2, 29))
    assert announced_leap(datetime(2026, 12, 31, tzinfo=UTC), 1) == LeapSecond(date(2026, 12, 31))
    assert announced_leap(last_day, 0) is None and announced_leap(last_day, 3) is None


# -- the verdict ----------------------------------------------------------------------------------
def est(server: str, offset: float, bound: float = 0.0, role: Role = Role.NTP,
        leap: int = 0) -> ServerEstimate:
    return ServerEstimate(server, role, offset, bound, leap)


def verdict(*estimates: ServerEstimate, now: datetime = NOW, **kwargs: object) -> DriftAssessment:
    return assess_drift(estimates, now=now, **kwargs)  # type: ignore[arg-type]


def codes(v: DriftAssessment) -> set[str]:
    return {f.code for f in v.findings}


@pytest.mark.parametrize(
    ("offset", "status"),
    [(0.0, "ok"), (0.05, "ok"), (-0.05, "ok"), (0.0501, "warning"), (-0.0501, "warning"),
     (0.5, "warning"), (0.5001, "critical"), (-0.5001, "critical")],
)
def test_offset_thresholds_fire_strictly_above_their_edge(offset: float, status: str) -> None:
    v = verdict(est("tss", offset, role=Role.TSS), est("pool", offset))
    assert (v.status.value, v.basis, v.offset) == (status, "quorum", offset)


@pytest.mark.parametrize(("bound", "status"), [(1.0, "ok"), (1.001, "critical")])
def test_an_error_bound_over_a_second_is_critical(bound: float, status: str) -> None:
    v = verdict(est("tss", 0.0, bound, Role.TSS), est("pool", 0.0, bound))
    assert (v.status.value, v.bound) == (status, bound)


@pytest.mark.parametrize(("tss_offset", "status"), [(0.05, "ok"), (0.0501, "warning")])
def test_tss_versus_pool_over_100_ms_warns(tss_offset: float, status: str) -> None:
    v = verdict(est("tss", tss_offset, 0.2, Role.TSS), est("pool", -0.05, 0.2))
    assert v.tss_minus_ntp == pytest.approx(tss_offset + 0.05)
    assert v.status.value == status
    assert ("tss-vs-ntp" in codes(v)) is (status == "warning")


def test_inside_the_smear_window_tss_versus_pool_does_not_alarm() -> None:
    # 8 h into the window of the 2016 leap: TSS (smeared, like our clock) is 1/3 s behind the
    # pool, whose interval is widened by that much and still agrees.
    now = datetime(2016, 12, 31, 20, tzinfo=UTC)
    v = verdict(est("tss", 0.0, 0.002, Role.TSS), est("pool-a", 0.3333, 0.002),
                est("pool-b", 0.3334, 0.002), now=now)
    assert v.status is DriftStatus.OK and v.basis == "quorum"
    assert v.smear_leap == LEAP_SECONDS[-1]
    assert v.tss_minus_ntp == pytest.approx(-0.33335)
    assert v.selection.falsetickers == ()
    assert abs(v.offset or 1.0) <= 0.002
    tss_vs_ntp = next(f for f in v.findings if f.code == "tss-vs-ntp")
    assert tss_vs_ntp.level is DriftStatus.OK
    outside = verdict(est("tss", 0.0, 0.002, Role.TSS), est("pool-a", 0.3333, 0.002),
                      est("pool-b", 0.3334, 0.002), now=now - timedelta(hours=9))
    assert outside.status is DriftStatus.WARNING and outside.smear_leap is None


def test_a_leap_indicator_on_the_last_day_opens_the_smear_window() -> None:
    evening = datetime(2026, 6, 30, 20, tzinfo=UTC)  # no leap in the table for this day
    pool = [est("pool-a", 0.3333, 0.002, leap=1), est("pool-b", 0.3334, 0.002, leap=1)]
    v = verdict(est("tss", 0.0, 0.002, Role.TSS), *pool, now=evening)
    assert v.status is DriftStatus.OK
    assert v.announced_leaps == (LeapSecond(date(2026, 6, 30)),)
    assert str(v.smear_leap) == "2026-06-30:+1"
    assert {"leap-announced", "smear-window"} <= codes(v)
    early = verdict(est("tss", 0.0, 0.002, Role.TSS), *pool, now=datetime(2026, 6, 5, 20,
                                                                          tzinfo=UTC))
    assert early.smear_leap is None and early.status is DriftStatus.WARNING  # alarm stands


def test_a_quorum_outvotes_a_falseticker() -> None:
    v = verdict(est("tss", 0.001, 0.005, Role.TSS), est("a", 0.0, 0.005), est("b", 1.5, 0.005))
    assert (v.basis, v.selection.falsetickers, v.falsetickers) == ("quorum", ("b",), 1)
    assert v.status is DriftStatus.OK and abs(v.offset or 1.0) < 0.005


def test_no_quorum_falls_back_to_tss_alone_and_says_so() -> None:
    v = verdict(est("tss", 0.010, 0.005, Role.TSS), est("pool", 0.700, 0.005))
    assert v.basis == "tss-only"
    assert v.offset == pytest.approx(0.010) and v.bound == pytest.approx(0.005)
    assert v.status is DriftStatus.WARNING and {"no-quorum", "tss-vs-ntp"} <= codes(v)


def test_servers_that_disagree_without_tss_leave_the_offset_unknown() -> None:
    v = verdict(est("a", 0.0, 0.005), est("b", 0.7, 0.005))
    assert (v.status, v.basis, v.offset, v.bound) == (DriftStatus.UNKNOWN, "none", None, None)


def test_no_answer_is_unknown() -> None:
    v = verdict(kod_count=2, timeout_count=3)
    assert (v.status, v.valid_servers, v.kod_count, v.timeout_count) == (
        DriftStatus.UNKNOWN, 0, 2, 3)
    assert "no-source" in codes(v)


def test_fewer_valid_servers_than_the_minimum_warn() -> None:
    alone = verdict(est("tss", 0.001, 0.002, Role.TSS))
    assert (alone.status, alone.basis, alone.valid_servers) == (DriftStatus.WARNING, "tss-only", 1)
    assert "few-sources" in codes(alone)
    pool_only = verdict(est("pool", 0.001, 0.002))
    assert (pool_only.status, pool_only.basis) == (DriftStatus.WARNING, "majority")
    relaxed = verdict(est("tss", 0.001, 0.002, Role.TSS),
                      thresholds=DriftThresholds(min_servers=1))
    assert relaxed.status is DriftStatus.OK


def test_the_link_local_probe_never_counts() -> None:
    v = verdict(est("169.254.169.123", 5.0, 0.001, Role.LINK_LOCAL),
                est("tss", 0.0, 0.002, Role.TSS), est("pool", 0.0, 0.002))
    assert (v.status, v.valid_servers, v.selection.truechimers) == (
        DriftStatus.OK, 2, ("tss", "pool"))
    assert verdict(est("169.254.169.123", 0.0, 0.001, Role.LINK_LOCAL)).status is (
        DriftStatus.UNKNOWN)
