"""The state table: sources, sync state, checkpoints, billing profiles, run records, reconcile
bookkeeping and the clock verdict.

Keys::

    source config    pk = SOURCES                sk = <source_id>
    sync state       pk = SOURCE#<source_id>     sk = STATE   (watermark, identity, lease, health)
    checkpoint       pk = CP#<source_id>         sk = <node_id>#<account_id>
    profile          pk = PROFILE#<account_id>   sk = PROFILE
    record           pk = LOG#<source_id>#<kind> sk = <taken_at>#<digest>   (expires)
    job              pk = JOB#<source_id>        sk = <started_at>#<job_id>   (expires)
    reconcile run    pk = RECONCILE#<source_id>  sk = RUN#<started_at>#<run_id>
    reconcile resume pk = RECONCILE#<source_id>  sk = PROGRESS#<reconcile_id>
    reconciled acct  pk = RECONCILE#<source_id>  sk = ACCOUNT#<account_id>
    clock verdict    pk = CLOCK                  sk = LATEST
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from minutemeter.adapters.dynamo.base import DynamoTable, Item
from minutemeter.domain.errors import (
    LeaseHeldError,
    LeaseLostError,
    MinutemeterError,
    SourceNotFoundError,
    StoreError,
)
from minutemeter.domain.lease import lease_until, takeover_cutoff
from minutemeter.domain.model import (
    BillingProfile,
    Checkpoint,
    ClockGuardAction,
    ClockVerdict,
    JobResult,
    JobStatus,
    Quarantined,
    ResetEvent,
    ResetPolicy,
    SourceConfig,
    SourceKind,
    SyncState,
)
from minutemeter.domain.registry import (
    MAX_ECHO,
    SourceUnreadableError,
    UnreadableSource,
    operability_problem,
)
from minutemeter.domain.text import shorten
from minutemeter.domain.timeutil import epoch_seconds, format_instant, parse_rfc3339
from minutemeter.ports import LeaseGrant

logger = logging.getLogger(__name__)

SOURCES_PK = "SOURCES"
# Free text of a job result is clipped before it is stored: an item is at most 400 KB, and an
# exporter's error message can be any size.
MAX_ERROR_CHARS = 1000
MAX_NOTES = 20
MAX_NOTE_CHARS = 500
MAX_REASON_CHARS = 300  # why a registry record is unreadable
VERDICT_KEY = {"pk": "CLOCK", "sk": "LATEST"}


def state_key(source_id: str) -> dict[str, str]:
    return {"pk": f"SOURCE#{source_id}", "sk": "STATE"}


def checkpoint_key(source_id: str, node_id: str, account_id: str) -> dict[str, str]:
    return {"pk": f"CP#{source_id}", "sk": f"{node_id}#{account_id}"}


class DynamoStateStore:
    """:class:`minutemeter.ports.StateStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    # -- sources ---------------------------------------------------------------------------
    def put_source(self, source: SourceConfig) -> None:
        item = {"pk": SOURCES_PK, "sk": source.source_id, "type": "source"}
        item.update(_source_to_item(source))
        self.table.put(item)

    def get_source(self, source_id: str) -> SourceConfig:
        """Raises ``SourceNotFoundError``, or ``SourceUnreadableError`` for a record that does
        not parse or is not operable (``domain.registry``)."""
        item = self.table.get({"pk": SOURCES_PK, "sk": source_id})
        if item is None:
            raise SourceNotFoundError(source_id)
        entry = _read_source(source_id, item)
        if isinstance(entry, UnreadableSource):
            raise SourceUnreadableError(source_id, entry.error)
        return entry

    def list_sources(self) -> list[SourceConfig]:
        """The readable sources; an unreadable record is logged and left out."""
        return [e for e in self.list_source_entries() if isinstance(e, SourceConfig)]

    def list_source_entries(self) -> list[SourceConfig | UnreadableSource]:
        """Every registry record by source id; one that cannot be read is an
        :class:`UnreadableSource` (and a warning in the log), never a failed listing."""
        items = self.table.query("pk = :pk", {":pk": SOURCES_PK})
        entries = [_read_source(str(i.get("sk", "")), i) for i in items]
        for entry in entries:
            if isinstance(entry, UnreadableSource):
                logger.warning("unreadable source record",
                               extra={"source_id": entry.source_id, "error": entry.error})
        return entries

    # -- sync state ------------------------------------------------------------------------
    def get_state(self, source_id: str) -> SyncState:
        item = self.table.get(state_key(source_id))
        return _state_from_item(source_id, item or {})

    def commit_progress(
        self,
        source_id: str,
        *,
        until: datetime,
        node_id: str,
        baseline_taken_at: datetime | None,
        at: datetime,
        fence: int | None,
        env: str | None = None,
        rebaseline: bool = False,
    ) -> SyncState:
        expression = "SET last_completed_until = :until, progress_at = :at"
        attribute_values: dict[str, Any] = {
            ":until": format_instant(until),
            ":node": node_id,
            ":env": env or "",
            ":at": format_instant(at),
        }
        if baseline_taken_at is None:  # identity as first learned (older items lack env)
            expression += (", node_id = if_not_exists(node_id, :node),"
                           " node_env = if_not_exists(node_env, :env)")
        else:
            # the identity read at the baseline; a rebaseline replaces the old identity's
            baseline = ":baseline" if rebaseline else "if_not_exists(baseline_taken_at, :baseline)"
            expression += f", node_id = :node, node_env = :env, baseline_taken_at = {baseline}"
            attribute_values[":baseline"] = format_instant(baseline_taken_at)
        condition = (
            "(attribute_not_exists(last_completed_until) OR last_completed_until <= :until)"
        )
        condition, attribute_values = _fenced(condition, attribute_values, fence)
        outcome = self.table.update(
            state_key(source_id), expression, condition=condition, values=attribute_values,
            return_new=True,
        )
        if not outcome.ok:
            state = self.get_state(source_id)
            self._check_fence(source_id, fence, "watermark not moved")
            return state  # another runner is further; never move back
        return _state_from_item(source_id, outcome.attributes)

    def _check_fence(self, source_id: str, fence: int | None, detail: str) -> None:
        """After a failed condition: raise LeaseLostError if the token is not ``fence``."""
        if fence is None:
            return
        current = self.get_lease_token(source_id)
        if current != fence:
            raise LeaseLostError(source_id, fence, f"{detail} (current token {current})")

    def get_lease_token(self, source_id: str) -> int | None:
        item = self.table.get(state_key(source_id)) or {}
        token = item.get("lease_token")
        return int(token) if token is not None else None

    # -- lease -----------------------------------------------------------------------------
    def acquire_lease(
        self,
        source_id: str,
        holder: str,
        *,
        now: datetime,
        lease_seconds: int,
        margin_seconds: float,
    ) -> LeaseGrant:
        until = lease_until(now, lease_seconds)
        outcome = self.table.update(
            state_key(source_id),
            "SET lease_holder = :holder, lease_until = :until, lease_acquired_at = :now, "
            "lease_token = if_not_exists(lease_token, :zero) + :one",
            condition="attribute_not_exists(lease_until) OR lease_until < :cutoff",
            values={
                ":holder": holder,
                ":until": format_instant(until),
                ":now": format_instant(now),
                ":cutoff": format_instant(takeover_cutoff(now, margin_seconds)),
                ":zero": 0,
                ":one": 1,
            },
            return_new=True,
        )
        if not outcome.ok:
            current = self.get_lease(source_id)
            raise LeaseHeldError(
                source_id,
                current.holder if current else None,
                format_instant(current.until) if current else None,
            ) from outcome.failure
        token = int(outcome.attributes["lease_token"])
        return LeaseGrant(source_id=source_id, holder=holder, token=token, until=until)

    def renew_lease(self, grant: LeaseGrant, *, now: datetime, lease_seconds: int) -> LeaseGrant:
        until = lease_until(now, lease_seconds)
        renewed = self.table.update(
            state_key(grant.source_id),
            "SET lease_until = :until",
            condition="lease_token = :token AND lease_holder = :holder",
            values={":until": format_instant(until), ":token": grant.token,
                    ":holder": grant.holder},
        )
        if not renewed.ok:
            raise LeaseLostError(grant.source_id, grant.token, "renewal refused") from (
                renewed.failure
            )
        return replace(grant, until=until)

    def release_lease(self, grant: LeaseGrant) -> bool:
        return self.table.update(
            state_key(grant.source_id),
            "REMOVE lease_until, lease_holder",
            condition="lease_token = :token AND lease_holder = :holder",
            values={":token": grant.token, ":holder": grant.holder},
        ).ok

    def get_lease(self, source_id: str) -> LeaseGrant | None:
        item = self.table.get(state_key(source_id)) or {}
        if not item.get("lease_until") or not item.get("lease_holder"):
            return None
        return LeaseGrant(
            source_id=source_id,
            holder=str(item["lease_holder"]),
            token=int(item["lease_token"]),
            until=parse_rfc3339(item["lease_until"]),
        )

    def record_result(
        self,
        job: JobResult,
        *,
        expires_at: datetime,
        fence: int | None = None,
        health_buckets: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        summary = _decimals(stored_job(job_to_dict(job)))
        self.table.put(
            {
                "pk": f"JOB#{job.source_id}",
                "sk": f"{format_instant(job.started_at)}#{job.job_id}",
                "type": "job",
                "job": summary,
                "expires_at": epoch_seconds(expires_at),
            }
        )
        if job.status is JobStatus.SKIPPED:
            return  # the job history has it; the holder's result stays the source's last job
        finished = format_instant(job.finished_at or job.started_at)
        attribute_values: dict[str, Any] = {":job": summary, ":at": finished}
        if job.status is JobStatus.ERROR:
            expression = (
                "SET last_job = :job, last_error = :error, last_error_at = :at, "
                "consecutive_failures = if_not_exists(consecutive_failures, :zero) + :one"
            )
            attribute_values.update(
                {":error": shorten(job.error or "", MAX_ERROR_CHARS), ":zero": 0, ":one": 1}
            )
        else:
            expression = "SET last_job = :job, last_success_at = :at, consecutive_failures = :zero"
            attribute_values[":zero"] = 0
        if health_buckets is not None:
            expression += ", health_buckets = :buckets, health = :health"
            attribute_values[":buckets"] = {str(k): list(v) for k, v in health_buckets.items()}
            attribute_values[":health"] = _decimals(job.health)
        condition: str | None = None
        if fence is not None:
            condition = "lease_token = :fence"
            attribute_values[":fence"] = fence
        updated = self.table.update(
            state_key(job.source_id), expression, condition=condition, values=attribute_values
        )
        if not updated.ok:
            raise LeaseLostError(job.source_id, fence or 0, "sync state not updated") from (
                updated.failure
            )

    def list_jobs(self, source_id: str, limit: int) -> list[dict[str, object]]:
        items = self.table.query_page(
            "pk = :pk", {":pk": f"JOB#{source_id}"}, limit=limit, newest_first=True
        )
        return [_plain(i["job"]) for i in items]

    # -- checkpoints -----------------------------------------------------------------------
    def get_checkpoints(
        self, source_id: str, node_id: str, account_ids: Iterable[str]
    ) -> dict[str, Checkpoint]:
        keys = [checkpoint_key(source_id, node_id, a) for a in account_ids]
        found = self.table.batch_get(keys) if keys else []
        return {
            str(i["account_id"]): Checkpoint(
                node_id=str(i["node_id"]),
                account_id=str(i["account_id"]),
                total_bytes=int(i["total_bytes"]),
                taken_at=parse_rfc3339(i["taken_at"]),
            )
            for i in found
        }

    def list_checkpoints(self, source_id: str) -> list[Checkpoint]:
        items = self.table.query("pk = :pk", {":pk": f"CP#{source_id}"})
        return [
            Checkpoint(str(i["node_id"]), str(i["account_id"]), int(i["total_bytes"]),
                       parse_rfc3339(i["taken_at"]))
            for i in items
        ]

    def advance_checkpoints(
        self, source_id: str, checkpoints: Iterable[Checkpoint], *, fence: int | None = None
    ) -> int:
        """Conditional puts (``taken_at`` newer); with ``fence``, in transactions of up to 99
        puts plus a ConditionCheck that the lease token is still ``fence``."""
        items = [_checkpoint_item(source_id, c) for c in checkpoints]
        if fence is None:
            return sum(self._put_checkpoint(item) for item in items)
        moved = 0
        for start in range(0, len(items), TRANSACTION_PUTS):
            moved += self._put_checkpoints_fenced(
                source_id, items[start : start + TRANSACTION_PUTS], fence
            )
        return moved

    def _put_checkpoint(self, item: Item) -> bool:
        return self.table.put(
            item, condition=_CHECKPOINT_NEWER, values={":taken": item["taken_at"]}
        )

    def _put_checkpoints_fenced(self, source_id: str, items: list[Item], fence: int) -> int:
        pending = list(items)
        while pending:
            actions = [
                self.table.put_action(
                    item, condition=_CHECKPOINT_NEWER, values={":taken": item["taken_at"]}
                )
                for item in pending
            ]
            actions.append(
                self.table.check_action(
                    state_key(source_id), condition="lease_token = :fence",
                    values={":fence": fence},
                )
            )
            outcome = self.table.transact_write(actions)
            if outcome.ok:
                return len(pending)
            codes = list(outcome.reasons)
            if codes[-1] == "ConditionalCheckFailed":
                raise LeaseLostError(source_id, fence, "checkpoints not moved") from (
                    outcome.failure
                )
            if any(c not in {"None", "ConditionalCheckFailed"} for c in codes):
                raise StoreError(f"checkpoint transaction cancelled: {codes}") from (
                    outcome.failure
                )
            # Some checkpoints are already further (another runner): keep the others. (Not
            # every engine reports a reason per item: DynamoDB Local stops at the first.)
            pending = [i for i, c in zip(pending, codes, strict=False) if c == "None"]
        self._check_fence(source_id, fence, "checkpoints not moved")  # all were behind
        return 0

    # -- billing profiles ------------------------------------------------------------------
    def get_profiles(self, account_ids: Iterable[str]) -> Mapping[str, BillingProfile]:
        keys = [{"pk": f"PROFILE#{a}", "sk": "PROFILE"} for a in account_ids]
        found = self.table.batch_get(keys) if keys else []
        return {str(i["account_id"]): _profile_from_item(i) for i in found}

    def put_profile(self, account_id: str, profile: BillingProfile) -> None:
        item = {
            "pk": f"PROFILE#{account_id}",
            "sk": "PROFILE",
            "type": "profile",
            "account_id": account_id,
            "included_bytes": profile.included_bytes,
            "price_per_byte": profile.price_per_byte,
            "multiplier": profile.multiplier,
            "pricing_rule_version": profile.pricing_rule_version,
        }
        self.table.put(item)

    # -- quarantine and reset records --------------------------------------------------------
    def put_records(
        self,
        source_id: str,
        *,
        quarantined: Sequence[Quarantined],
        resets: Sequence[ResetEvent],
        run_id: str,
        at: datetime,
        expires_at: datetime,
    ) -> None:
        common = {"source_id": source_id, "run_id": run_id, "recorded_at": format_instant(at),
                  "expires_at": epoch_seconds(expires_at)}
        items: list[Item] = [
            {
                "pk": f"LOG#{source_id}#quarantine",
                "sk": f"{q.taken_at}#{q.digest}",
                "type": "quarantine",
                **common,
                "reason": q.reason,
                "taken_at": q.taken_at,
                "account_id": q.account_id,
                "raw": q.raw,
            }
            for q in quarantined
        ]
        items.extend(
            {
                "pk": f"LOG#{source_id}#reset",
                "sk": f"{format_instant(r.taken_at)}#{r.node_id}#{r.account_id}",
                "type": "reset",
                **common,
                "node_id": r.node_id,
                "account_id": r.account_id,
                "taken_at": format_instant(r.taken_at),
                "previous_bytes": r.previous_bytes,
                "current_bytes": r.current_bytes,
                "policy": r.policy.value,
                "billed_bytes": r.billed_bytes,
            }
            for r in resets
        )
        if items:
            self.table.batch_put(items)

    # -- reconcile ---------------------------------------------------------------------------
    def get_reconcile_progress(self, source_id: str, reconcile_id: str) -> datetime | None:
        item = self.table.get({"pk": f"RECONCILE#{source_id}", "sk": f"PROGRESS#{reconcile_id}"})
        return parse_rfc3339(item["completed_until"]) if item else None

    def put_reconcile_progress(self, source_id: str, reconcile_id: str, until: datetime) -> None:
        self.table.put({
            "pk": f"RECONCILE#{source_id}",
            "sk": f"PROGRESS#{reconcile_id}",
            "type": "reconcile_progress",
            "completed_until": format_instant(until),
        })

    def add_reconciled_accounts(self, source_id: str, account_ids: Iterable[str]) -> None:
        items = [
            {"pk": f"RECONCILE#{source_id}", "sk": f"ACCOUNT#{account}", "type": "account",
             "account_id": account}
            for account in account_ids
        ]
        if items:
            self.table.batch_put(items)

    def list_reconciled_accounts(self, source_id: str) -> list[str]:
        items = self.table.query(
            "pk = :pk AND begins_with(sk, :account)",
            {":pk": f"RECONCILE#{source_id}", ":account": "ACCOUNT#"},
        )
        return [str(i["account_id"]) for i in items]

    def record_reconcile(self, result: Mapping[str, object]) -> None:
        item = {
            "pk": f"RECONCILE#{result['source_id']}",
            "sk": f"RUN#{result['started_at']}#{result['run_id']}",
            "type": "reconcile",
            "result": _decimals(dict(result)),
        }
        self.table.put(item)

    def list_reconciles(self, source_id: str, limit: int) -> list[dict[str, object]]:
        items = self.table.query_page(
            "pk = :pk AND begins_with(sk, :run)",
            {":pk": f"RECONCILE#{source_id}", ":run": "RUN#"},
            limit=limit,
            newest_first=True,
        )
        return [_plain(i["result"]) for i in items]

    # -- drift verdict -----------------------------------------------------------------------
    def put_clock_verdict(self, verdict: ClockVerdict) -> None:
        item = {
            **VERDICT_KEY,
            "type": "clock_verdict",
            "measured_at": format_instant(verdict.measured_at),
            "status": verdict.status,
            "offset_ms": verdict.offset_ms,
            "bound_ms": verdict.bound_ms,
            "valid_sources": verdict.valid_sources,
            "detail": verdict.detail,
        }
        self.table.put(item)

    def get_clock_verdict(self) -> ClockVerdict | None:
        item = self.table.get(VERDICT_KEY, consistent=False)
        if item is None:
            return None
        return ClockVerdict(
            measured_at=parse_rfc3339(item["measured_at"]),
            status=str(item["status"]),
            offset_ms=Decimal(item["offset_ms"]),
            bound_ms=Decimal(item["bound_ms"]),
            valid_sources=int(item["valid_sources"]),
            detail=str(item.get("detail", "")),
        )

    def list_records(self, source_id: str, kind: str, limit: int) -> list[dict[str, object]]:
        items = self.table.query_page(
            "pk = :pk", {":pk": f"LOG#{source_id}#{kind}"}, limit=limit, newest_first=True
        )
        return [
            {k: _plain(v) for k, v in item.items() if k not in {"pk", "sk", "expires_at"}}
            for item in items
        ]


_CHECKPOINT_NEWER = "attribute_not_exists(pk) OR taken_at < :taken"
TRANSACTION_PUTS = 99  # TransactWriteItems takes 100 actions; one is the lease check


def _fenced(
    condition: str, attribute_values: dict[str, Any], fence: int | None
) -> tuple[str, dict[str, Any]]:
    if fence is None:
        return condition, attribute_values
    return f"lease_token = :fence AND {condition}", {**attribute_values, ":fence": fence}


def _checkpoint_item(source_id: str, checkpoint: Checkpoint) -> Item:
    return {
        **checkpoint_key(source_id, checkpoint.node_id, checkpoint.account_id),
        "type": "checkpoint",
        "source_id": source_id,
        "node_id": checkpoint.node_id,
        "account_id": checkpoint.account_id,
        "total_bytes": checkpoint.total_bytes,
        "taken_at": format_instant(checkpoint.taken_at),
    }


def _decimals(value: Any) -> Any:
    """Floats (a failure rate) as Decimal: DynamoDB numbers refuse floats."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def job_to_dict(job: JobResult) -> dict[str, Any]:
    """A job result as plain JSON-friendly values (times RFC 3339)."""
    out: dict[str, Any] = {}
    for name, value in asdict(job).items():
        if isinstance(value, datetime):
            out[name] = format_instant(value)
        elif isinstance(value, JobStatus):
            out[name] = value.value
        else:
            out[name] = value
    return out


def stored_job(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A job summary (:func:`job_to_dict`) with its free text clipped to a bounded size:
    ``error`` and ``error_type`` to ``MAX_ERROR_CHARS``, at most ``MAX_NOTES`` notes of at most
    ``MAX_NOTE_CHARS`` each (the last note then says how many were left out)."""
    out = dict(summary)
    for name in ("error", "error_type"):
        if isinstance(out.get(name), str):
            out[name] = shorten(out[name], MAX_ERROR_CHARS)
    notes = out.get("notes")
    if isinstance(notes, list):
        kept = [shorten(str(n), MAX_NOTE_CHARS) for n in notes[:MAX_NOTES]]
        if len(notes) > MAX_NOTES:
            kept[-1] = f"... and {len(notes) - MAX_NOTES + 1} more notes"
        out["notes"] = kept
    return out


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; integers become int again."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _source_to_item(source: SourceConfig) -> Item:
    """Every field of the configuration, times fixed-width, enums by value."""
    return {name: _stored(value) for name, value in asdict(source).items()}


def _stored(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


def _read_source(source_id: str, item: Item) -> SourceConfig | UnreadableSource:
    """The record as a config, or why it cannot be operated on (never raises)."""
    try:
        source = _source_from_item(item)
    except (KeyError, TypeError, ValueError, ArithmeticError, MinutemeterError) as exc:
        return UnreadableSource(source_id, _reason(f"{type(exc).__name__}: {exc}"))
    if source.source_id != source_id:
        return UnreadableSource(
            source_id,
            _reason(f"source_id {shorten(source.source_id, MAX_ECHO)!r} differs from the key"),
        )
    problem = operability_problem(source)
    return source if problem is None else UnreadableSource(source_id, _reason(problem))


def _reason(text: str) -> str:
    """One line of at most ``MAX_REASON_CHARS``: it is repeated in messages and listings."""
    return shorten(" ".join(text.split()), MAX_REASON_CHARS)


def _source_from_item(item: Item) -> SourceConfig:
    tolerance = item.get("clock_tolerance_seconds")
    return SourceConfig(
        source_id=_text(item, "source_id"),
        url=_text(item, "url"),
        start=parse_rfc3339(item["start"], what="start"),
        node_id=_optional_text(item, "node_id"),
        env=_optional_text(item, "env"),
        lag_seconds=_whole(item["lag_seconds"]),
        max_window_seconds=_whole(item["max_window_seconds"]),
        reset_policy=ResetPolicy(item["reset_policy"]),
        lease_seconds=_whole(item["lease_seconds"]),
        token_secret=_optional_text(item, "token_secret"),
        clock_tolerance_seconds=_whole(tolerance) if tolerance is not None else None,
        enabled=bool(item.get("enabled", True)),
        clock_guard=ClockGuardAction(item.get("clock_guard", ClockGuardAction.WIDEN.value)),
        clock_margin_ms=_whole(item.get("clock_margin_ms", 1000)),
        # Sources stored before kinds existed are exporter sources.
        kind=SourceKind(item.get("kind", SourceKind.EXPORTER.value)),
    )


def _text(item: Item, name: str) -> str:
    value = item[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} is a {type(value).__name__}, not a string")
    return value


def _optional_text(item: Item, name: str) -> str | None:
    return None if item.get(name) is None else _text(item, name)


def _whole(value: Any) -> int:
    """A stored whole number (DynamoDB numbers are Decimal); anything else is a TypeError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, Decimal):
        raise TypeError(f"{shorten(repr(value), 40)} is not a number")
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError(f"{shorten(str(value), 40)} is not a whole number")
    return int(value)


def _state_from_item(source_id: str, item: Item) -> SyncState:
    def moment(name: str) -> datetime | None:
        raw = item.get(name)
        return parse_rfc3339(raw) if raw else None

    last_job = item.get("last_job")
    return SyncState(
        source_id=source_id,
        last_completed_until=moment("last_completed_until"),
        baseline_taken_at=moment("baseline_taken_at"),
        node_id=item.get("node_id"),
        env=item.get("node_env") or None,
        last_success_at=moment("last_success_at"),
        last_error=item.get("last_error"),
        last_error_at=moment("last_error_at"),
        consecutive_failures=int(item.get("consecutive_failures", 0)),
        last_job=_plain(last_job) if last_job else None,
        health_buckets={
            int(k): (int(v[0]), int(v[1])) for k, v in item.get("health_buckets", {}).items()
        },
        health=_plain(item["health"]) if item.get("health") else None,
    )


def _profile_from_item(item: Item) -> BillingProfile:
    return BillingProfile(
        included_bytes=int(item["included_bytes"]),
        price_per_byte=Decimal(item["price_per_byte"]),
        multiplier=Decimal(item["multiplier"]),
        pricing_rule_version=str(item["pricing_rule_version"]),
    )
