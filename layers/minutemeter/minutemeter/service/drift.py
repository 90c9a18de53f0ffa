"""The drift check: measure the local clock against TSS and NTP servers, then judge it.

Each server is measured in its own thread: resolve the name once to an IPv4 address, then up
to ``samples`` requests spaced apart (at least 15 s to a pool server, see
:func:`minutemeter.domain.drift.sample_spacing`), each checked by
:func:`minutemeter.domain.ntp_math.assess_reply`; the smallest-delay valid sample stands for the
server. Kiss-o'-Death DENY/RSTR stops a server, RATE doubles its spacing. The whole run stays
within ``budget_s`` (monotonic clock): no request starts that could not finish in time, and a
thread still stuck (a name lookup that hangs) is abandoned and reported as a timeout.

The link-local TSS address is probed once with a short timeout and only reported. Nothing is
kept between calls: every monotonic reading lives and dies inside one call (Lambda freezes the
monotonic clock between invocations).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from minutemeter.domain.drift import (
    LEAP_SECONDS,
    LeapSecond,
    Role,
    ServerSpec,
    parse_server,
    sample_spacing,
)
from minutemeter.domain.drift_assessment import (
    DriftAssessment,
    DriftThresholds,
    ServerEstimate,
    assess_drift,
)
from minutemeter.domain.errors import InputError
from minutemeter.domain.model import ClockVerdict
from minutemeter.domain.ntp_math import (
    KissAction,
    NtpError,
    NtpResolveError,
    NtpSample,
    NtpTimeoutError,
    Rejection,
    assess_reply,
    best_sample,
)
from minutemeter.domain.timeutil import format_instant
from minutemeter.ports import Clock, NtpClient

DEFAULT_TSS_HOST = "time.aws.com"
LINK_LOCAL_TSS = "169.254.169.123"
DEFAULT_NTP_HOSTS = ("0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org")

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class ServerReport:
    """One server's part of the report. Seconds here; :meth:`to_json` gives milliseconds."""

    server: str
    role: Role
    address: str | None
    sample: NtpSample | None
    error_bound: float | None
    samples: int
    attempts: int
    timeouts: int
    kiss_codes: tuple[str, ...]
    status: str  # ok | falseticker | kod | rejected | timeout | error | unresolved | skipped
    reason: str

    def to_json(self) -> dict[str, object]:
        """This server's row of the report as a JSON object, milliseconds."""
        s = self.sample
        return {
            "server": self.server,
            "role": self.role.value,
            "address": self.address,
            "offset_ms": _to_ms(s.offset) if s else None,
            "delay_ms": _to_ms(s.delay) if s else None,
            "error_bound_ms": _to_ms(self.error_bound),
            "stratum": s.stratum if s else None,
            "leap": s.leap if s else None,
            "samples": self.samples,
            "attempts": self.attempts,
            "timeouts": self.timeouts,
            "kiss_codes": list(self.kiss_codes),
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class DriftReport:
    """The outcome of one drift check: per-server measurements and the assessment of the
    local clock (``verdict``, as the JSON output names it)."""

    checked_at: datetime
    elapsed: float
    servers: tuple[ServerReport, ...]
    verdict: DriftAssessment

    @property
    def tss_minus_ntp(self) -> float | None:
        return self.verdict.tss_minus_ntp

    @property
    def link_local_reachable(self) -> bool | None:
        probes = [s for s in self.servers if s.role is Role.LINK_LOCAL]
        return any(s.sample is not None for s in probes) if probes else None

    def to_json(self) -> dict[str, object]:
        """The report as a JSON object (the CLI's and the Lambda's output), milliseconds."""
        v, sel = self.verdict, self.verdict.selection
        return {
            "checked_at": format_instant(self.checked_at),
            "elapsed_ms": _to_ms(self.elapsed),
            "servers": [s.to_json() for s in self.servers],
            "tss_minus_ntp_ms": _to_ms(v.tss_minus_ntp),
            "link_local_reachable": self.link_local_reachable,
            "selection": {
                "truechimers": list(sel.truechimers),
                "falsetickers": list(sel.falsetickers),
                "offset_ms": _to_ms(sel.offset),
                "error_bound_ms": _to_ms(sel.bound),
                "majority": sel.majority,
                "ambiguous": sel.ambiguous,
            },
            "verdict": {
                "status": v.status.value,
                "basis": v.basis,
                "offset_ms": _to_ms(v.offset),
                "error_bound_ms": _to_ms(v.bound),
                "tss_minus_ntp_ms": _to_ms(v.tss_minus_ntp),
                "valid_sources": v.valid_servers,  # the output key stays as published
                "falsetickers": v.falsetickers,
                "kod_count": v.kod_count,
                "timeout_count": v.timeout_count,
                "smear_window": str(v.smear_leap) if v.smear_leap else None,
                "announced_leaps": [str(leap) for leap in v.announced_leaps],
                "findings": [
                    {"code": f.code, "level": f.level.value, "message": f.message}
                    for f in v.findings
                ],
            },
        }

    def to_json_text(self) -> str:
        """:meth:`to_json` serialised: one line of JSON text."""
        return json.dumps(self.to_json(), sort_keys=False)

    def clock_verdict(self) -> ClockVerdict:
        """The verdict as the clock guard stores it (offset and bound 0 when ``unknown``)."""
        v = self.verdict
        return ClockVerdict(
            measured_at=self.checked_at,
            status=v.status.value,
            offset_ms=Decimal(str(_to_ms(v.offset) or 0)),
            bound_ms=Decimal(str(_to_ms(v.bound) or 0)),
            valid_sources=v.valid_servers,
            detail="; ".join(f.message for f in v.findings) or v.basis,
        )


def run_drift_check(
    clock: Clock,
    client: NtpClient,
    sleep: Sleep,
    *,
    tss: str | None = DEFAULT_TSS_HOST,
    ntp: Sequence[str] = DEFAULT_NTP_HOSTS,
    link_local: str | None = LINK_LOCAL_TSS,
    samples: int = 3,
    tss_spacing_s: float = 2.0,
    ntp_spacing_s: float = 15.0,
    timeout_s: float = 1.0,
    link_local_timeout_s: float = 0.25,
    budget_s: float = 40.0,
    thresholds: DriftThresholds | None = None,
    leap_seconds: Sequence[LeapSecond] = LEAP_SECONDS,
) -> DriftReport:
    """Measure every server in parallel and judge the local clock.

    ``tss``, ``ntp`` and ``link_local`` are ``host[:port]`` (IPv4 literal or name, numeric
    port). ``ntp_spacing_s`` is raised to 15 s for any ``ntp`` server not on loopback. Raises
    :class:`InputError` for a malformed server or parameter; NTP failures never raise, they are
    reported per server.
    """
    if samples < 1 or timeout_s <= 0 or link_local_timeout_s <= 0 or budget_s <= 0:
        raise InputError("samples >= 1 and positive timeouts and budget are required")
    if min(tss_spacing_s, ntp_spacing_s) < 0:
        raise InputError("spacing cannot be negative")
    specs = _specs(tss, ntp, link_local)
    checked_at = clock.now()
    start = clock.monotonic()
    deadline = start + budget_s

    def measure(spec: ServerSpec) -> _Probe:
        if spec.role is Role.LINK_LOCAL:
            return _probe(spec, clock, client, sleep, 1, 0.0, link_local_timeout_s, deadline)
        spacing = tss_spacing_s if spec.role is Role.TSS else ntp_spacing_s
        return _probe(spec, clock, client, sleep, samples, spacing, timeout_s, deadline)

    executor = ThreadPoolExecutor(max_workers=max(1, len(specs)), thread_name_prefix="drift")
    try:
        futures = [executor.submit(measure, spec) for spec in specs]
        wait(futures, timeout=budget_s + 2 * timeout_s)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    # A finished thread's own exception (a bug, not an NTP failure) propagates from result().
    probes = [
        f.result() if f.done() else _Probe(spec, abandoned=True)
        for spec, f in zip(specs, futures, strict=True)
    ]
    end = clock.monotonic()
    estimates = []
    for probe in probes:
        best = probe.best()
        if best is not None:
            sample, taken_at = best
            estimates.append(ServerEstimate(
                probe.spec.label, probe.spec.role, sample.offset,
                sample.error_bound(age=end - taken_at), sample.leap,
            ))
    counted = [p for p in probes if p.spec.role is not Role.LINK_LOCAL]
    verdict = assess_drift(
        estimates,
        now=checked_at,
        thresholds=thresholds,
        leap_seconds=leap_seconds,
        kod_count=sum(len(p.kiss_codes) for p in counted),
        timeout_count=sum(p.timeouts + (1 if p.abandoned else 0) for p in counted),
    )
    bounds = {e.server: e.bound for e in estimates}
    servers = tuple(p.report(verdict, bounds.get(p.spec.label)) for p in probes)
    return DriftReport(checked_at, end - start, servers, verdict)


def _specs(tss: str | None, ntp: Sequence[str], link_local: str | None) -> list[ServerSpec]:
    specs: list[ServerSpec] = []
    if isinstance(ntp, str):  # one server given as a bare string, not its characters
        ntp = [ntp]
    wanted = [(tss, Role.TSS), *((text, Role.NTP) for text in ntp), (link_local, Role.LINK_LOCAL)]
    for text, role in wanted:
        if text:
            spec = parse_server(text, role)
            if all(s.label != spec.label for s in specs):
                specs.append(spec)
    return specs


def _to_ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds for the report, rounded to the microsecond; None stays None."""
    return None if seconds is None else round(seconds * 1000, 3)


@dataclass
class _Probe:
    """What one server's thread saw (mutable while the thread runs, then only read)."""

    spec: ServerSpec
    address: str | None = None
    samples: list[tuple[NtpSample, float]] = field(default_factory=list)  # with monotonic time
    attempts: int = 0
    timeouts: int = 0
    kiss_codes: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped: str | None = None
    abandoned: bool = False

    def best(self) -> tuple[NtpSample, float] | None:
        best = best_sample(sample for sample, _ in self.samples)
        return next(((s, m) for s, m in self.samples if s is best), None)

    def report(self, verdict: DriftAssessment, bound: float | None) -> ServerReport:
        best = self.best()
        sample = best[0] if best else None
        status, reason = self._status(verdict, sample)
        return ServerReport(
            server=self.spec.label, role=self.spec.role, address=self.address, sample=sample,
            error_bound=bound, samples=len(self.samples), attempts=self.attempts,
            timeouts=self.timeouts, kiss_codes=tuple(self.kiss_codes), status=status,
            reason=reason,
        )

    def _status(self, verdict: DriftAssessment, best: NtpSample | None) -> tuple[str, str]:
        label = self.spec.label
        if best is not None:
            used = f"best (least delay) of {len(self.samples)} valid sample(s)"
            if self.spec.role is Role.LINK_LOCAL:
                return "ok", "reachable; reported only, never used in the verdict"
            if label in verdict.selection.falsetickers:
                return "falseticker", "its interval misses the majority's common interval"
            if label not in verdict.selection.truechimers:
                return "ok", f"{used}; no majority among the servers to check it against"
            return "ok", used
        if self.abandoned:
            return "timeout", "still unanswered when the time budget ran out"
        if self.stopped:
            return "kod", self.stopped
        if self.rejections:
            last = self.rejections[-1]
            return ("kod" if last.kiss_code else "rejected"), last.detail
        if self.timeouts:
            return "timeout", (f"{self.timeouts} of {self.attempts} request(s) unanswered; "
                               f"last: {self.errors[-1]}")
        if self.errors:
            return ("unresolved" if self.address is None else "error"), self.errors[-1]
        return "skipped", "no time left in the budget"


def _probe(
    spec: ServerSpec,
    clock: Clock,
    client: NtpClient,
    sleep: Sleep,
    samples: int,
    spacing: float,
    timeout: float,
    deadline: float,
) -> _Probe:
    probe = _Probe(spec)
    try:
        probe.address = client.resolve(spec.host)
    except NtpResolveError as exc:
        probe.errors.append(str(exc))
        return probe
    gap = sample_spacing(spec.role, probe.address, spacing)
    last_sent: float | None = None
    for _ in range(samples):
        now = clock.monotonic()
        if last_sent is not None:
            send_at = max(now, last_sent + gap)
            if send_at + timeout > deadline:
                break
            if send_at > now:
                sleep(send_at - now)
                now = clock.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            break
        last_sent = now
        probe.attempts += 1
        try:
            reply = client.query(probe.address, spec.port, timeout=min(timeout, remaining))
        except NtpTimeoutError as exc:
            probe.timeouts += 1
            probe.errors.append(str(exc))
            continue
        except NtpError as exc:
            probe.errors.append(str(exc))
            continue
        outcome = assess_reply(reply)
        if isinstance(outcome, NtpSample):
            probe.samples.append((outcome, clock.monotonic()))
            continue
        probe.rejections.append(outcome)
        if outcome.kiss_code is not None:
            probe.kiss_codes.append(outcome.kiss_code)
            if outcome.kiss_action is KissAction.STOP:
                probe.stopped = f"{outcome.kiss_code}: the server asked us to stop"
                break
            if outcome.kiss_action is KissAction.SLOW_DOWN:
                gap *= 2
    return probe
