"""The drift-check function, its schedule and roles (issue 4). Alarms on its metrics:
test_alarms.py. Why these choices: docs/alarms.md."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import pytest

from minutemeter.adapters.dynamo.state.keys import VERDICT_KEY
from minutemeter.settings import Settings
from tests.template import sam_expand
from tests.template.tools import REPO, as_list

DRIFT_EVENT = REPO / "events" / "drift-check-scheduled.json"
SETTINGS_PY = REPO / "layers" / "minutemeter" / "minutemeter" / "settings.py"
DRIFT_MAKEFILE = REPO / "functions" / "drift_check" / "Makefile"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
FUNCTION_ARN = {"Fn::GetAtt": ["DriftCheckFunction", "Arn"]}
# settings constant -> the parameter it is given (the alarms use the same ones: test_alarms.py).
ENV_PARAMETERS = {
    "ENV_DRIFT_NTP": "DriftNtpServers",
    "ENV_EXTRA_LEAP_SECONDS": "ExtraLeapSeconds",
    "ENV_DRIFT_WARNING_OFFSET_MS": "DriftWarningOffsetMs",
    "ENV_DRIFT_CRITICAL_OFFSET_MS": "DriftCriticalOffsetMs",
    "ENV_DRIFT_CRITICAL_BOUND_MS": "DriftCriticalBoundMs",
    "ENV_DRIFT_TSS_VS_NTP_MS": "DriftTssVsNtpMs",
}
# Alarm -> the parameter of its threshold that the drift function also gets.
ALARM_PARAMETERS = {
    "DriftWarningAlarm": ["DriftWarningOffsetMs"],
    "DriftCriticalAlarm": ["DriftCriticalOffsetMs", "DriftCriticalBoundMs"],
    "TssVsPoolAlarm": ["DriftTssVsNtpMs"],
}


def _settings_constants() -> dict[str, str]:
    return {
        node.targets[0].id: str(node.value.value)
        for node in ast.parse(SETTINGS_PY.read_text()).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }


@pytest.fixture(scope="module")
def function(resources: dict[str, Any]) -> dict[str, Any]:
    return dict(resources["DriftCheckFunction"])


# --------------------------------------------------------------------------- the function


def test_function_shape(function: dict[str, Any], resources: dict[str, Any]) -> None:
    props = function["Properties"]
    assert function["Metadata"]["BuildMethod"] == "makefile"
    assert props["CodeUri"] == "functions/drift_check"
    assert props["Handler"] == "app.lambda_handler"
    assert "build-DriftCheckFunction:" in DRIFT_MAKEFILE.read_text()
    assert {"Ref": "MinutemeterLayer"} in props["Layers"]
    # The check stops by its own budget; the function must outlive it, cold start included.
    assert props["Timeout"] >= 90
    assert props["Timeout"] >= 2 * Settings().drift_budget_seconds
    assert props["MemorySize"] <= 256
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "DriftCheckLogGroup"}
    log_group = resources["DriftCheckLogGroup"]
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert log_group["Properties"]["LogGroupName"] == {
        "Fn::Sub": "/aws/lambda/${AWS::StackName}-drift-check"
    }
    assert log_group["DeletionPolicy"] == "Delete"


def test_environment_comes_from_the_alarms_parameters(
    function: dict[str, Any], template: dict[str, Any]
) -> None:
    constants = _settings_constants()
    env = function["Properties"]["Environment"]["Variables"]
    assert env == {constants[c]: {"Ref": p} for c, p in ENV_PARAMETERS.items()}
    # One source of truth: the alarm judging a metric uses the threshold the function gets.
    alarms = {
        name: json.dumps(res["Properties"])
        for name, res in template["Resources"].items()
        if isinstance(res, dict) and res.get("Type") == "AWS::CloudWatch::Alarm"
    }
    for alarm, parameters in ALARM_PARAMETERS.items():
        for parameter in parameters:
            assert {"Ref": parameter} in env.values(), parameter
            assert re.search(rf'"Ref": "{parameter}"|\$\{{{parameter}\}}', alarms[alarm]), (
                f"{alarm} does not use {parameter}"
            )


def test_server_and_leap_parameters(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    ntp = params["DriftNtpServers"]
    assert ntp["Default"] == ",".join(Settings().drift_ntp)
    ntp_pattern = re.compile(ntp["AllowedPattern"])
    for good in (ntp["Default"], "time.example.com:1123", "10.0.0.1"):
        assert ntp_pattern.fullmatch(good), good
    for bad in ("", "a, b", "ntp://x", "host:port"):
        assert not ntp_pattern.fullmatch(bad), bad
    leap = params["ExtraLeapSeconds"]
    assert leap["Default"] == Settings().extra_leap_seconds == ""
    leap_pattern = re.compile(leap["AllowedPattern"])
    for good in ("", "2027-06-30:+1", "2027-06-30,2027-12-31:-1", "2027-06-30:1"):
        assert leap_pattern.fullmatch(good), good
    for bad in ("2027-06-30:+2", "tomorrow", "2027-06-30;2027-12-31"):
        assert not leap_pattern.fullmatch(bad), bad


def test_writes_only_the_verdict(function: dict[str, Any]) -> None:
    """PutItem on the state table, limited to the verdict's partition (pk CLOCK)."""
    (policy,) = function["Properties"]["Policies"]
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert as_list(statement["Action"]) == ["dynamodb:PutItem"]
    assert statement["Resource"] == {"Fn::GetAtt": ["StateTable", "Arn"]}
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [VERDICT_KEY["pk"]]},
        # ForAllValues is true when the key is absent: demand it is there.
        "Null": {"dynamodb:LeadingKeys": "false"},
    }


