"""Alarms and dashboard against the metrics the code emits (issues 4 and 6).

The contract is ``minutemeter.observability``: every metric in ``COLLECTOR_METRICS`` and
``DRIFT_METRICS`` is used by at least one alarm or dashboard widget, and every metric an alarm or
widget names in the ``Minutemeter`` namespace is one the code emits, with exactly the dimensions
it emits (CloudWatch matches a metric by its full dimension set: an alarm naming one dimension
too few or too many watches a metric that never gets data). Checked on the template as deployed:
``Fn::ForEach`` expanded by SAM CLI (one lag alarm per source) and the dashboard body as the JSON
string ``Fn::ToJsonString`` makes of it. What each alarm means: docs/alarms.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from minutemeter.domain.drift_assessment import DriftThresholds
from minutemeter.observability import (
    AUDIT_METRICS,
    COLLECTOR_METRICS,
    DRIFT_METRICS,
    NAMESPACE,
    SOURCE_DIMENSION,
)
from minutemeter.settings import Settings
from tests.template import sam_expand
from tests.template.tools import REPO

SAMPLE_TOPIC = "arn:aws:sns:us-east-1:123456789012:minutemeter-alarms"
SOURCE_IDS = ("node-a", "node_b")
PARAMETERS = {"SourceIds": ",".join(SOURCE_IDS)}
ALARM = "AWS::CloudWatch::Alarm"
SERVICE_DIMENSION = "service"  # Powertools Metrics adds it from POWERTOOLS_SERVICE_NAME
TOPIC_ACTIONS = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}

# The alarms of issues 4 and 6 by logical id (the per-source ones as written in the loop), with the
# parameter their threshold comes from, and how they treat missing data. The drift check's
# heartbeat is breaching (a check that stopped running is itself an alarm) and speaks for the other
# drift alarms, which are notBreaching; lag is breaching (a source that reports no lag pages).
ALARMS: dict[str, tuple[str | None, str]] = {
    "DriftWarningAlarm": ("DriftWarningOffsetMs", "notBreaching"),
    "DriftCriticalAlarm": (None, "notBreaching"),  # metric math over two parameters, below
    "TssVsPoolAlarm": ("DriftTssVsNtpMs", "notBreaching"),
    "ValidSourcesAlarm": ("DriftMinValidSources", "notBreaching"),
    "DriftHeartbeatAlarm": (None, "breaching"),
    "LagAlarm&{SourceId}": ("LagAlarmSeconds", "breaching"),
    "DeadLetterQueueAlarm": (None, "notBreaching"),
    "CollectorErrorsAlarm": (None, "notBreaching"),
    "DriftCheckErrorsAlarm": (None, "notBreaching"),
    # issue 14: the operations API, and quarantined samples (usage not billed) per source
    "ApiErrorsAlarm": (None, "notBreaching"),
    "ApiThrottlesAlarm": (None, "notBreaching"),
    "QuarantineAlarm&{SourceId}": (None, "notBreaching"),
    # issue 11: the daily audit. A difference holds its state until an audit says otherwise
    # (ignore: a day before its audit has no data point); the audit's heartbeat is breaching.
    "AuditDifferencesAlarm": (None, "ignore"),
    "AuditHeartbeatAlarm": (None, "breaching"),
    # issue 11: delivery to billing sinks (the stream handler, its iterator age, its failures)
    "SinkErrorsAlarm": (None, "notBreaching"),
    "SinkIteratorAgeAlarm": (None, "notBreaching"),
    "SinkFailureQueueAlarm": (None, "notBreaching"),
}
# Thresholds that are not tuning knobs: any dead letter or failed invocation is one too many, and
# the heartbeat alarms on its absence (Sum < 1), not on a value.
FIXED_THRESHOLDS = {
    "DriftHeartbeatAlarm": (1, "LessThanThreshold"),
    "DeadLetterQueueAlarm": (0, "GreaterThanThreshold"),
    "CollectorErrorsAlarm": (0, "GreaterThanThreshold"),
    "DriftCheckErrorsAlarm": (0, "GreaterThanThreshold"),
    "ApiErrorsAlarm": (0, "GreaterThanThreshold"),
    "ApiThrottlesAlarm": (0, "GreaterThanThreshold"),
    "QuarantineAlarm&{SourceId}": (0, "GreaterThanThreshold"),
    "AuditDifferencesAlarm": (0, "GreaterThanThreshold"),
    "AuditHeartbeatAlarm": (1, "LessThanThreshold"),
    "SinkErrorsAlarm": (0, "GreaterThanThreshold"),
    "SinkIteratorAgeAlarm": (3_600_000, "GreaterThanThreshold"),  # ms: an hour behind
    "SinkFailureQueueAlarm": (0, "GreaterThanThreshold"),
}
PER_SOURCE_ALARMS = ("LagAlarm", "QuarantineAlarm")  # one of each per source id (Fn::ForEach)
# Parameter -> what settings (and the domain) default to: the template's defaults are the code's.
DRIFT_PARAMETER_DEFAULTS = {
    "DriftWarningOffsetMs": Settings().drift_warning_offset_ms,
    "DriftCriticalOffsetMs": Settings().drift_critical_offset_ms,
    "DriftCriticalBoundMs": Settings().drift_critical_bound_ms,
    "DriftTssVsNtpMs": Settings().drift_tss_vs_ntp_ms,
    "DriftMinValidSources": DriftThresholds().min_servers,
}
SEARCH = re.compile(
    r"SEARCH\(\s*'\{(?P<schema>[^}]*)\}\s*(?P<terms>[^']*)'\s*,\s*'(?P<stat>\w+)'\s*,\s*"
    r"(?P<period>\d+)\s*\)"
)


@dataclass(frozen=True)
class MetricRef:
    """A metric an alarm or widget names: where, and with which dimensions (values may be
    unknown for a SEARCH, which matches every value of the schema's dimensions)."""

    where: str
    namespace: str
    name: str
    dimensions: dict[str, Any]


# --------------------------------------------------------------------------- reading the template


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: res["Properties"]
        for name, res in template["Resources"].items()
        if isinstance(res, dict) and res.get("Type") == ALARM
    }


