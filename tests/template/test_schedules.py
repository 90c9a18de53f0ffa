"""The per-source schedules, their execution role and dead-letter queue, and the token grants.

Checked on the template as written (the Fn::ForEach loop) and as deployed: expanded by SAM CLI's
language extensions with given SourceIds, then through the SAM transform (tests/template/
sam_expand.py), so that what CloudFormation will create, one schedule per source, is what is
asserted. See docs/schedules.md for the choices these tests pin.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.template import sam_expand
from tests.template.tools import REPO, as_list

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
SCHEDULER_EVENT = REPO / "events" / "scheduler-event.json"
HANDLER_PATH = REPO / "functions" / "collector" / "app.py"
SOURCES_PY = REPO / "layers" / "minutemeter" / "minutemeter" / "service" / "sources.py"
COLLECTOR_ARN = {"Fn::GetAtt": ["CollectorFunction", "Arn"]}
DLQ_ARN = {"Fn::GetAtt": ["CollectorDeadLetterQueue", "Arn"]}
SAMPLE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:minutemeter/node-a-AbCdEf"
SAMPLE_PARAMETER = "arn:aws:ssm:us-east-1:123456789012:parameter/minutemeter/node-b"
SAMPLE_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# SourceIds to expand with, and the logical ids CloudFormation will give their schedules.
SOURCE_ID_CASES = {
    "demo": {"demo": "CollectorScheduledemo"},
    "node-a,node_b,x.y,Node1": {
        "node-a": "CollectorSchedulenodea",
        "node_b": "CollectorSchedulenodeb",
        "x.y": "CollectorSchedulexy",
        "Node1": "CollectorScheduleNode1",
    },
}


# The schedules that are not a source's (each tested beside its function: test_drift_check.py,
# the audit's and the sink backfill's in test_alarms.py / test_template.py).
OTHER_SCHEDULES = {"DriftCheckSchedule", "AuditSchedule", "SinkBackfillSchedule"}


def _schedules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The sources' schedules (the drift check's own schedule: test_drift_check.py)."""
    return {
        name: res
        for name, res in template["Resources"].items()
        if isinstance(res, dict)
        and res.get("Type") == "AWS::Scheduler::Schedule"
        and name not in OTHER_SCHEDULES
    }


def test_every_schedule_is_a_sources_or_the_drift_checks(expanded: dict[str, Any]) -> None:
    """No third kind of schedule hides from the tests behind `_schedules`' filter."""
    for name, res in expanded["Resources"].items():
        if res.get("Type") == "AWS::Scheduler::Schedule" and name not in OTHER_SCHEDULES:
            assert res["Properties"]["Target"]["Arn"] == COLLECTOR_ARN, name


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(as_list(document["Statement"]))


