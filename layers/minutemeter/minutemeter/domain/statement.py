"""What an account owes for a month: the sum of its ledger entries, per pricing version too.

A statement lives on the account-month's quota item and moves in the same conditional write
that reserves a plan (``service/commit.py``), by exactly the entries of that plan: the entries
are a pure function of the plan, and the plan is written once. So statement, entries and quota
move together, crash or no crash; ``audit`` checks that they agree.

Amounts are summed exactly (``AMOUNT_CONTEXT``: no rounding, ever) and stored as text, so a
month of 38-digit amounts cannot overflow a DynamoDB number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Context, Decimal, Inexact, Rounded

from minutemeter.domain.model import LedgerEntry

AMOUNT_CONTEXT = Context(prec=200, traps=[Inexact, Rounded])


@dataclass(frozen=True)
class Totals:
    """Sums over some ledger entries. ``bytes`` counts corrections with their sign."""

    bytes: int = 0
    included_bytes: int = 0
    billable_bytes: int = 0
    amount: Decimal = Decimal(0)
    entries: int = 0  # usage entries
    corrections: int = 0  # correction entries

    def plus(self, entry: LedgerEntry) -> Totals:
        correction = entry.kind == "correction"
        return Totals(
            bytes=self.bytes + entry.usage.bytes,
            included_bytes=self.included_bytes + entry.included_bytes,
            billable_bytes=self.billable_bytes + entry.billable_bytes,
            amount=AMOUNT_CONTEXT.add(self.amount, entry.amount),
            entries=self.entries + (0 if correction else 1),
            corrections=self.corrections + (1 if correction else 0),
        )


@dataclass(frozen=True)
class Statement:
    """One account's month: the totals and the totals per pricing rule version."""

    account_id: str
    month: str  # YYYY-MM, UTC
    totals: Totals = Totals()
    by_pricing: Mapping[str, Totals] = field(default_factory=dict)

    def plus(self, entries: Iterable[LedgerEntry]) -> Statement:
        """This statement with ``entries`` added (each must be of this account and month)."""
        totals, by_pricing = self.totals, dict(self.by_pricing)
        for entry in entries:
            if entry.usage.account_id != self.account_id or entry.quota_month != self.month:
                raise ValueError(f"entry {entry.ledger_id} is not of {self.account_id} "
                                 f"{self.month}")
            totals = totals.plus(entry)
            version = entry.profile.pricing_rule_version
            by_pricing[version] = by_pricing.get(version, Totals()).plus(entry)
        return replace(self, totals=totals, by_pricing=by_pricing)

    def to_json(self) -> dict[str, object]:
        """The statement as the CLI and the API show it (amounts as decimal strings)."""
        return {"account_id": self.account_id, "month": self.month,
                **_totals_json(self.totals),
                "by_pricing": {v: _totals_json(t) for v, t in sorted(self.by_pricing.items())}}


def sum_totals(parts: Iterable[Totals]) -> Totals:
    """The totals of several parts (of a statement's pricing versions, say)."""
    total = Totals()
    for part in parts:
        total = Totals(total.bytes + part.bytes, total.included_bytes + part.included_bytes,
                       total.billable_bytes + part.billable_bytes,
                       AMOUNT_CONTEXT.add(total.amount, part.amount),
                       total.entries + part.entries, total.corrections + part.corrections)
    return total


def statement_of(account_id: str, month: str, entries: Iterable[LedgerEntry]) -> Statement:
    """The statement that ``entries`` (all of the account-month) add up to."""
    return Statement(account_id, month).plus(entries)


def _totals_json(totals: Totals) -> dict[str, object]:
    return {"bytes": totals.bytes, "included_bytes": totals.included_bytes,
            "billable_bytes": totals.billable_bytes, "amount": format(totals.amount, "f"),
            "entries": totals.entries, "corrections": totals.corrections}
