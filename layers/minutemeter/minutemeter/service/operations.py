"""Operations documents: sources, status and health, and the shape of a reconcile request.

Shared by the operations API (functions/api/app.py) and the CLI. Every document is plain JSON
(times RFC 3339, decimals as exact decimal strings), built from the store ports only.

Health (``GET /healthz``, :func:`check_health`) passes when all three checks pass:

- ``tables``: one cheap read of each table answers (state: the source list, a Query of one
  partition; ledger: a GetItem of a quota item that never exists).
- ``clock_verdict``: the latest drift verdict exists and is at most
  ``settings.clock_verdict_max_age_seconds`` old (the age the clock guard trusts).
- ``sources``: no enabled source is stale and no registry record is unreadable. A source is
  **stale** when its watermark (or, before its first commit, its start) is more than
  ``lag_seconds + max(3 x max_window_seconds, 15 min)`` behind ``now``: a healthy watermark
  sits ``lag`` behind by design, and three full windows (at least 15 minutes) of catch-up on
  top of that is what the schedule may owe. A source whose start is in the future is not
  stale; disabled sources are listed, not judged. An **unreadable** record (one that does not
  parse, ``domain/registry.py``) is never collected: it is listed under ``unreadable``.

Listings never fail on one bad record: a source whose registry record (or sync state) cannot
be read appears as ``{"source_id", "error"}`` and the others are shown as usual.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from minutemeter.domain.errors import InputError, MinutemeterError, StoreError
from minutemeter.domain.model import SourceConfig
from minutemeter.domain.registry import MAX_ECHO, UnreadableSource
from minutemeter.domain.text import shorten
from minutemeter.domain.timeutil import format_instant, is_minute_aligned, parse_rfc3339
from minutemeter.json_values import to_json
from minutemeter.ports import (
    ClockVerdictStore,
    LedgerStore,
    ReconcileStore,
    SourceStore,
    SyncStore,
)
from minutemeter.presenters import source_to_json
from minutemeter.service.reconcile import MAX_WINDOW, ReconcileRequest
from minutemeter.service.sources import check_source_id, registry_entries, source_status
from minutemeter.settings import Settings

logger = logging.getLogger(__name__)

STALE_WINDOWS = 3
STALE_FLOOR = timedelta(minutes=15)
RECONCILE_FIELDS = frozenset({"source_id", "since", "until", "dry_run"})
# A quota item no account ever has (accounts are UUIDs, months YYYY-MM): the ledger probe.
_PROBE_ACCOUNT, _PROBE_MONTH = "healthz-probe", "0000-00"


class StatusStores(Protocol):
    """The stores the documents read (``ports.StateStores`` has them): the registry, sync state
    and lease, reconcile records, and the clock verdict."""

    @property
    def sources(self) -> SourceStore: ...

    @property
    def sync(self) -> SyncStore: ...

    @property
    def reconciles(self) -> ReconcileStore: ...

    @property
    def verdicts(self) -> ClockVerdictStore: ...


class MalformedRequestError(InputError):
    """The request is not the documented shape: not JSON, not an object, missing or unknown
    fields, wrong types, a time that is not RFC 3339. (Other ``InputError``: a well-formed
    request that cannot run, such as a window that is not whole minutes.)"""


# -- reconcile requests -------------------------------------------------------------------------
def reconcile_request_from_json(document: object, *, requested_by: str) -> ReconcileRequest:
    """A :class:`ReconcileRequest` from a decoded JSON body ``{source_id, since, until,
    dry_run}`` (all four required, nothing else allowed; ``dry_run`` a JSON boolean).

    Raises :class:`MalformedRequestError` for the shape, :class:`InputError` for a window that
    is not whole minutes, not ``since < until`` or longer than ``MAX_WINDOW``. The checks that
    need the source (its start, its watermark) are ``reconcile``'s.
    """
    if not isinstance(document, dict):
        raise MalformedRequestError("the body must be a JSON object")
    missing = sorted(RECONCILE_FIELDS - document.keys())
    if missing:
        raise MalformedRequestError(f"missing fields: {', '.join(missing)}")
    extra = sorted(str(k) for k in document.keys() - RECONCILE_FIELDS)
    if extra:
        shown = ", ".join(repr(k[:40]) for k in extra[:5])
        raise MalformedRequestError(f"unknown fields: {shown}")
    source_id = document["source_id"]
    if not isinstance(source_id, str):
        raise MalformedRequestError("source_id must be a string")
    try:
        check_source_id(source_id)
    except InputError as exc:
        raise MalformedRequestError(
            "source_id must be 1-64 of A-Z a-z 0-9 _ . - (starting alphanumeric)"
        ) from exc
    dry_run = document["dry_run"]
    if not isinstance(dry_run, bool):
        raise MalformedRequestError("dry_run must be true or false (a JSON boolean)")
    since, until = _instant(document["since"], "since"), _instant(document["until"], "until")
    if not (is_minute_aligned(since) and is_minute_aligned(until)):
        raise InputError("since and until must be whole minutes (seconds and fraction zero)")
    if since >= until:
        raise InputError("since must be before until")
    if until - since > MAX_WINDOW:
        raise InputError(f"a window is at most {MAX_WINDOW.days} days")
    return ReconcileRequest(source_id, since, until, dry_run, requested_by=requested_by)


def _instant(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedRequestError(f"{name} must be an RFC 3339 string")
    try:
        return parse_rfc3339(value, what=name)
    except InputError as exc:
        raise MalformedRequestError(f"{name} is not an RFC 3339 date-time") from exc


# -- sources and status -------------------------------------------------------------------------
def source_document(
    stores: StatusStores, source: SourceConfig, now: datetime, *, jobs: int = 0,
    reconciles: int = 0,
) -> dict[str, Any]:
    """A source: its whole configuration (``token_secret`` is a reference, never a token;
    ``lag_seconds`` is the configured lag), sync state, ``watermark_lag_seconds`` (how far the
    watermark is behind ``now``), last job result, health and lease; with ``jobs`` /
    ``reconciles`` > 0 also that many recent job results / reconcile records, newest first."""
    status = source_status(stores.sync, source, now)
    sync = status.state
    grant = stores.sync.get_lease(source.source_id)
    document: dict[str, Any] = {
        **source_to_json(source),
        "last_completed_until": sync.last_completed_until,
        "baseline_taken_at": sync.baseline_taken_at,
        "last_success_at": sync.last_success_at,
        "last_error": sync.last_error,
        "last_error_at": sync.last_error_at,
        "consecutive_failures": sync.consecutive_failures,
        "watermark_lag_seconds": status.lag_seconds,
        "last_job": sync.last_job,
        "health": sync.health,
        "lease": None if grant is None else {
            "holder": grant.holder, "token": grant.token, "until": format_instant(grant.until),
        },
    }
    if jobs:
        document["recent_jobs"] = stores.sync.list_jobs(source.source_id, jobs)
    if reconciles:
        document["recent_reconciles"] = stores.reconciles.list_reconciles(source.source_id,
                                                                          reconciles)
    plain: dict[str, Any] = to_json(document, times="second")
    return plain


def source_documents(
    stores: StatusStores, now: datetime, *, jobs: int = 0
) -> list[dict[str, Any]]:
    """:func:`source_document` of every registered source; a source whose record or sync
    state cannot be read is :func:`unreadable_document` instead (and a warning in the log)."""
    documents = []
    for entry in registry_entries(stores.sources):
        if isinstance(entry, UnreadableSource):
            documents.append(unreadable_document(entry))
            continue
        try:
            documents.append(source_document(stores, entry, now, jobs=jobs))
        except StoreError:
            raise  # the table did not answer: the listing fails as a whole
        except (MinutemeterError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            logger.warning("unreadable sync state", exc_info=exc,
                           extra={"source_id": entry.source_id})
            reason = shorten(f"sync state: {type(exc).__name__}: {exc}", 3 * MAX_ECHO)
            documents.append(unreadable_document(UnreadableSource(entry.source_id, reason)))
    return documents


def unreadable_document(entry: UnreadableSource) -> dict[str, Any]:
    """A source that cannot be shown: ``{"source_id", "error"}``; ``sources put`` repairs it."""
    return {"source_id": entry.source_id, "error": entry.error}


STATUS_FIELDS = ("source_id", "enabled", "last_completed_until", "watermark_lag_seconds",
                 "consecutive_failures", "last_error", "last_job", "health")


def status_document(stores: StatusStores, now: datetime) -> dict[str, Any]:
    """The last job result and health of every source (a subset of the source documents)."""
    return {
        "generated_at": format_instant(now),
        "sources": [d if "error" in d else {k: d[k] for k in STATUS_FIELDS}
                    for d in source_documents(stores, now)],
    }


# -- health -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HealthReport:
    ok: bool
    document: dict[str, Any]


def stale_limit_seconds(source: SourceConfig) -> int:
    """How far behind ``now`` a source's watermark may be before it is stale (module doc)."""
    allowance = max(STALE_WINDOWS * source.max_window_seconds, int(STALE_FLOOR.total_seconds()))
    return source.lag_seconds + allowance


