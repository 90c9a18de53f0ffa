"""The verdict on the local clock: the servers' estimates combined into a :class:`DriftAssessment`.

Pure: a function of the estimates and ``now``; seconds everywhere (the findings' messages show
milliseconds). Servers, leap seconds and interval selection are in
:mod:`minutemeter.domain.drift`.

Inside a leap second's smear window (see :mod:`minutemeter.domain.drift`) the unsmeared
servers' intervals are widened by the current smear difference, and their disagreement with TSS
is reported but not alarmed. The smeared scale is the reference there: it is the one AWS
services (and Lambda) keep.

Not to be confused with :class:`minutemeter.domain.model.ClockVerdict`: the short summary of an
assessment that the state table keeps for the collectors' clock guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from minutemeter.domain.drift import (
    LEAP_SECONDS,
    SMEARED_ROLES,
    Interval,
    LeapSecond,
    Role,
    Selection,
    announced_leap,
    leap_in_window,
    select_truechimers,
    smear_difference,
)


class DriftStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"  # no estimate of the local offset: no valid server, or no quorum


_SEVERITY = {DriftStatus.OK: 0, DriftStatus.WARNING: 1, DriftStatus.CRITICAL: 2}


@dataclass(frozen=True)
class DriftThresholds:
    """Alarm thresholds, seconds. Each fires when the value is strictly greater.

    ``min_servers`` (a count): the fewest valid servers, link-local ones aside, for a quorum.
    """

    warning_offset: float = 0.050
    critical_offset: float = 0.500
    critical_bound: float = 1.000
    tss_vs_ntp: float = 0.100
    min_servers: int = 2


@dataclass(frozen=True)
class ServerEstimate:
    """One server's best sample: ``offset ± bound`` seconds (server minus local), its LI."""

    server: str
    role: Role
    offset: float
    bound: float
    leap: int = 0


@dataclass(frozen=True)
class Finding:
    """One observation behind the verdict; ``level`` is the status it calls for."""

    code: str
    level: DriftStatus
    message: str


@dataclass(frozen=True)
class DriftAssessment:
    """The verdict of one drift check: the local clock's offset (server time minus local time,
    seconds), its error bound, and the findings behind its status.

    ``basis``: ``quorum`` (a majority of at least ``min_servers`` valid servers agree),
    ``tss-only`` (no quorum: the Time Sync Service alone), ``majority`` (fewer than
    ``min_servers`` servers, but no disagreement), or ``none`` (no estimate).
    """

    status: DriftStatus
    basis: str
    offset: float | None
    bound: float | None
    tss_minus_ntp: float | None
    selection: Selection
    valid_servers: int
    kod_count: int
    timeout_count: int
    smear_leap: LeapSecond | None
    announced_leaps: tuple[LeapSecond, ...]
    findings: tuple[Finding, ...]

    @property
    def falsetickers(self) -> int:
        return len(self.selection.falsetickers)


def _group(estimates: Sequence[ServerEstimate], widen: float = 0.0) -> Selection:
    return select_truechimers([Interval(e.server, e.offset, e.bound + widen) for e in estimates])


def _format_ms(seconds: float) -> str:
    """Seconds as text for a finding's message: ``0.0123`` -> ``"12.3 ms"``."""
    return f"{seconds * 1000:.1f} ms"


