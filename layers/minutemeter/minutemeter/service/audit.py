"""The deployed stack's daily audit: ``minutemeter audit`` for the month so far and the month
just closed, as one report (``functions/audit``; alarms in docs/alarms.md).

The audit reads each account's quota item and then its entries; a reservation that lands
between the two reads makes a healthy account look different for a moment (its statement moved
after the read, or its entries were written before the second). So an account counts as
differing only when a second audit of the month, started after the first ended, finds it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from minutemeter.domain.timeutil import month_of
from minutemeter.ports import LedgerStore, SourceStore
from minutemeter.service.statements import AuditResult, audit_month


@dataclass(frozen=True)
class RecentAudit:
    """The audits of the months checked, oldest first."""

    results: tuple[AuditResult, ...]

    @property
    def differences(self) -> int:
        """Account-months whose statement, ledger sum and quota used differ."""
        return sum(len(r.differences) for r in self.results)

    @property
    def accounts_checked(self) -> int:
        return sum(r.accounts_checked for r in self.results)

    def to_json(self) -> dict[str, object]:
        return {"status": "differences" if self.differences else "ok",
                "difference_count": self.differences,
                "accounts_checked": self.accounts_checked,
                "months": [r.to_json() for r in self.results]}


def audit_recent_months(ledger: LedgerStore, sources: SourceStore, now: datetime) -> RecentAudit:
    """Audit the month before ``now``'s (UTC) and ``now``'s month; a difference is confirmed by
    a second audit of its month (see the module's docstring)."""
    current = month_of(now)
    results = []
    for month in (previous_month(current), current):
        first = audit_month(ledger, sources, month)
        if first.differences:
            again = audit_month(ledger, sources, month)
            seen = {d["account_id"] for d in first.differences}
            again.differences = [d for d in again.differences if d["account_id"] in seen]
            first = again
        results.append(first)
    return RecentAudit(tuple(results))


def previous_month(month: str) -> str:
    """``YYYY-MM`` of the month before ``month``."""
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"