def _dimensions(raw: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in raw or []}


def alarm_metrics(name: str, props: dict[str, Any]) -> Iterator[MetricRef]:
    if "MetricName" in props:
        yield MetricRef(
            name, props["Namespace"], props["MetricName"], _dimensions(props.get("Dimensions"))
        )
        return
    for query in props["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            yield MetricRef(
                f"{name}.{query['Id']}",
                metric["Namespace"],
                metric["MetricName"],
                _dimensions(metric.get("Dimensions")),
            )


def _intrinsic(value: dict[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)) in {"Ref", "Fn::GetAtt", "Fn::Sub"}


def widget_metrics(title: str, entries: list[Any]) -> Iterator[MetricRef]:
    """The metrics of a metric widget: `[namespace, name, dim, value, ..., {options}]` rows and
    `[{"expression": "SEARCH(...)"}]` rows."""
    for entry in entries:
        assert isinstance(entry, list) and entry, f"{title}: {entry!r}"
        if isinstance(entry[0], dict):
            (expression,) = entry
            match = SEARCH.fullmatch(expression["expression"])
            assert match, f"{title}: only SEARCH expressions: {expression['expression']}"
            namespace, *dimension_names = [s.strip() for s in match["schema"].split(",")]
            names = re.findall(r'MetricName="([^"]+)"', match["terms"])
            assert len(names) == 1, f"{title}: one MetricName per SEARCH: {match['terms']}"
            assert re.sub(r'MetricName="[^"]+"', "", match["terms"]).strip() == "", (
                f"{title}: nothing but the MetricName after the schema: {match['terms']}"
            )
            yield MetricRef(title, namespace, names[0], dict.fromkeys(dimension_names))
            continue
        # A trailing options object ({"stat": ...}); an intrinsic left by SAM CLI's local
        # expansion ({"Ref": "CollectorFunction"}) is a dimension value, not options.
        fields = entry[:-1] if isinstance(entry[-1], dict) and not _intrinsic(entry[-1]) else entry
        namespace, name, *pairs = fields
        assert namespace != "." and name != ".", f"{title}: write rows out, no '.' shorthand"
        assert len(pairs) % 2 == 0, f"{title}: {entry!r}"
        yield MetricRef(title, namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)))