def assess_drift(
    estimates: Sequence[ServerEstimate],
    *,
    now: datetime,
    thresholds: DriftThresholds | None = None,
    leap_seconds: Sequence[LeapSecond] = LEAP_SECONDS,
    kod_count: int = 0,
    timeout_count: int = 0,
) -> DriftAssessment:
    """Combine the servers' estimates (link-local ones are ignored) into a verdict at ``now``."""
    limits = thresholds or DriftThresholds()
    used = [e for e in estimates if e.role is not Role.LINK_LOCAL]
    tss = [e for e in used if e.role in SMEARED_ROLES]
    ntp = [e for e in used if e.role not in SMEARED_ROLES]
    announced = tuple(sorted({a for e in used if (a := announced_leap(now, e.leap))}))
    leap = leap_in_window(now, (*leap_seconds, *announced))
    widen = abs(smear_difference(now, leap)) if leap else 0.0
    selection = select_truechimers(
        [Interval(e.server, e.offset, e.bound + (0.0 if e.role in SMEARED_ROLES else widen))
         for e in used]
    )
    tss_sel, ntp_sel = _group(tss), _group(ntp)
    tss_minus_ntp = (
        tss_sel.offset - ntp_sel.offset
        if tss_sel.majority and ntp_sel.majority
        and tss_sel.offset is not None and ntp_sel.offset is not None
        else None
    )
    findings: list[Finding] = []

    def note(code: str, level: DriftStatus, message: str) -> None:
        findings.append(Finding(code, level, message))

    quorum = selection.majority and len(selection.truechimers) >= limits.min_servers
    chosen: Selection | None = None
    if quorum:
        basis, chosen = "quorum", selection
    elif tss_sel.majority:
        basis, chosen = "tss-only", tss_sel
        if len(used) > 1:
            note("no-quorum", DriftStatus.WARNING, "no quorum among servers: TSS alone")
    elif selection.majority:
        basis, chosen = "majority", selection
    else:
        basis = "none"
        if used:
            note("no-quorum", DriftStatus.UNKNOWN, "servers disagree and TSS gave no answer")
    if not used:
        note("no-source", DriftStatus.UNKNOWN, "no server gave a valid answer")
    elif len(used) < limits.min_servers:
        # code and wording are published (the CLI's findings, the stored verdict's detail)
        note("few-sources", DriftStatus.WARNING,
             f"{len(used)} valid source(s), fewer than {limits.min_servers}")
    offset = chosen.offset if chosen else None
    bound = chosen.bound if chosen else None
    if offset is not None and abs(offset) > limits.critical_offset:
        note("offset", DriftStatus.CRITICAL, f"|offset| {_format_ms(abs(offset))} > "
             f"{_format_ms(limits.critical_offset)}")
    elif offset is not None and abs(offset) > limits.warning_offset:
        note("offset", DriftStatus.WARNING, f"|offset| {_format_ms(abs(offset))} > "
             f"{_format_ms(limits.warning_offset)}")
    if bound is not None and bound > limits.critical_bound:
        note("bound", DriftStatus.CRITICAL, f"error bound {_format_ms(bound)} > "
             f"{_format_ms(limits.critical_bound)}")
    if tss_minus_ntp is not None and abs(tss_minus_ntp) > limits.tss_vs_ntp:
        if leap is None:
            note("tss-vs-ntp", DriftStatus.WARNING, f"|TSS - NTP| "
                 f"{_format_ms(abs(tss_minus_ntp))} > {_format_ms(limits.tss_vs_ntp)}")
        else:
            note("tss-vs-ntp", DriftStatus.OK, f"|TSS - NTP| {_format_ms(abs(tss_minus_ntp))}, "
                 f"expected inside the smear window of leap second {leap}")
    if leap is not None:
        note("smear-window", DriftStatus.OK, f"inside the smear window of leap second {leap}: "
             f"pool intervals widened by {_format_ms(widen)}")
    for announced_leap_second in announced:
        note("leap-announced", DriftStatus.OK, f"a server announces leap second "
             f"{announced_leap_second}")
    if chosen is None:
        status = DriftStatus.UNKNOWN
    else:
        levels = [f.level for f in findings if f.level in _SEVERITY]
        status = max(levels, key=_SEVERITY.__getitem__, default=DriftStatus.OK)
    return DriftAssessment(
        status=status,
        basis=basis,
        offset=offset,
        bound=bound,
        tss_minus_ntp=tss_minus_ntp,
        selection=selection,
        valid_servers=len(used),
        kod_count=kod_count,
        timeout_count=timeout_count,
        smear_leap=leap,
        announced_leaps=announced,
        findings=tuple(findings),
    )
