"""Drift-check Lambda: measure this clock against TSS and NTP, publish, keep the verdict.

Scheduled every 5 minutes (with a little start jitter). Publishes one EMF document (no
dimension beyond the service: there is one clock to judge) and stores the verdict that the
collectors' clock guard reads. Returns the report.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from minutemeter.adapters.ntp import NtplibClient
from minutemeter.bootstrap import App, warm_app
from minutemeter.observability import NAMESPACE, drift_metrics
from minutemeter.service.clock import check_clock

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)
_app: App | None = None  # wired by the first invocation: bootstrap.warm_app


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    app = warm_app(globals())
    report = check_clock(app.settings, app.clock, NtplibClient(app.clock), time.sleep,
                         verdicts=app.state.verdicts)
    document = report.to_json()
    logger.info("drift check finished", extra={"verdict": document["verdict"]})
    for point in drift_metrics(report):
        metrics.add_metric(name=point.name, unit=MetricUnit(point.unit), value=point.value)
    return document
