"""Delivery of ledger entries to a billing system (a "sink"): what is sent, and what each
answer means. Pure: the sink adapters (``adapters/sinks/``) talk to the systems, the delivery
service (``service/delivery.py``) keeps the records that make it exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from minutemeter.domain.model import LedgerEntry


class SinkKind(StrEnum):
    """The billing system a sink delivers to; each kind has one adapter."""

    STRIPE = "stripe"  # Billing Meter Events, ``identifier`` = ledger id
    LAGO = "lago"  # events, ``transaction_id`` = ledger id


class SinkValue(StrEnum):
    """Which number of an entry is sent, never both: ``billable`` when minutemeter applies the
    included quota, ``bytes`` when the billing system applies its own free tier."""

    BILLABLE = "billable"
    BYTES = "bytes"


@dataclass(frozen=True)
class SinkConfig:
    """A registered sink. ``url`` is the API base the official client is pointed at; ``meter``
    is Stripe's meter event name or Lago's billable metric code. The API key comes from a
    Secrets Manager secret (``api_key_secret``, an ARN) or an environment variable
    (``api_key_env``, its name), exactly one of them; the key itself is never stored."""

    name: str
    kind: SinkKind
    url: str
    meter: str
    value: SinkValue
    api_key_secret: str | None = None
    api_key_env: str | None = None


@dataclass(frozen=True)
class DeliveryEvent:
    """One ledger entry as a billing system receives it. ``value`` is signed: a correction
    from reconcile may take bytes back. ``timestamp`` is UTC, whole seconds."""

    ledger_id: str
    account_id: str
    customer: str  # Stripe customer id, or Lago external subscription id (profile --customer)
    timestamp: datetime
    value: int
    kind: str  # usage | correction
    corrects: str | None = None  # the ledger id a correction corrects, when it has one


class SendStatus(StrEnum):
    """What one send of one event came to."""

    ACCEPTED = "accepted"  # the system took it now
    DUPLICATE = "duplicate"  # the system already had it (Lago 422 value_already_exist): delivered
    REJECTED = "rejected"  # it will never be taken as it is (400: timestamp out of range, ...)
    RETRY = "retry"  # certainly not taken (429, refused connection): send again later
    UNKNOWN = "unknown"  # may have been taken (timeout after sending, 5xx)


@dataclass(frozen=True)
class SendResult:
    """The answer for one event. ``detail`` is the system's error code or a short reason,
    never a key; ``retry_after`` is seconds the system asked to wait (429), if it said."""

    ledger_id: str
    status: SendStatus
    detail: str = ""
    retry_after: float | None = None


def event_value(entry: LedgerEntry, value: SinkValue) -> int:
    """The number a sink sends for an entry (signed for corrections)."""
    return entry.billable_bytes if value is SinkValue.BILLABLE else entry.usage.bytes


def event_of(entry: LedgerEntry, customer: str, value: SinkValue) -> DeliveryEvent:
    """The event for ``entry``; its timestamp is the entry's minute."""
    correction = entry.correction
    return DeliveryEvent(
        ledger_id=entry.ledger_id,
        account_id=entry.usage.account_id,
        customer=customer,
        timestamp=entry.usage.minute,
        value=event_value(entry, value),
        kind=entry.kind,
        corrects=correction.corrects if correction else None,
    )


# Stripe takes meter events whose timestamp is at most 35 days back and 5 minutes ahead
# (https://docs.stripe.com/api/billing/meter-event/create). Kept here, by kind, so that the
# delivery service (which settles an entry that is too old as rejected) and the Stripe adapter
# cannot disagree about it.
STRIPE_MAX_AGE = timedelta(days=35)
STRIPE_MAX_AHEAD = timedelta(minutes=5)
OUTSIDE_STRIPE_WINDOW = "outside_stripe_window"
AHEAD_OF_STRIPE_WINDOW = "ahead_of_stripe_window"


def timestamp_problem(kind: SinkKind, timestamp: datetime, now: datetime) -> str | None:
    """Why a system of ``kind`` would refuse an event at ``timestamp`` when sent at ``now``
    (UTC), or None. ``OUTSIDE_STRIPE_WINDOW``: older than 35 days, never taken (rejected);
    ``AHEAD_OF_STRIPE_WINDOW``: more than 5 minutes ahead, taken later (not sent yet). Lago
    has no such limit."""
    if kind is not SinkKind.STRIPE:
        return None
    if timestamp < now - STRIPE_MAX_AGE:
        return OUTSIDE_STRIPE_WINDOW
    if timestamp > now + STRIPE_MAX_AHEAD:
        return AHEAD_OF_STRIPE_WINDOW
    return None
