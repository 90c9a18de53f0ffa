"""Helpers to run the collector against a sample exporter and compare with the oracle."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from minutemeter.adapters.exporter_http import HttpExporter
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.domain.model import JobResult, JobStatus, LedgerEntry, SourceConfig, SourceKind
from minutemeter.domain.timeutil import format_second
from minutemeter.ports import Clock, LedgerFilter
from minutemeter.service.collect import collect_source
from minutemeter.service.deps import BillingDeps
from tests.support.backends import Backend


def deps_for(
    backend: Backend, clock: Clock, *, heartbeat: bool = True, **settings: Any
) -> BillingDeps:
    if backend.name == "moto":
        settings["commit_concurrency"] = 1  # moto is not thread-safe (see tests/conftest.py)
    return BillingDeps(
        settings=replace(backend.settings, **settings),
        clock=clock,
        readers={SourceKind.EXPORTER: ExporterReader(HttpExporter(timeout_seconds=5, retries=2))},
        ledger=backend.ledger,
        sources=backend.state.sources,
        sync=backend.state.sync,
        checkpoints=backend.state.checkpoints,
        profiles=backend.state.profiles,
        records=backend.state.records,
        reconciles=backend.state.reconciles,
        verdicts=backend.state.verdicts,
        lease_heartbeat=heartbeat,
    )


def run_until_caught_up(deps: BillingDeps, source_id: str, limit: int = 200) -> list[JobResult]:
    """Runs until caught up or failed; a run skipped because another holds the lease is
    retried after a short real pause."""
    jobs = []
    for _ in range(limit):
        job = collect_source(deps, source_id)
        jobs.append(job)
        if job.caught_up or job.status is JobStatus.ERROR:
            return jobs
        if job.status is JobStatus.SKIPPED:
            time.sleep(0.01)
    raise AssertionError(f"not caught up after {limit} runs: {jobs[-1]}")


def ledger_usage(entries: Iterable[LedgerEntry]) -> dict[tuple[str, str], int]:
    """Bytes per (account, minute) with a check that no bucket appears twice."""
    usage: dict[tuple[str, str], int] = defaultdict(int)
    seen: set[tuple[str, str, str, str]] = set()
    for entry in entries:
        key = (entry.source_id, entry.usage.node_id, entry.usage.account_id,
               format_second(entry.usage.minute))
        assert key not in seen, f"bucket billed twice: {key}"
        seen.add(key)
        usage[(entry.usage.account_id, format_second(entry.usage.minute))] += entry.usage.bytes
    return dict(usage)


def exported(backend: Backend, source_id: str) -> list[LedgerEntry]:
    return list(backend.ledger.export(LedgerFilter(source_id=source_id)))


def watermark(backend: Backend, source: SourceConfig) -> datetime:
    mark = backend.state.sync.get_state(source.source_id).last_completed_until
    assert mark is not None
    return mark


def included_by_account_month(entries: Iterable[LedgerEntry]) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        totals[(entry.usage.account_id, entry.quota_month)] += entry.included_bytes
    return dict(totals)


def usage_by_account_month(entries: Iterable[LedgerEntry]) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        totals[(entry.usage.account_id, entry.quota_month)] += entry.usage.bytes
    return dict(totals)
