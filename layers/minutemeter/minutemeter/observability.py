"""What the collector reports to CloudWatch: one EMF document per run, dimension ``SourceId``.

EMF allows one dimension set per document, and a collector invocation serves one source, so
every metric of a run shares the same ``SourceId`` dimension and is flushed once. The names
here are the contract with template.yaml's alarms and dashboard (tests/template checks both
ways).
"""

from __future__ import annotations

from dataclasses import dataclass

from minutemeter.domain.model import JobResult, JobStatus
from minutemeter.service.audit import RecentAudit
from minutemeter.service.drift import DriftReport

NAMESPACE = "Minutemeter"
SOURCE_DIMENSION = "SourceId"

# name -> CloudWatch unit
COLLECTOR_METRICS: dict[str, str] = {
    "ProcessedSamples": "Count",
    "WrittenMinutes": "Count",
    "ReplayedMinutes": "Count",
    "QuarantinedSamples": "Count",
    "CounterResets": "Count",
    "RunDuration": "Milliseconds",
    "RunFailures": "Count",
    "LeaseSkips": "Count",
    "LagSeconds": "Seconds",
    "FailureRate": "Percent",
}


@dataclass(frozen=True)
class MetricPoint:
    name: str
    unit: str
    value: float


def collector_metrics(job: JobResult) -> list[MetricPoint]:
    """The metrics of one collector run (a skipped run reports only that it skipped)."""
    skipped = job.status is JobStatus.SKIPPED
    values: dict[str, float] = {"LeaseSkips": 1.0 if skipped else 0.0}
    if not skipped:
        values.update(
            ProcessedSamples=job.processed_samples,
            WrittenMinutes=job.written_minutes,
            ReplayedMinutes=job.replayed_minutes,
            QuarantinedSamples=job.quarantined_samples,
            CounterResets=job.counter_resets,
            RunFailures=1.0 if job.status is JobStatus.ERROR else 0.0,
        )
        if job.finished_at is not None:
            duration = (job.finished_at - job.started_at).total_seconds() * 1000
            values["RunDuration"] = round(duration, 3)
    if job.lag_seconds is not None:
        values["LagSeconds"] = job.lag_seconds
    if job.health is not None:
        rate = job.health.get("failure_rate")
        if isinstance(rate, int | float):
            values["FailureRate"] = round(100.0 * rate, 2)
    return [MetricPoint(name, COLLECTOR_METRICS[name], float(v)) for name, v in values.items()]


# The drift check's metrics: no SourceId (one clock), one document per check.
DRIFT_METRICS: dict[str, str] = {
    "ClockOffset": "Milliseconds",  # signed: server minus local
    "ClockOffsetAbs": "Milliseconds",
    "ClockErrorBound": "Milliseconds",
    "TssMinusPoolAbs": "Milliseconds",
    "ValidSources": "Count",
    "Falsetickers": "Count",
    "KissOfDeath": "Count",
    "NtpTimeouts": "Count",
    "LinkLocalReachable": "Count",
    "DriftCheckHeartbeat": "Count",
}


def drift_metrics(report: DriftReport) -> list[MetricPoint]:
    """A check's metrics; an offset or bound it could not estimate is left out, not zero
    (the heartbeat and ValidSources alarms speak for a check that learned nothing)."""
    verdict = report.verdict
    values: dict[str, float] = {
        "ValidSources": verdict.valid_servers,
        "Falsetickers": verdict.falsetickers,
        "KissOfDeath": verdict.kod_count,
        "NtpTimeouts": verdict.timeout_count,
        "DriftCheckHeartbeat": 1,
    }
    if verdict.offset is not None:
        values["ClockOffset"] = round(verdict.offset * 1000, 3)
        values["ClockOffsetAbs"] = round(abs(verdict.offset) * 1000, 3)
    if verdict.bound is not None:
        values["ClockErrorBound"] = round(verdict.bound * 1000, 3)
    if verdict.tss_minus_ntp is not None and verdict.smear_leap is None:
        # inside a leap-second smear window TSS and the pool differ by design: not published,
        # so the TSS-vs-pool alarm (missing data: not breaching) stays quiet
        values["TssMinusPoolAbs"] = round(abs(verdict.tss_minus_ntp) * 1000, 3)
    if report.link_local_reachable is not None:
        values["LinkLocalReachable"] = 1 if report.link_local_reachable else 0
    return [MetricPoint(name, DRIFT_METRICS[name], float(v)) for name, v in values.items()]


# The daily audit's metrics: no SourceId (it checks every account), one document per run.
AUDIT_METRICS: dict[str, str] = {
    "AuditDifferences": "Count",  # account-months that differ (confirmed by a second audit)
    "AuditAccountsChecked": "Count",
    "AuditHeartbeat": "Count",
}


def audit_metrics(report: RecentAudit) -> list[MetricPoint]:
    """A daily audit's metrics: the months so far and just closed, together."""
    values = {"AuditDifferences": report.differences,
              "AuditAccountsChecked": report.accounts_checked, "AuditHeartbeat": 1}
    return [MetricPoint(name, AUDIT_METRICS[name], float(v)) for name, v in values.items()]
