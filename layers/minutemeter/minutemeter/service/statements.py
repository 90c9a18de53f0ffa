"""Statements (what each account owes for a month) and the audit that checks them.

A statement is read from the account-month's quota item, where the reservations keep it
(``domain/statement.py``); the accounts of a month come from the month index, never from a
table scan. The audit recomputes each statement from the ledger entries themselves (one Query
per source and account) and compares it with the stored statement and with the quota used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from minutemeter.domain.ids import entry_ref
from minutemeter.domain.model import LedgerEntry, QuotaState
from minutemeter.domain.rating import plan_entries
from minutemeter.domain.statement import Statement, statement_of
from minutemeter.ports import LedgerStore, SourceStore

BATCH = 100  # quota items read per BatchGetItem
Progress = Callable[[int, int], None]  # (done, total)


def account_statement(
    ledger: LedgerStore, sources: SourceStore, account_id: str, month: str
) -> Statement:
    """The account's statement for ``month``: zeros when it has no usage there."""
    quota = ledger.get_quota(account_id, month)
    return _statement(ledger, sources, quota)


def month_statements(
    ledger: LedgerStore, sources: SourceStore, month: str,
    progress: Progress | None = None,
) -> Iterator[Statement]:
    """Every account's statement for ``month``, in account order, streamed in batches."""
    accounts = sorted(set(ledger.month_accounts(month)))
    done = 0
    for start in range(0, len(accounts), BATCH):
        batch = accounts[start : start + BATCH]
        found = {q.account_id: q for q in ledger.get_quotas(batch, month)}
        for account_id in batch:
            quota = found.get(account_id)
            if quota is not None:  # an index entry whose first reservation failed: no usage
                yield _statement(ledger, sources, quota)
        done += len(batch)
        if progress is not None:
            progress(done, len(accounts))


@dataclass
class AuditResult:
    month: str
    source_id: str | None
    accounts_checked: int = 0
    pending_entries: int = 0
    differences: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"month": self.month, "source_id": self.source_id,
                "accounts_checked": self.accounts_checked,
                "pending_entries": self.pending_entries,
                "difference_count": len(self.differences), "differences": self.differences,
                "status": "differences" if self.differences else "ok"}


def audit_month(
    ledger: LedgerStore, sources: SourceStore, month: str, source_id: str | None = None,
    progress: Progress | None = None,
) -> AuditResult:
    """Per account of ``month``: statement = sum of its ledger entries, and quota used = the
    entries' included bytes. With ``source_id``, only the accounts that source billed in the
    month are checked (their sums still cover every source). Entries of a reservation not yet
    written (a run that stopped between its reservation and its writes; the next writer of the
    account-month writes them) count as written, and are reported as ``pending_entries``."""
    result = AuditResult(month, source_id)
    source_ids = [s.source_id for s in sources.list_sources()]
    accounts = sorted(set(ledger.month_accounts(month)))
    for done, account_id in enumerate(accounts, start=1):
        if progress is not None:
            progress(done, len(accounts))
        quota = ledger.get_quota(account_id, month)
        if quota.version == 0:
            continue
        by_source = {s: list(ledger.month_entries(s, account_id, month)) for s in source_ids}
        if source_id is not None and not by_source.get(source_id):
            continue
        entries = [e for found in by_source.values() for e in found]
        pending = _unwritten(quota, entries)
        result.pending_entries += len(pending)
        result.accounts_checked += 1
        difference = _difference(quota, statement_of(account_id, month, [*entries, *pending]))
        if difference is not None:
            result.differences.append(difference)
    return result


def _statement(ledger: LedgerStore, sources: SourceStore, quota: QuotaState) -> Statement:
    if quota.statement is not None:
        return quota.statement
    if quota.version == 0:
        return Statement(quota.account_id, quota.month)
    # stored before statements existed: what its entries add up to
    entries = [e for s in sources.list_sources()
               for e in ledger.month_entries(s.source_id, quota.account_id, quota.month)]
    return statement_of(quota.account_id, quota.month, [*entries, *_unwritten(quota, entries)])


def _unwritten(quota: QuotaState, written: Sequence[LedgerEntry]) -> list[LedgerEntry]:
    if quota.pending is None:
        return []
    have = {entry_ref(e) for e in written}
    return [e for e in plan_entries(quota.pending) if entry_ref(e) not in have]


def _difference(quota: QuotaState, ledger: Statement) -> dict[str, object] | None:
    stored = quota.statement
    problems = []
    if stored is None:
        problems.append("no statement stored (an item from before statements)")
    elif stored.totals != ledger.totals or dict(stored.by_pricing) != dict(ledger.by_pricing):
        problems.append("statement differs from the sum of the ledger")
    if quota.used_bytes != ledger.totals.included_bytes:
        problems.append("quota used differs from the included bytes of the ledger")
    if not problems:
        return None
    return {"account_id": quota.account_id, "problems": problems,
            "statement": stored.to_json() if stored is not None else None,
            "ledger": ledger.to_json(), "quota_used_bytes": quota.used_bytes}
