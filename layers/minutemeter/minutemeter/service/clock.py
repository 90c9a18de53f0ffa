"""The drift check as a use case: measure with the configured servers, keep the verdict."""

from __future__ import annotations

from dataclasses import dataclass

from minutemeter.domain.drift import LeapSecond, parse_leap_second, with_leap_seconds
from minutemeter.domain.drift_assessment import DriftThresholds
from minutemeter.ports import Clock, ClockVerdictStore, NtpClient
from minutemeter.service.drift import DriftReport, Sleep, run_drift_check
from minutemeter.settings import Settings


@dataclass(frozen=True)
class Servers:
    """Which servers to ask: ``host[:port]`` each."""

    tss: str | None
    ntp: tuple[str, ...]
    link_local: str | None


def configured_servers(settings: Settings) -> Servers:
    return Servers(settings.drift_tss, settings.drift_ntp, settings.drift_link_local)


def thresholds(settings: Settings) -> DriftThresholds:
    return DriftThresholds(
        warning_offset=settings.drift_warning_offset_ms / 1000,
        critical_offset=settings.drift_critical_offset_ms / 1000,
        critical_bound=settings.drift_critical_bound_ms / 1000,
        tss_vs_ntp=settings.drift_tss_vs_ntp_ms / 1000,
    )


def leap_seconds(settings: Settings) -> tuple[LeapSecond, ...]:
    """The built-in table plus ``MINUTEMETER_EXTRA_LEAP_SECONDS`` (announced ones)."""
    extra = [parse_leap_second(t) for t in settings.extra_leap_seconds.split(",") if t.strip()]
    return with_leap_seconds(extra)


def check_clock(
    settings: Settings,
    clock: Clock,
    client: NtpClient,
    sleep: Sleep,
    *,
    servers: Servers | None = None,
    verdicts: ClockVerdictStore | None = None,
    spacing_seconds: float = 2.0,
) -> DriftReport:
    """Measure the clock and, given a ``verdicts`` store, keep the verdict for the collectors'
    clock guard. Samples to one server are ``spacing_seconds`` apart, and never less than 15 s
    apart for a pool server (``domain.drift.sample_spacing`` enforces it)."""
    chosen = servers or configured_servers(settings)
    report = run_drift_check(
        clock,
        client,
        sleep,
        tss=chosen.tss,
        ntp=chosen.ntp,
        link_local=chosen.link_local,
        samples=settings.drift_samples,
        budget_s=float(settings.drift_budget_seconds),
        thresholds=thresholds(settings),
        leap_seconds=leap_seconds(settings),
        tss_spacing_s=spacing_seconds,
        ntp_spacing_s=spacing_seconds,
    )
    if verdicts is not None:
        verdicts.put_clock_verdict(report.clock_verdict())
    return report