def check_health(
    stores: StatusStores, ledger: LedgerStore, settings: Settings, now: datetime
) -> HealthReport:
    """Run the three checks of the module doc; storage failures fail checks, never raise."""
    tables: dict[str, Any] = {"state": "ok", "ledger": "ok"}
    sources: list[SourceConfig | UnreadableSource] | None = None
    try:
        sources = registry_entries(stores.sources)
    except StoreError as exc:
        tables["state"] = _failure(exc)
    try:
        ledger.get_quota(_PROBE_ACCOUNT, _PROBE_MONTH)
    except StoreError as exc:
        tables["ledger"] = _failure(exc)
    checks = {
        "tables": {"ok": tables["state"] == "ok" and tables["ledger"] == "ok", **tables},
        "clock_verdict": _verdict_check(stores.verdicts, settings, now),
        "sources": _sources_check(stores.sync, sources, now),
    }
    failing = [name for name, check in checks.items() if not check["ok"]]
    document = {"ok": not failing, "checked_at": format_instant(now), "failing": failing,
                "checks": checks}
    return HealthReport(ok=not failing, document=to_json(document, times="second"))


def _verdict_check(
    verdicts: ClockVerdictStore, settings: Settings, now: datetime
) -> dict[str, Any]:
    limit = settings.clock_verdict_max_age_seconds
    check: dict[str, Any] = {"ok": False, "max_age_seconds": limit}
    try:
        verdict = verdicts.get_clock_verdict()
    except StoreError as exc:
        return {**check, "reason": _failure(exc)}
    if verdict is None:
        return {**check, "reason": "no drift verdict has been recorded"}
    age = (now - verdict.measured_at).total_seconds()
    check.update(measured_at=verdict.measured_at, age_seconds=age, status=verdict.status,
                 offset_ms=verdict.offset_ms, bound_ms=verdict.bound_ms)
    if age > limit:
        return {**check, "reason": f"the drift verdict is {age:.0f} s old (limit {limit} s)"}
    return {**check, "ok": True}


