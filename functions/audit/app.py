"""Audit Lambda: statement = sum of ledger entries = quota used, per account, daily.

Scheduled once a day. Audits the month so far and the month just closed (what
``minutemeter audit --month M`` checks), publishes one EMF document (no dimension beyond the
service) with the number of account-months that differ, and returns the report. A run that
fails or never happens publishes no heartbeat, which alarms (docs/alarms.md).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from minutemeter.bootstrap import App, warm_app
from minutemeter.observability import NAMESPACE, audit_metrics
from minutemeter.service.audit import audit_recent_months

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)
_app: App | None = None  # wired by the first invocation: bootstrap.warm_app


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    app = warm_app(globals())
    report = audit_recent_months(app.ledger, app.state.sources, app.clock.now())
    document = report.to_json()
    if report.differences:
        logger.warning("audit found differences", extra={"months": document["months"]})
    else:
        logger.info("audit agrees", extra={"accounts_checked": report.accounts_checked})
    for point in audit_metrics(report):
        metrics.add_metric(name=point.name, unit=MetricUnit(point.unit), value=point.value)
    return document
