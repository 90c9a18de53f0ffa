"""Collector Lambda: one run of one source per invocation (EventBridge Scheduler or manual).

Event: ``{"source_id": "...", "scheduled_time": "<aws.scheduler.scheduled-time>"}``.
Returns the job result; raises when the run ended in ``error`` so that the invocation counts as
failed (retry policy, dead-letter queue, Errors metric). Partial and skipped runs return.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from minutemeter.adapters.system import LambdaBudget
from minutemeter.bootstrap import App, warm_app
from minutemeter.domain.errors import InputError
from minutemeter.domain.model import JobStatus
from minutemeter.observability import NAMESPACE, SOURCE_DIMENSION, collector_metrics
from minutemeter.presenters import job_to_dict
from minutemeter.service.collect import collect_source

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)
_app: App | None = None  # wired by the first invocation: bootstrap.warm_app


class CollectFailedError(RuntimeError):
    """The run ended in ``error``; the job result has been recorded."""


def parse_event(event: Any) -> tuple[str, str | None]:
    """The source id and scheduled time of a collector event; raises :class:`InputError`."""
    if not isinstance(event, dict):
        raise InputError("collector event must be a JSON object")
    source_id = event.get("source_id")
    if not isinstance(source_id, str) or not source_id:
        raise InputError("collector event needs a non-empty string source_id")
    scheduled = event.get("scheduled_time")
    return source_id, scheduled if isinstance(scheduled, str) else None


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    source_id, scheduled_time = parse_event(event)
    logger.append_keys(source_id=source_id, scheduled_time=scheduled_time)
    logger.set_correlation_id(f"{source_id}@{scheduled_time or 'manual'}")
    job = collect_source(warm_app(globals()).billing_deps, source_id, LambdaBudget(context))
    result = job_to_dict(job)
    logger.info("collector run finished", extra={"job": result})
    metrics.add_dimension(name=SOURCE_DIMENSION, value=source_id)
    for point in collector_metrics(job):
        metrics.add_metric(name=point.name, unit=MetricUnit(point.unit), value=point.value)
    if job.status is JobStatus.ERROR:
        raise CollectFailedError(f"{job.error_type}: {job.error}")
    return result