def _sources_check(
    sync: SyncStore, entries: list[SourceConfig | UnreadableSource] | None, now: datetime
) -> dict[str, Any]:
    if entries is None:
        return {"ok": False, "reason": "the state table did not answer"}
    sources = [e for e in entries if isinstance(e, SourceConfig)]
    unreadable = [e.source_id for e in entries if isinstance(e, UnreadableSource)]
    stale: list[dict[str, Any]] = []
    disabled = [s.source_id for s in sources if not s.enabled]
    try:
        for source in (s for s in sources if s.enabled):
            try:
                mark = sync.get_state(source.source_id).last_completed_until
            except StoreError:
                raise
            except (MinutemeterError, KeyError, TypeError, ValueError, ArithmeticError):
                unreadable.append(source.source_id)  # its sync state: logged by the listings
                continue
            behind = (now - (mark or source.start)).total_seconds()
            limit = stale_limit_seconds(source)
            if behind > limit:
                stale.append({"source_id": source.source_id, "watermark": mark,
                              "behind_seconds": behind, "limit_seconds": limit})
    except StoreError as exc:
        return {"ok": False, "reason": _failure(exc)}
    check: dict[str, Any] = {"ok": not stale and not unreadable,
                              "checked": len(sources) - len(disabled), "disabled": disabled,
                              "stale": stale}
    if unreadable:
        check["unreadable"] = unreadable
    return check


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