def _dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = [
        res for res in template["Resources"].values()
        if res.get("Type") == "AWS::CloudWatch::Dashboard"
    ]
    body = dashboard["Properties"]["DashboardBody"]
    assert isinstance(body, str), "Fn::ToJsonString makes the body a JSON string"
    parsed = json.loads(body)
    assert isinstance(parsed, dict)
    return parsed


def dashboard_metrics(body: dict[str, Any]) -> Iterator[MetricRef]:
    for widget in body["widgets"]:
        if widget["type"] == "metric":
            props = widget["properties"]
            yield from widget_metrics(props["title"], props["metrics"])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def deployed(sam_template: dict[str, Any]) -> dict[str, Any]:
    """Expanded with two sources and an alarm topic (SAM CLI resolves the Fn::If with it)."""
    return sam_expand.expand(sam_template, {**PARAMETERS, "AlarmTopicArn": SAMPLE_TOPIC})


@pytest.fixture(scope="module")
def alarms(deployed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _alarms(deployed)


@pytest.fixture(scope="module")
def body(deployed: dict[str, Any]) -> dict[str, Any]:
    return _dashboard_body(deployed)


@pytest.fixture(scope="module")
def refs(alarms: dict[str, dict[str, Any]], body: dict[str, Any]) -> list[MetricRef]:
    found = [ref for name, props in alarms.items() for ref in alarm_metrics(name, props)]
    return found + list(dashboard_metrics(body))


@pytest.fixture(scope="module")
def written_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Alarms as written: the loop's body under its key (`LagAlarm&{SourceId}`)."""
    found = {}
    for name, res in template["Resources"].items():
        if name.startswith("Fn::ForEach::"):
            for key, inner in res[2].items():
                if inner["Type"] == ALARM:
                    found[key] = inner["Properties"]
        elif res["Type"] == ALARM:
            found[name] = res["Properties"]
    return found


def _lag_alarm_id(source_id: str) -> str:
    return _per_source_id("LagAlarm", source_id)


def _per_source_id(prefix: str, source_id: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9]", "", source_id)


# --------------------------------------------------------------------------- metrics <-> code


def test_the_contract_is_what_the_template_assumes(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert NAMESPACE == "Minutemeter" == env["POWERTOOLS_METRICS_NAMESPACE"]
    assert SOURCE_DIMENSION == "SourceId"
    assert env["POWERTOOLS_SERVICE_NAME"] == "minutemeter"
    assert not set(COLLECTOR_METRICS) & set(DRIFT_METRICS)
    assert not set(AUDIT_METRICS) & (set(COLLECTOR_METRICS) | set(DRIFT_METRICS))


def test_every_metric_the_code_emits_has_an_alarm_or_a_widget(refs: list[MetricRef]) -> None:
    used = {ref.name for ref in refs if ref.namespace == NAMESPACE}
    missing = (set(COLLECTOR_METRICS) | set(DRIFT_METRICS) | set(AUDIT_METRICS)) - used
    assert not missing, f"emitted but neither alarmed nor graphed: {sorted(missing)}"


def test_every_minutemeter_metric_named_is_one_the_code_emits(refs: list[MetricRef]) -> None:
    emitted = set(COLLECTOR_METRICS) | set(DRIFT_METRICS) | set(AUDIT_METRICS)
    unknown = [
        f"{r.where}: {r.name}"
        for r in refs
        if r.namespace == NAMESPACE and r.name not in emitted
    ]
    assert not unknown, f"never emitted (a typo, or a metric the code dropped): {unknown}"


def test_every_metric_named_has_the_dimensions_the_code_emits(
    refs: list[MetricRef], template: dict[str, Any]
) -> None:
    service = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    for ref in refs:
        if ref.namespace != NAMESPACE:
            continue
        if ref.name in COLLECTOR_METRICS:
            assert set(ref.dimensions) == {SERVICE_DIMENSION, SOURCE_DIMENSION}, ref
            assert ref.dimensions[SOURCE_DIMENSION] in (None, *SOURCE_IDS), ref
        else:
            assert set(ref.dimensions) == {SERVICE_DIMENSION}, ref
        assert ref.dimensions[SERVICE_DIMENSION] in (None, service), ref


def test_other_namespaces_are_the_stacks_own_resources(refs: list[MetricRef]) -> None:
    """Lambda metrics of this stack's functions, SQS metrics of its dead-letter queue."""
    allowed: dict[tuple[str, str], list[Any]] = {
        ("AWS/Lambda", "FunctionName"): [
            {"Ref": "CollectorFunction"},
            {"Ref": "DriftCheckFunction"},
            {"Ref": "ApiFunction"},
            {"Ref": "AuditFunction"},
            {"Ref": "SinkFunction"},
        ],
        ("AWS/SQS", "QueueName"): [{"Fn::GetAtt": ["CollectorDeadLetterQueue", "QueueName"]},
                                   {"Fn::GetAtt": ["SinkFailureQueue", "QueueName"]}],
    }
    for ref in refs:
        if ref.namespace == NAMESPACE:
            continue
        ((dimension, value),) = ref.dimensions.items()
        assert value in allowed[(ref.namespace, dimension)], ref


# --------------------------------------------------------------------------- the alarms


def test_the_alarms_are_the_issues(
    written_alarms: dict[str, dict[str, Any]], alarms: dict[str, dict[str, Any]]
) -> None:
    assert set(written_alarms) == set(ALARMS)
    loops = {f"{prefix}&{{SourceId}}" for prefix in PER_SOURCE_ALARMS}
    per_source = {_per_source_id(p, s) for p in PER_SOURCE_ALARMS for s in SOURCE_IDS}
    assert set(alarms) == (set(ALARMS) - loops) | per_source


def test_missing_data(written_alarms: dict[str, dict[str, Any]]) -> None:
    for name, (_, treat) in ALARMS.items():
        assert written_alarms[name]["TreatMissingData"] == treat, name


def test_heartbeat_alarms_when_the_drift_check_stops(
    written_alarms: dict[str, dict[str, Any]],
) -> None:
    props = written_alarms["DriftHeartbeatAlarm"]
    assert props["MetricName"] == "DriftCheckHeartbeat"
    assert props["TreatMissingData"] == "breaching"
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == (
        "Sum", 1, "LessThanThreshold"
    ), "a heartbeat that is there never breaches: only its absence does"
    # Two empty periods in a row: the check's start jitter can empty one period, never two.
    assert (props["Period"], props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (300, 2, 2)


def test_every_alarm_notifies_the_topic_when_set(
    written_alarms: dict[str, dict[str, Any]],
    alarms: dict[str, dict[str, Any]],
    sam_template: dict[str, Any],
    template: dict[str, Any],
) -> None:
    assert template["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    for name, props in written_alarms.items():
        # ALARM and recovery (OK) both go to the topic; nothing when there is none.
        assert props["AlarmActions"] == TOPIC_ACTIONS, name
        assert props["OKActions"] == TOPIC_ACTIONS, name
        assert props.get("ActionsEnabled", True) is True, name
    for name, props in alarms.items():
        assert props["AlarmActions"] == [SAMPLE_TOPIC], name
        assert props["OKActions"] == [SAMPLE_TOPIC], name
    for name, props in _alarms(sam_expand.expand(sam_template, PARAMETERS)).items():
        assert "AlarmActions" not in props and "OKActions" not in props, name


def test_alarm_topic_parameter_takes_a_topic_arn_only(template: dict[str, Any]) -> None:
    pattern = re.compile(template["Parameters"]["AlarmTopicArn"]["AllowedPattern"])
    for good in (SAMPLE_TOPIC, "", "arn:aws-cn:sns:cn-north-1:123456789012:ops_pager-1"):
        assert pattern.fullmatch(good), good
    for bad in ("*", "arn:aws:sns:us-east-1:123456789012:*", "minutemeter-alarms"):
        assert not pattern.fullmatch(bad), bad


def test_thresholds_come_from_parameters(written_alarms: dict[str, dict[str, Any]]) -> None:
    for name, (parameter, _) in ALARMS.items():
        props = written_alarms[name]
        if parameter is not None:
            assert props["Threshold"] == {"Ref": parameter}, name
        elif name in FIXED_THRESHOLDS:
            assert (props["Threshold"], props["ComparisonOperator"]) == FIXED_THRESHOLDS[name], name
    critical = written_alarms["DriftCriticalAlarm"]
    (worst,) = [q for q in critical["Metrics"] if q.get("ReturnData")]
    assert worst["Expression"] == {
        "Fn::Sub": "MAX([offset / ${DriftCriticalOffsetMs}, bound / ${DriftCriticalBoundMs}])"
    }
    assert (critical["Threshold"], critical["ComparisonOperator"]) == (1, "GreaterThanThreshold")


def test_parameters_reach_the_alarms(sam_template: dict[str, Any]) -> None:
    """Changing a parameter changes the deployed alarm (SAM CLI resolves them while expanding)."""
    overrides = {
        **PARAMETERS,
        "DriftWarningOffsetMs": "70",
        "DriftCriticalOffsetMs": "400",
        "DriftCriticalBoundMs": "800",
        "DriftTssVsNtpMs": "150",
        "DriftMinValidSources": "3",
        "LagAlarmSeconds": "1200",
    }
    alarms = _alarms(sam_expand.expand(sam_template, overrides))
    assert int(alarms["DriftWarningAlarm"]["Threshold"]) == 70
    assert int(alarms["TssVsPoolAlarm"]["Threshold"]) == 150
    assert int(alarms["ValidSourcesAlarm"]["Threshold"]) == 3
    for source_id in SOURCE_IDS:
        assert int(alarms[_lag_alarm_id(source_id)]["Threshold"]) == 1200
    (worst,) = [q for q in alarms["DriftCriticalAlarm"]["Metrics"] if q.get("ReturnData")]
    assert worst["Expression"] == "MAX([offset / 400, bound / 800])"


def test_parameter_defaults_are_the_codes(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    for name, default in DRIFT_PARAMETER_DEFAULTS.items():
        assert params[name]["Type"] == "Number"
        assert int(params[name]["Default"]) == default, name
        assert int(params[name]["MinValue"]) >= 1, f"settings refuses {name} <= 0"
    assert int(params["LagAlarmSeconds"]["Default"]) == 900


def test_drift_alarm_shapes(written_alarms: dict[str, dict[str, Any]]) -> None:
    """Issue 4: warning 3 of 3, critical 2 of 3, TSS vs pool 3 of 3, five-minute periods (one
    check each, every 5 minutes)."""
    shapes = {
        "DriftWarningAlarm": ("ClockOffsetAbs", "GreaterThanThreshold", 3, 3),
        "TssVsPoolAlarm": ("TssMinusPoolAbs", "GreaterThanThreshold", 3, 3),
        "ValidSourcesAlarm": ("ValidSources", "LessThanThreshold", 3, 2),
    }
    for name, (metric, comparison, periods, datapoints) in shapes.items():
        props = written_alarms[name]
        assert props["MetricName"] == metric, name
        assert props["ComparisonOperator"] == comparison, name
        assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (periods, datapoints)
        assert props["Period"] == 300, name
    critical = written_alarms["DriftCriticalAlarm"]
    assert (critical["EvaluationPeriods"], critical["DatapointsToAlarm"]) == (3, 2)
    assert "Period" not in critical, "a metric-math alarm's period is its metrics'"
    stats = {q["Id"]: q["MetricStat"] for q in critical["Metrics"] if "MetricStat" in q}
    assert {i: s["Metric"]["MetricName"] for i, s in stats.items()} == {
        "offset": "ClockOffsetAbs", "bound": "ClockErrorBound"
    }
    assert all(s["Period"] == 300 and s["Stat"] == "Maximum" for s in stats.values())
    assert [q.get("ReturnData") for q in critical["Metrics"]].count(True) == 1


def test_lag_alarm_per_source(alarms: dict[str, dict[str, Any]]) -> None:
    for source_id in SOURCE_IDS:
        props = alarms[_lag_alarm_id(source_id)]
        assert props["MetricName"] == "LagSeconds"
        assert _dimensions(props["Dimensions"]) == {
            SERVICE_DIMENSION: "minutemeter", SOURCE_DIMENSION: source_id
        }
        assert props["TreatMissingData"] == "breaching"
        assert props["Statistic"] == "Maximum"
        assert props["ComparisonOperator"] == "GreaterThanThreshold"


def test_quarantine_alarm_per_source(alarms: dict[str, dict[str, Any]]) -> None:
    """A quarantined sample is usage that was not billed: any, in five minutes, alarms. A source
    that reports nothing is its lag alarm's (breaching), so this one does not breach on silence."""
    for source_id in SOURCE_IDS:
        props = alarms[_per_source_id("QuarantineAlarm", source_id)]
        assert (props["Namespace"], props["MetricName"]) == (NAMESPACE, "QuarantinedSamples")
        assert _dimensions(props["Dimensions"]) == {
            SERVICE_DIMENSION: "minutemeter", SOURCE_DIMENSION: source_id
        }
        assert props["AlarmName"] == f"minutemeter-quarantine-{source_id}"
        assert (props["Statistic"], props["Period"]) == ("Sum", 300)
        assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (1, 1)
        assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert props["TreatMissingData"] == "notBreaching"


def test_api_alarms(written_alarms: dict[str, dict[str, Any]], body: dict[str, Any]) -> None:
    """Crashes and timeouts (Errors) and refusals (Throttles) of the API function alarm; its 4xx
    and 5xx answers are graphed only (a /healthz probe answering 503 must not page)."""
    for name, metric in (("ApiErrorsAlarm", "Errors"), ("ApiThrottlesAlarm", "Throttles")):
        props = written_alarms[name]
        assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
            "AWS/Lambda", metric, "Sum"
        )
        assert _dimensions(props["Dimensions"]) == {"FunctionName": {"Ref": "ApiFunction"}}
        assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (1, 1)
    graphed = {ref.name for ref in dashboard_metrics(body)
               if ref.dimensions.get("FunctionName") == {"Ref": "ApiFunction"}}
    assert {"Errors", "Throttles", "Url4xxCount", "Url5xxCount"} <= graphed


def test_queue_and_error_alarms(written_alarms: dict[str, dict[str, Any]]) -> None:
    dlq = written_alarms["DeadLetterQueueAlarm"]
    assert (dlq["Namespace"], dlq["MetricName"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible"
    )
    assert _dimensions(dlq["Dimensions"]) == {
        "QueueName": {"Fn::GetAtt": ["CollectorDeadLetterQueue", "QueueName"]}
    }
    for name, function in (
        ("CollectorErrorsAlarm", "CollectorFunction"),
        ("DriftCheckErrorsAlarm", "DriftCheckFunction"),
    ):
        props = written_alarms[name]
        assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
            "AWS/Lambda", "Errors", "Sum"
        )
        assert _dimensions(props["Dimensions"]) == {"FunctionName": {"Ref": function}}


def test_sink_alarms(written_alarms: dict[str, dict[str, Any]]) -> None:
    """Issue 11: a failed sink invocation, a stream an hour behind, and any batch given up on
    (the backfill must deliver it) page."""
    sink = {"FunctionName": {"Ref": "SinkFunction"}}
    errors = written_alarms["SinkErrorsAlarm"]
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == (
        "AWS/Lambda", "Errors", "Sum")
    assert _dimensions(errors["Dimensions"]) == sink
    age = written_alarms["SinkIteratorAgeAlarm"]
    assert (age["Namespace"], age["MetricName"], age["Statistic"]) == (
        "AWS/Lambda", "IteratorAge", "Maximum")
    assert _dimensions(age["Dimensions"]) == sink
    queue = written_alarms["SinkFailureQueueAlarm"]
    assert (queue["Namespace"], queue["MetricName"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert _dimensions(queue["Dimensions"]) == {
        "QueueName": {"Fn::GetAtt": ["SinkFailureQueue", "QueueName"]}}


def test_audit_alarms(written_alarms: dict[str, dict[str, Any]]) -> None:
    """Issue 11: any account-month that differs in the day's audit pages; so does a second day
    in a row without an audit (the day in progress may not have had its audit yet)."""
    differences = written_alarms["AuditDifferencesAlarm"]
    assert (differences["Namespace"], differences["MetricName"]) == (NAMESPACE,
                                                                    "AuditDifferences")
    assert _dimensions(differences["Dimensions"]) == {SERVICE_DIMENSION: "minutemeter"}
    assert (differences["Statistic"], differences["Period"]) == ("Maximum", 86400)
    assert (differences["EvaluationPeriods"], differences["DatapointsToAlarm"]) == (1, 1)
    heartbeat = written_alarms["AuditHeartbeatAlarm"]
    assert (heartbeat["MetricName"], heartbeat["Statistic"]) == ("AuditHeartbeat", "Sum")
    assert _dimensions(heartbeat["Dimensions"]) == {SERVICE_DIMENSION: "minutemeter"}
    assert (heartbeat["Period"], heartbeat["EvaluationPeriods"],
            heartbeat["DatapointsToAlarm"]) == (86400, 2, 2)
    assert set(AUDIT_METRICS) == {"AuditDifferences", "AuditAccountsChecked", "AuditHeartbeat"}


# --------------------------------------------------------------------------- the dashboard


def test_dashboard_is_a_grid_of_known_widgets(body: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for widget in body["widgets"]:
        assert widget["type"] in {"metric", "text", "alarm"}, widget
        x, y, w, h = (widget[k] for k in ("x", "y", "width", "height"))
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= 24, widget
        cells = {(cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)}
        assert not cells & taken, f"widgets overlap at {widget}"
        taken |= cells
        if widget["type"] == "metric":
            props = widget["properties"]
            assert props["region"] == sam_expand.REGION and props["title"], widget


def test_per_source_widgets_search_the_source_dimension(body: dict[str, Any]) -> None:
    """Per-source graphs are SEARCHes over exactly {Minutemeter,SourceId,service}: a source added
    later appears without a template change, and no other dimension set sneaks in."""
    per_source = [r for r in dashboard_metrics(body) if r.name in COLLECTOR_METRICS]
    assert {r.name for r in per_source} == set(COLLECTOR_METRICS)
    for ref in per_source:
        assert ref.dimensions == {SOURCE_DIMENSION: None, SERVICE_DIMENSION: None}, ref


def test_dashboard_shows_every_alarm_but_the_per_source_ones(
    body: dict[str, Any], alarms: dict[str, dict[str, Any]]
) -> None:
    (widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    shown = {arn["Fn::GetAtt"][0] for arn in widget["properties"]["alarms"]}
    assert shown == {name for name in alarms if not name.startswith(PER_SOURCE_ALARMS)}


def test_docs_explain_every_alarm(written_alarms: dict[str, dict[str, Any]]) -> None:
    doc = (REPO / "docs" / "alarms.md").read_text()
    for name, props in written_alarms.items():
        description = props["AlarmDescription"]
        text = description if isinstance(description, str) else description["Fn::Sub"]
        (anchor,) = re.findall(r"docs/alarms\.md#([a-z-]+)", text)
        assert f"### {anchor.replace('-', ' ')}" in doc.lower(), f"{name}: no section {anchor}"
    for parameter in ("AlarmTopicArn", "LagAlarmSeconds", *DRIFT_PARAMETER_DEFAULTS):
        assert parameter in doc, parameter
