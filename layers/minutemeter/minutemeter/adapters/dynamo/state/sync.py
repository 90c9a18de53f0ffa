"""A source's sync state, lease and job results on the state table
(:class:`minutemeter.ports.SyncStore`).

The sync-state item (``keys.state_key``, never deleted) holds the watermark, the counter
identity and its baseline, the lease (holder, until, token), the last job and the health
buckets: one item, so every write to it can be fenced on the lease token (:mod:`.fencing`).
Job results are items of their own (``keys.job_key``, expiring), written before the
sync-state update that names the last one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from minutemeter.adapters.dynamo.base import DynamoTable, Item
from minutemeter.adapters.dynamo.state.fencing import check_fence, fenced
from minutemeter.adapters.dynamo.state.items import MAX_ERROR_CHARS, _decimals, _plain, stored_job
from minutemeter.adapters.dynamo.state.keys import job_key, job_partition, state_key
from minutemeter.domain.errors import LeaseHeldError, LeaseLostError
from minutemeter.domain.lease import lease_until, takeover_cutoff
from minutemeter.domain.model import JobResult, JobStatus, SyncState
from minutemeter.domain.text import shorten
from minutemeter.domain.timeutil import epoch_seconds, format_instant, parse_rfc3339
from minutemeter.ports import LeaseGrant
from minutemeter.presenters import job_to_dict


class DynamoSyncStore:
    """:class:`minutemeter.ports.SyncStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

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
        condition, attribute_values = fenced(condition, attribute_values, fence)
        outcome = self.table.update(
            state_key(source_id), expression, condition=condition, values=attribute_values,
            return_new=True,
        )
        if not outcome.ok:
            state = self.get_state(source_id)
            check_fence(self.table, source_id, fence, "watermark not moved")
            return state  # another runner is further; never move back
        return _state_from_item(source_id, outcome.attributes)

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

    # -- job results -----------------------------------------------------------------------
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
                **job_key(job.source_id, job.started_at, job.job_id),
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
            "pk = :pk", {":pk": job_partition(source_id)}, limit=limit, newest_first=True
        )
        return [_plain(i["job"]) for i in items]


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
