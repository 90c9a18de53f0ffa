"""Plain JSON views of domain records, shared by the CLI and the handlers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minutemeter.domain.model import JobResult, LedgerEntry, SourceAuth, SourceConfig, SourceKind
from minutemeter.domain.timeutil import format_instant, format_second
from minutemeter.json_values import decimal_text, to_json


def entry_to_json(entry: LedgerEntry) -> dict[str, Any]:
    """A ledger entry for ``ledger export``: money and prices as decimal strings."""
    usage = entry.usage
    return {
        "ledger_id": entry.ledger_id,
        "kind": entry.kind,
        "source_id": entry.source_id,
        "node_id": usage.node_id,
        "account_id": usage.account_id,
        "minute": format_second(usage.minute),
        "bytes": usage.bytes,
        "included_bytes": entry.included_bytes,
        "billable_bytes": entry.billable_bytes,
        "amount": decimal_text(entry.amount),
        "price_per_byte": decimal_text(entry.profile.price_per_byte),
        "multiplier": decimal_text(entry.profile.effective_multiplier),
        "pricing_rule_version": entry.profile.pricing_rule_version,
        "quota_month": entry.quota_month,
        "quota_before": entry.quota_before,
        "counter_start": usage.counter_start,
        "counter_end": usage.counter_end,
        "samples": usage.samples,
        "resets": usage.resets,
        "first_taken_at": format_instant(usage.first_taken_at),
        "last_taken_at": format_instant(usage.last_taken_at),
        "collected_at": format_instant(entry.collected_at),
        "clock_bound_ms": (
            decimal_text(entry.clock_bound_ms) if entry.clock_bound_ms is not None else None
        ),
        **_correction_json(entry),
        "run_id": entry.run_id,
        "batch_id": entry.batch_id,
    }


def _correction_json(entry: LedgerEntry) -> dict[str, Any]:
    spec = entry.correction
    if spec is None:
        return {}
    return {
        "corrects": spec.corrects,
        "reason": spec.reason,
        "target_bytes": spec.target_bytes,
        "reconcile_id": spec.reconcile_id,
    }


PROMETHEUS_FIELDS = ("selector", "account_label", "node_label", "auth")


def source_to_json(source: SourceConfig) -> dict[str, Any]:
    """A source's configuration (``start`` to the second, enums by value); ``token_secret`` is
    a reference, never a token. The options of the ``prometheus`` kind (``selector``,
    ``account_label``, ``node_label``, ``auth``) are shown for sources of that kind only."""
    shown: dict[str, Any] = to_json(source, times="second")
    if source.kind is not SourceKind.PROMETHEUS and source.auth is SourceAuth.NONE:
        for name in PROMETHEUS_FIELDS:
            if shown.get(name) in (None, SourceAuth.NONE.value):
                del shown[name]
    return shown


def job_to_dict(job: JobResult) -> dict[str, Any]:
    """A job result as printed, returned by the collector and stored (``sync.record_result``):
    times fixed-width RFC 3339 to the microsecond, the status by value, Decimals kept."""
    summary: dict[str, Any] = to_json(job, times="microsecond", decimals="number")
    return summary


_COLUMNS = (
    ("source", "source_id"),
    ("watermark", "last_completed_until"),
    ("lag s", "watermark_lag_seconds"),
    ("last run", "status"),
    ("health", "health_status"),
    ("fail rate", "failure_rate"),
    ("written", "written_minutes"),
    ("replayed", "replayed_minutes"),
    ("quarantined", "quarantined_samples"),
    ("failures", "consecutive_failures"),
    ("last error", "last_error"),
)


def status_table(documents: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table of source status documents, for people. An unreadable source
    (``{"source_id", "error"}``) shows ``unreadable`` and its error in the last-error column."""
    rows = []
    for document in documents:
        job = document.get("last_job") or {}
        merged = {**job, **document}
        merged["status"] = job.get("status", "-")
        if "error" in document:
            merged.update(status="unreadable", last_error=document["error"])
        health = document.get("health") or {}
        merged["health_status"] = health.get("status")
        rate = health.get("failure_rate")
        merged["failure_rate"] = (
            f"{float(rate):.0%} of {health.get('runs')} in {health.get('window_minutes')}m"
            if rate is not None else None
        )
        for key in ("written_minutes", "replayed_minutes", "quarantined_samples"):
            merged[key] = job.get(key, "-")
        rows.append([_cell(merged.get(key)) for _, key in _COLUMNS])
    headers = [title for title, _ in _COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}"
    if hasattr(value, "strftime"):
        return format_second(value)
    text = str(value)
    return text if len(text) <= 48 else text[:45] + "..."