@pytest.fixture(scope="module", params=sorted(SOURCE_ID_CASES))
def source_ids(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def expanded(sam_template: dict[str, Any], source_ids: str) -> dict[str, Any]:
    return sam_expand.expand(sam_template, {"SourceIds": source_ids})


# --------------------------------------------------------------------------- the loop as written


def test_loops_over_the_source_ids(loops: dict[str, list[Any]]) -> None:
    """One schedule, one lag alarm and one quarantine alarm (test_alarms.py) per source id."""
    bodies = {
        "SourceSchedules": "CollectorSchedule&{SourceId}",
        "SourceLagAlarms": "LagAlarm&{SourceId}",
        "SourceQuarantineAlarms": "QuarantineAlarm&{SourceId}",
    }
    assert set(loops) == set(bodies)
    for loop, key in bodies.items():
        identifier, collection, body = loops[loop]
        assert identifier == "SourceId"
        assert collection == {"Ref": "SourceIds"}
        # &{}: the id without its non-alphanumeric characters (logical ids are alphanumeric).
        assert list(body) == [key]


def test_source_ids_parameter(template: dict[str, Any]) -> None:
    param = template["Parameters"]["SourceIds"]
    assert param["Type"] == "CommaDelimitedList"
    assert param["Default"] == "demo", "a placeholder that deploys: see docs/schedules.md"
    # CloudFormation applies a CommaDelimitedList's pattern to each item: the CLI's id rule.
    source = SOURCES_PY.read_text()
    match = re.search(r're\.compile\(r"(?P<pattern>[^"]+)"', source)
    assert match, "the CLI's source id pattern moved: update this test"
    assert param["AllowedPattern"] == f"^{match['pattern']}$"


def test_schedule_parameters(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["ScheduleExpression"]["Default"] == "rate(5 minutes)"  # docs/schedules.md
    pattern = re.compile(params["ScheduleExpression"]["AllowedPattern"])
    assert pattern.fullmatch("rate(1 minute)") and pattern.fullmatch("cron(* * * * ? *)")
    assert not pattern.fullmatch("at(2026-11-25T10:00:00)"), "a one-time schedule is no tick"
    assert params["ScheduleState"]["Default"] == "ENABLED"
    assert params["ScheduleState"]["AllowedValues"] == ["ENABLED", "DISABLED"]


@pytest.mark.parametrize(
    ("parameter", "good", "bad"),
    [
        (
            "ExporterTokenSecretArns",
            [SAMPLE_SECRET, "", SAMPLE_SECRET.replace("arn:aws:", "arn:aws-cn:")],
            ["*", "arn:aws:secretsmanager:us-east-1:123456789012:secret:*", "ssm:/x"],
        ),
        (
            "ExporterTokenParameterArns",
            [SAMPLE_PARAMETER, "", SAMPLE_PARAMETER.replace("arn:aws:", "arn:aws-us-gov:")],
            ["*", "arn:aws:ssm:us-east-1:123456789012:parameter/*", "ssm:/minutemeter/node-b"],
        ),
        (
            "ExporterTokenKmsKeyArns",
            [SAMPLE_KEY, ""],
            ["*", "arn:aws:kms:us-east-1:123456789012:key/*", "alias/aws/ssm"],
        ),
    ],
)
def test_token_parameters_take_exact_arns_only(
    template: dict[str, Any], parameter: str, good: list[str], bad: list[str]
) -> None:
    """No wildcard can slip into a grant through a parameter (CloudFormation checks each item)."""
    pattern = re.compile(template["Parameters"][parameter]["AllowedPattern"])
    for value in good:
        assert pattern.fullmatch(value), value
    for value in bad:
        assert not pattern.fullmatch(value), value


# --------------------------------------------------------------------------- expanded schedules


def test_one_schedule_per_source_id(expanded: dict[str, Any], source_ids: str) -> None:
    schedules = _schedules(expanded)
    expected = SOURCE_ID_CASES[source_ids]
    assert {name: res["Properties"]["Name"] for name, res in schedules.items()} == {
        logical_id: source_id for source_id, logical_id in expected.items()
    }
    assert not any(k.startswith("Fn::ForEach") for k in expanded["Resources"])


def _assert_target(name: str, target: dict[str, Any]) -> None:
    assert target["Arn"] == COLLECTOR_ARN, name
    assert target["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}, name
    # Delivery retries only while a tick is still worth running.
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 120}
    assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}, name


def test_loop_body_shape(loops: dict[str, list[Any]]) -> None:
    """As written: every setting comes from a parameter or a resource of this stack."""
    (body,) = loops["SourceSchedules"][2].values()
    assert body["Type"] == "AWS::Scheduler::Schedule"
    props = body["Properties"]
    assert props["Name"] == {"Ref": "SourceId"}
    assert props["GroupName"] == {"Ref": "ScheduleGroup"}
    assert props["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert props["State"] == {"Ref": "ScheduleState"}
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    _assert_target("loop body", props["Target"])


def test_schedule_shape(expanded: dict[str, Any]) -> None:
    """As deployed with the defaults (SAM CLI resolves parameter references while expanding)."""
    for name, res in _schedules(expanded).items():
        props = res["Properties"]
        assert props["GroupName"] == {"Ref": "ScheduleGroup"}, name
        assert props["ScheduleExpression"] == "rate(5 minutes)", name
        assert props["State"] == "ENABLED", name
        assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}, name
        _assert_target(name, props["Target"])


def test_schedule_parameters_reach_every_schedule(sam_template: dict[str, Any]) -> None:
    parameters = {
        "SourceIds": "a,b",
        "ScheduleExpression": "rate(1 minute)",
        "ScheduleState": "DISABLED",
    }
    schedules = _schedules(sam_expand.expand(sam_template, parameters))
    assert len(schedules) == 2
    for name, res in schedules.items():
        assert res["Properties"]["ScheduleExpression"] == "rate(1 minute)", name
        assert res["Properties"]["State"] == "DISABLED", name


def test_schedule_input_is_the_collector_event(expanded: dict[str, Any]) -> None:
    for name, res in _schedules(expanded).items():
        raw = res["Properties"]["Target"]["Input"]
        assert isinstance(raw, str), f"{name}: Input must be a JSON string, not {raw!r}"
        event = json.loads(raw)
        assert event == {"source_id": res["Properties"]["Name"], "scheduled_time": SCHEDULED_TIME}


def test_colliding_logical_ids_are_refused(sam_template: dict[str, Any]) -> None:
    """node-a and nodea would both be CollectorSchedulenodea."""
    with pytest.raises(Exception, match="CollectorSchedulenodea"):
        sam_expand.expand(sam_template, {"SourceIds": "node-a,nodea"})


def test_schedule_group_is_the_stacks(expanded: dict[str, Any]) -> None:
    group = expanded["Resources"]["ScheduleGroup"]
    assert group["Type"] == "AWS::Scheduler::ScheduleGroup"
    # No fixed name: CloudFormation names it after the stack, so two stacks never share a group.
    assert "Name" not in group.get("Properties", {})


def test_dead_letter_queue(expanded: dict[str, Any]) -> None:
    queue = expanded["Resources"]["CollectorDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    props = queue["Properties"]
    assert props["SqsManagedSseEnabled"] is True
    assert props["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert "FifoQueue" not in props, "Scheduler and Lambda dead letters need a standard queue"


# --------------------------------------------------------------------------- the scheduler role


def test_scheduler_role_trusts_only_our_schedule_group(resources: dict[str, Any]) -> None:
    role = resources["SchedulerRole"]
    (statement,) = _statements(role["Properties"]["AssumeRolePolicyDocument"])
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert as_list(statement["Action"]) == ["sts:AssumeRole"]
    assert statement["Condition"] == {
        "StringEquals": {
            "aws:SourceAccount": {"Ref": "AWS::AccountId"},
            "aws:SourceArn": {"Fn::GetAtt": ["ScheduleGroup", "Arn"]},
        }
    }


def test_scheduler_role_may_only_invoke_the_collector_and_dead_letter(
    expanded: dict[str, Any],
) -> None:
    """On the expanded template: also no policy that only the loop's expansion would add."""
    props = expanded["Resources"]["SchedulerRole"]["Properties"]
    assert "ManagedPolicyArns" not in props and "PermissionsBoundary" not in props
    granted = [
        (action, json.dumps(resource, sort_keys=True))
        for policy in props["Policies"]
        for statement in _statements(policy["PolicyDocument"])
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]
    assert sorted(granted) == sorted(
        [
            # The unqualified ARN only: no versions or aliases (":*"), which nothing invokes.
            ("lambda:InvokeFunction", json.dumps(COLLECTOR_ARN, sort_keys=True)),
            ("sqs:SendMessage", json.dumps(DLQ_ARN, sort_keys=True)),
        ]
    )
    # No other policy in the template attaches to the role.
    for name, res in expanded["Resources"].items():
        if res.get("Type") in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            assert "SchedulerRole" not in json.dumps(res), name


# --------------------------------------------------------------------------- the collector's role


def _role_grants(translated: dict[str, Any]) -> dict[str, set[str]]:
    """{action: {resource as JSON}} of the SAM-generated collector role."""
    role = translated["Resources"]["CollectorFunctionRole"]["Properties"]
    grants: dict[str, set[str]] = {}
    for policy in role["Policies"]:
        for statement in _statements(policy["PolicyDocument"]):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                resources = as_list(statement["Resource"])
                grants.setdefault(action, set()).update(
                    json.dumps(r, sort_keys=True) for r in resources
                )
    assert role["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]
    return grants


TOKEN_ACTIONS = {"secretsmanager:GetSecretValue", "ssm:GetParameter", "kms:Decrypt"}


def test_collector_reads_no_secret_without_token_parameters(sam_template: dict[str, Any]) -> None:
    translated = sam_expand.translate(sam_expand.expand(sam_template))
    grants = _role_grants(translated)
    assert not TOKEN_ACTIONS & set(grants), grants
    assert grants["sqs:SendMessage"] == {json.dumps(DLQ_ARN, sort_keys=True)}


def test_collector_reads_exactly_its_token_secrets(sam_template: dict[str, Any]) -> None:
    other_secret = SAMPLE_SECRET.replace("node-a", "node-c")
    parameters = {
        "ExporterTokenSecretArns": f"{SAMPLE_SECRET},{other_secret}",
        "ExporterTokenParameterArns": SAMPLE_PARAMETER,
        "ExporterTokenKmsKeyArns": SAMPLE_KEY,
    }
    translated = sam_expand.translate(sam_expand.expand(sam_template, parameters), parameters)
    grants = _role_grants(translated)
    assert grants["secretsmanager:GetSecretValue"] == {
        json.dumps(SAMPLE_SECRET), json.dumps(other_secret)
    }
    assert grants["ssm:GetParameter"] == {json.dumps(SAMPLE_PARAMETER)}
    assert grants["kms:Decrypt"] == {json.dumps(SAMPLE_KEY)}
    # And nothing else beyond the tables, the dead-letter queue and those tokens.
    assert set(grants) - TOKEN_ACTIONS - {"sqs:SendMessage"} == {
        action for action in grants if action.startswith("dynamodb:")
    }


def test_token_grants_stay_conditional_for_cloudformation(sam_template: dict[str, Any]) -> None:
    """SAM CLI resolves the conditions locally; CloudFormation's SAM transform gets them
    unresolved and must keep each grant behind its condition (the loops removed here, as only the
    language extensions can read them)."""
    raw = json.loads(json.dumps(sam_template))
    for name in [n for n in raw["Resources"] if n.startswith("Fn::ForEach::")]:
        del raw["Resources"][name]
    raw["Transform"] = "AWS::Serverless-2016-10-31"
    role = sam_expand.translate(raw)["Resources"]["CollectorFunctionRole"]["Properties"]
    conditional = {
        policy["Fn::If"][0]: policy["Fn::If"]
        for policy in role["Policies"]
        if "Fn::If" in policy
    }
    assert set(conditional) == {
        "HasExporterTokenSecrets", "HasExporterTokenParameters", "HasExporterTokenKmsKeys",
        "HasPrometheusWorkspaces",  # aps:QueryMetrics, only with workspaces (issue 12)
    }
    for condition, (_, policy, otherwise) in conditional.items():
        assert otherwise == {"Ref": "AWS::NoValue"}, condition
        (statement,) = _statements(policy["PolicyDocument"])
        assert set(statement["Resource"]) == {"Ref"}, condition
    unconditional = [p for p in role["Policies"] if "Fn::If" not in p]
    actions = {
        action
        for policy in unconditional
        for statement in _statements(policy["PolicyDocument"])
        for action in as_list(statement["Action"])
    }
    assert not TOKEN_ACTIONS & actions


# --------------------------------------------------------------------------- the scheduler event


def _load_handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("collector_app_for_template", HANDLER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scheduler_event_is_what_the_default_schedule_delivers(
    sam_template: dict[str, Any],
) -> None:
    """events/scheduler-event.json = the `demo` schedule's Input, its placeholder replaced by a
    time in Scheduler's format (a rate schedule ticks at its creation second, not at :00)."""
    event_text = SCHEDULER_EVENT.read_text()
    event = json.loads(event_text)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["scheduled_time"])
    (schedule,) = _schedules(sam_expand.expand(sam_template)).values()
    template_input = schedule["Properties"]["Target"]["Input"]
    assert event_text.strip() == template_input.replace(SCHEDULED_TIME, event["scheduled_time"])


def test_collector_accepts_the_scheduler_event() -> None:
    handler = _load_handler()
    event = json.loads(SCHEDULER_EVENT.read_text())
    assert handler.parse_event(event) == (event["source_id"], event["scheduled_time"])


def test_docs_name_what_the_template_declares(template: dict[str, Any]) -> None:
    doc = (REPO / "docs" / "schedules.md").read_text()
    for name in ("SourceIds", "ScheduleExpression", "ScheduleState", "language_extensions",
                 "ExporterTokenSecretArns", "ExporterTokenParameterArns",
                 "ExporterTokenKmsKeyArns", "CollectorDeadLetterQueue"):
        assert name in doc, f"docs/schedules.md does not mention {name}"
    assert Path(SCHEDULER_EVENT).name in doc
