"""Helpers of the prometheus tests: a reader on 127.0.0.1 and collect runs until they stop."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from minutemeter.adapters.prometheus_auth import Authenticator
from minutemeter.adapters.prometheus_http import PrometheusHttp
from minutemeter.adapters.prometheus_reader import PrometheusReader
from minutemeter.domain.model import JobResult, JobStatus, ResetPolicy, SourceConfig, SourceKind
from minutemeter.ports import Clock
from minutemeter.service.collect import collect_source
from minutemeter.service.deps import BillingDeps
from tests.support.backends import Backend
from tests.support.harness import deps_for


def _no_token(source: SourceConfig) -> str | None:
    return None


def prometheus_reader(**client: Any) -> PrometheusReader:
    options: dict[str, Any] = {"timeout_seconds": 10, "retries": 1,
                               "auth": Authenticator(_no_token, None), **client}
    return PrometheusReader(PrometheusHttp(**options))


def prometheus_deps(backend: Backend, clock: Clock, reader: PrometheusReader | None = None,
                    **settings: Any) -> BillingDeps:
    deps = deps_for(backend, clock, **settings)
    return replace(deps, readers={SourceKind.PROMETHEUS: reader or prometheus_reader()})


def prometheus_source(source_id: str, url: str, start: datetime, **fields: Any) -> SourceConfig:
    values: dict[str, Any] = {
        "kind": SourceKind.PROMETHEUS, "account_label": "bucket", "lag_seconds": 120,
        "reset_policy": ResetPolicy.FROM_ZERO, "max_window_seconds": 3600, **fields}
    return SourceConfig(source_id=source_id, url=url, start=start, **values)


def collect_until_stuck(deps: BillingDeps, source_id: str, limit: int = 50) -> list[JobResult]:
    """Collect runs until one fails, is caught up or moves the watermark no further."""
    jobs: list[JobResult] = []
    for _ in range(limit):
        job = collect_source(deps, source_id)
        jobs.append(job)
        if job.status is JobStatus.ERROR or job.caught_up:
            return jobs
        if len(jobs) > 1 and job.completed_until == jobs[-2].completed_until:
            return jobs
    raise AssertionError(f"still moving after {limit} runs: {jobs[-1]}")
