"""``ledger export``: the ledger's entries by source or by account, month by month, with Query.

The entries of a source and an account sit in one partition (``ENTRY#<source>#<account>``),
sorted by minute. So:

- by source and month: the month's accounts (the month index) → one Query per account;
- by account and month: the sources (the registry, and the sources the account's quota item
  of the month has marks of, so that a source no longer registered is not lost) → one Query
  per source;
- both: one Query per month;
- without ``--month``: every month from ``--since`` (default: the earliest ``start`` of the
  sources) to ``--until`` (default: now), the same way;
- neither source nor account: the only Scan (``--all``, or the first phase's bare form).

No index on the entries: a GSI would add a write unit to every entry, and a commit costs 1.27
WCU per billed account-minute today. The order is (month, source, account, sort key), and a
:class:`Position` in it is what a cursor names: resuming emits exactly the entries after it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from minutemeter.domain.errors import InputError
from minutemeter.domain.marks import mark_source
from minutemeter.domain.model import LedgerEntry
from minutemeter.domain.timeutil import month_of
from minutemeter.ports import LedgerFilter, LedgerStore, SourceStore

MAX_CURSOR = 2_000  # characters: a cursor names ids and a sort key, far less than this


@dataclass(frozen=True, order=True)
class Position:
    """Where an entry is in the export's order: its month, source, account and its key in the
    partition (:meth:`minutemeter.ports.LedgerStore.partition_entries`)."""

    month: str
    source_id: str
    account_id: str
    key: str


@dataclass(frozen=True)
class ExportRequest:
    """What to export. ``month`` (``YYYY-MM``) or ``since``/``until`` (minutes in
    ``[since, until)``, UTC); ``scan``: every entry with a table Scan (``--all``)."""

    source_id: str | None = None
    account_id: str | None = None
    month: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    scan: bool = False
    after: Position | None = None

    @property
    def is_scan(self) -> bool:
        return self.scan or (self.source_id is None and self.account_id is None)


@dataclass(frozen=True)
class Exported:
    """One entry; ``position`` is ``None`` in a scan (a scan cannot be resumed)."""

    entry: LedgerEntry
    position: Position | None


def check_request(request: ExportRequest) -> None:
    """Raise :class:`InputError` for a combination the command does not accept."""
    if request.scan and (request.source_id or request.account_id):
        raise InputError("--all exports every entry: give it instead of --source/--account")
    if request.month and (request.since or request.until):
        raise InputError("give --month or --since/--until, not both")
    if request.month and request.is_scan and not request.scan:
        raise InputError("--month needs --source, --account or --all (the only scan)")
    if request.since and request.until and request.since >= request.until:
        raise InputError("--since must be before --until")
    if request.after is not None and request.is_scan:
        raise InputError("--after resumes an export by --source or --account; a scan cannot")


def export_entries(
    ledger: LedgerStore, sources: SourceStore, request: ExportRequest, now: datetime
) -> Iterator[Exported]:
    """The entries ``request`` selects, in the order above; read as the caller iterates."""
    check_request(request)
    if request.is_scan:
        since, until = _month_range(request.month) if request.month else (request.since,
                                                                           request.until)
        for entry in ledger.export(LedgerFilter(since=since, until=until)):
            yield Exported(entry, None)
        return
    for month in _months(sources, request, now):
        low, high = _month_range(month)
        low, high = max(low, request.since or low), min(high, request.until or high)
        for source_id, account_id in _partitions(ledger, sources, request, month):
            here = (month, source_id, account_id)
            after = request.after
            if after is not None and here < (after.month, after.source_id, after.account_id):
                continue
            key = after.key if after is not None and here == (
                after.month, after.source_id, after.account_id) else None
            for found, entry in ledger.partition_entries(source_id, account_id, since=low,
                                                         until=high, after=key):
                yield Exported(entry, Position(month, source_id, account_id, found))


def encode_cursor(position: Position) -> str:
    """An opaque, URL-safe cursor naming ``position`` (base64url of a small JSON array)."""
    text = json.dumps([position.month, position.source_id, position.account_id, position.key],
                      separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor of :func:`encode_cursor` names; :class:`InputError` otherwise."""
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError("too long")
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_",
                               validate=True)
        fields = json.loads(raw.decode())
        if not (isinstance(fields, list) and len(fields) == 4
                and all(isinstance(f, str) and f for f in fields)):
            raise ValueError("not a position")
        month = fields[0]
        if len(month) != 7 or month_of(datetime.strptime(month, "%Y-%m").replace(
                tzinfo=UTC)) != month:
            raise ValueError("not a month")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InputError(f"--after is not a cursor this command printed: "
                         f"{cursor[:40]!r}") from exc
    return Position(*fields)


def _months(sources: SourceStore, request: ExportRequest, now: datetime) -> list[str]:
    if request.month:
        return [request.month]
    since = request.since or _first_start(sources, request.source_id)
    if since is None:
        return []  # nothing registered and no --since: no source has billed anything
    last = month_of(request.until - _TICK) if request.until else month_of(now)
    months, month = [], month_of(since)
    while month <= last:
        months.append(month)
        month = _next_month(month)
    return months


def _first_start(sources: SourceStore, source_id: str | None) -> datetime | None:
    """The start of ``source_id`` when it is registered, else the earliest of every source."""
    registered = sources.list_sources()
    own = [s.start for s in registered if s.source_id == source_id]
    return min(own or [s.start for s in registered], default=None)


def _partitions(
    ledger: LedgerStore, sources: SourceStore, request: ExportRequest, month: str
) -> list[tuple[str, str]]:
    """The (source, account) partitions to read in ``month``, in export order."""
    if request.source_id and request.account_id:
        return [(request.source_id, request.account_id)]
    if request.source_id:
        return [(request.source_id, a) for a in sorted(set(ledger.month_accounts(month)))]
    assert request.account_id is not None
    found = {s.source_id for s in sources.list_sources()}
    quota = ledger.get_quota(request.account_id, month, consistent=False)
    found.update(s for key in (quota.marks or {}) if (s := mark_source(key)))
    if quota.pending is not None:
        found.add(quota.pending.source_id)
    return [(s, request.account_id) for s in sorted(found)]


def _month_range(month: str) -> tuple[datetime, datetime]:
    """``[first instant of month, first instant of the next)`` in UTC."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    return start, datetime.strptime(_next_month(month), "%Y-%m").replace(tzinfo=UTC)


def _next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


_TICK = datetime.resolution  # one microsecond: --until is exclusive