def test_role_as_deployed_has_nothing_else(sam_template: dict[str, Any]) -> None:
    translated = sam_expand.translate(sam_expand.expand(sam_template))
    role = translated["Resources"]["DriftCheckFunctionRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]
    actions = [
        action
        for policy in role["Policies"]
        for statement in as_list(policy["PolicyDocument"]["Statement"])
        for action in as_list(statement["Action"])
    ]
    assert actions == ["dynamodb:PutItem"]


def test_no_retry_and_no_dead_letter_queue(function: dict[str, Any]) -> None:
    """The next check is 5 minutes away; a failure shows as a missing heartbeat (docs)."""
    props = function["Properties"]
    assert props["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert props["EventInvokeConfig"]["MaximumEventAgeInSeconds"] < 300
    assert "DeadLetterQueue" not in props


# --------------------------------------------------------------------------- the schedule


def test_schedule(resources: dict[str, Any], template: dict[str, Any]) -> None:
    props = resources["DriftCheckSchedule"]["Properties"]
    assert props["GroupName"] == {"Ref": "ScheduleGroup"}
    assert props["ScheduleExpression"] == "rate(5 minutes)"
    assert props["State"] == "ENABLED"
    # A little start jitter, well inside the 5 minutes.
    assert props["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 1}
    target = props["Target"]
    assert target["Arn"] == FUNCTION_ARN
    assert target["RoleArn"] == {"Fn::GetAtt": ["DriftCheckSchedulerRole", "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert "DeadLetterConfig" not in target
    # Its name can never be a source's (source schedules are named by source id).
    source_pattern = re.compile(template["Parameters"]["SourceIds"]["AllowedPattern"])
    assert not source_pattern.fullmatch(props["Name"])


def test_scheduler_role_may_only_invoke_the_drift_check(resources: dict[str, Any]) -> None:
    role = resources["DriftCheckSchedulerRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"] == resources["SchedulerRole"]["Properties"][
        "AssumeRolePolicyDocument"
    ], "trusted by Scheduler for the stack's schedule group only, as the collectors' role"
    assert "ManagedPolicyArns" not in role
    granted = [
        (action, statement["Resource"])
        for policy in role["Policies"]
        for statement in as_list(policy["PolicyDocument"]["Statement"])
        for action in as_list(statement["Action"])
    ]
    assert granted == [("lambda:InvokeFunction", FUNCTION_ARN)]
    # And the collectors' scheduler role cannot invoke it.
    assert "DriftCheckFunction" not in json.dumps(resources["SchedulerRole"])


def test_event_file_is_what_the_schedule_delivers(resources: dict[str, Any]) -> None:
    """events/drift-check-scheduled.json = the schedule's Input with a time in its place."""
    text = DRIFT_EVENT.read_text()
    event = json.loads(text)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["scheduled_time"])
    template_input = resources["DriftCheckSchedule"]["Properties"]["Target"]["Input"]
    assert json.loads(template_input) == {"scheduled_time": SCHEDULED_TIME}
    assert text.strip() == template_input.replace(SCHEDULED_TIME, event["scheduled_time"])
