"""The daily audit function, its schedule and role (issue 11). Its alarms: test_alarms.py; that
every call it makes is granted: test_iam_sufficiency.py. Why these choices: docs/alarms.md."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.template.tools import REPO, as_list

AUDIT_EVENT = REPO / "events" / "audit-scheduled.json"
AUDIT_MAKEFILE = REPO / "functions" / "audit" / "Makefile"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
FUNCTION_ARN = {"Fn::GetAtt": ["AuditFunction", "Arn"]}


def test_function_shape(resources: dict[str, Any]) -> None:
    function = resources["AuditFunction"]
    props = function["Properties"]
    assert function["Metadata"]["BuildMethod"] == "makefile"
    assert (props["CodeUri"], props["Handler"]) == ("functions/audit", "app.lambda_handler")
    assert "build-AuditFunction:" in AUDIT_MAKEFILE.read_text()
    assert {"Ref": "MinutemeterLayer"} in props["Layers"]
    assert props["Timeout"] == 900  # the longest a Lambda may run: two months of accounts
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "AuditLogGroup"}
    log_group = resources["AuditLogGroup"]
    assert log_group["Properties"]["LogGroupName"] == {
        "Fn::Sub": "/aws/lambda/${AWS::StackName}-audit"}
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert props["EventInvokeConfig"]["MaximumRetryAttempts"] <= 1


def test_policy_reads_only_and_never_scans(resources: dict[str, Any]) -> None:
    """The ledger by key and Query; of the state table, the source registry's partition only."""
    grants: dict[str, set[str]] = {}
    for policy in resources["AuditFunction"]["Properties"]["Policies"]:
        for statement in as_list(policy["Statement"]):
            assert statement["Effect"] == "Allow"
            (table,) = as_list(statement["Resource"])
            for action in as_list(statement["Action"]):
                grants.setdefault(table["Fn::GetAtt"][0], set()).add(action)
            if table == {"Fn::GetAtt": ["StateTable", "Arn"]}:
                assert statement["Condition"] == {
                    "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["SOURCES"]},
                    "Null": {"dynamodb:LeadingKeys": "false"},
                }
    assert grants == {
        "LedgerTable": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"},
        "StateTable": {"dynamodb:Query"},
    }


def test_schedule_is_daily_after_the_month_closes(
    resources: dict[str, Any], template: dict[str, Any],
) -> None:
    props = resources["AuditSchedule"]["Properties"]
    assert props["GroupName"] == {"Ref": "ScheduleGroup"}
    assert props["ScheduleExpression"] == "cron(20 3 * * ? *)"
    assert props["ScheduleExpressionTimezone"] == "UTC"
    assert props["State"] == "ENABLED"
    assert props["FlexibleTimeWindow"]["MaximumWindowInMinutes"] <= 60
    target = props["Target"]
    assert target["Arn"] == FUNCTION_ARN
    assert target["RoleArn"] == {"Fn::GetAtt": ["AuditSchedulerRole", "Arn"]}
    source_pattern = re.compile(template["Parameters"]["SourceIds"]["AllowedPattern"])
    assert not source_pattern.fullmatch(props["Name"]), "never a source's schedule name"


def test_scheduler_role_may_only_invoke_the_audit(resources: dict[str, Any]) -> None:
    role = resources["AuditSchedulerRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"] == resources["SchedulerRole"]["Properties"][
        "AssumeRolePolicyDocument"]
    assert "ManagedPolicyArns" not in role
    granted = [
        (action, statement["Resource"])
        for policy in role["Policies"]
        for statement in as_list(policy["PolicyDocument"]["Statement"])
        for action in as_list(statement["Action"])
    ]
    assert granted == [("lambda:InvokeFunction", FUNCTION_ARN)]
    for other in ("SchedulerRole", "DriftCheckSchedulerRole"):
        assert "AuditFunction" not in json.dumps(resources[other])


def test_event_file_is_what_the_schedule_delivers(resources: dict[str, Any]) -> None:
    text = AUDIT_EVENT.read_text()
    event = json.loads(text)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["scheduled_time"])
    template_input = resources["AuditSchedule"]["Properties"]["Target"]["Input"]
    assert json.loads(template_input) == {"scheduled_time": SCHEDULED_TIME}
    assert text.strip() == template_input.replace(SCHEDULED_TIME, event["scheduled_time"])


def test_output(template: dict[str, Any]) -> None:
    assert template["Outputs"]["AuditFunctionArn"]["Value"] == FUNCTION_ARN
