"""The SAM application: lint, an offline `sam build`, and what template.yaml promises.

The tools (sam, cfn-lint) are the ones installed next to the Python running pytest (`make setup`
puts them in .venv). Nothing here talks to the network: every tool runs inside `unshare -n` where
the machine allows it (tests/template/tools.py), `sam build` installs the layer's wheels from the
wheelhouse that `make setup` downloads (`make wheelhouse`), and SAM's version check is pre-empted.
A missing tool or wheelhouse fails the test with what to run; nothing is skipped.

Schedules, the scheduler role, the dead-letter queue and the token grants: test_schedules.py.
checkov: test_checkov.py.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.template.tools import REPO, SAMCONFIG, TEMPLATE, as_list, assert_ok, run, tool

LAYER_SRC = REPO / "layers" / "minutemeter"
SETTINGS_PY = LAYER_SRC / "minutemeter" / "settings.py"
COLLECTOR_SRC = REPO / "functions" / "collector"
FUNCTIONS = {
    "CollectorFunction": "functions/collector",
    "DriftCheckFunction": "functions/drift_check",
    "AuditFunction": "functions/audit",
    "SinkFunction": "functions/sink",
}

# What the collector may do, per table. Changing a permission means changing this on purpose.
STATE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    # TransactWriteItems authorizes each part by its item action: the fenced checkpoint
    # transaction's Put needs PutItem, its ConditionCheck on the lease needs ConditionCheckItem.
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
}
LEDGER_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",  # write_reserved: the entries of a fresh reservation
    "dynamodb:Query",
}
NEVER_ACTIONS = {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:DeleteTable"}
# The conditional token grants: (condition, parameter, action), see test_schedules.py.
TOKEN_GRANTS = {
    "ExporterTokenSecretsRead": (
        "HasExporterTokenSecrets", "ExporterTokenSecretArns", "secretsmanager:GetSecretValue"
    ),
    "ExporterTokenParametersRead": (
        "HasExporterTokenParameters", "ExporterTokenParameterArns", "ssm:GetParameter"
    ),
    "ExporterTokenKeysDecrypt": (
        "HasExporterTokenKmsKeys", "ExporterTokenKmsKeyArns", "kms:Decrypt"
    ),
    # not a token, but granted the same way: sigv4 Prometheus sources (issue 12)
    "PrometheusWorkspacesQuery": (
        "HasPrometheusWorkspaces", "PrometheusWorkspaceArns", "aps:QueryMetrics"
    ),
}
# Source ids with every character the CLI allows, for the Fn::ForEach expansion.
PUNCTUATED_SOURCE_IDS = "node-a,node_b,x.y,Node1"

AARCH64_ELF_MACHINE = 0xB7


# --------------------------------------------------------------------------- helpers


def _pinned_requirements(path: Path) -> list[tuple[str, str]]:
    pins = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: {line!r} is not pinned with =="
        pins.append((name.strip(), version.strip()))
    return pins


def _wheel_prefix(name: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(header[18:20], "little")


def _sam_build(
    sam: Path, env: dict[str, str], out: Path, *overrides: str
) -> Any:
    cmd: list[str | Path] = [sam, "build", "--template-file", TEMPLATE, "--build-dir", out]
    if overrides:
        cmd += ["--parameter-overrides", *overrides]
    return run(cmd, env)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    path = Path(os.environ.get("MINUTEMETER_WHEELHOUSE", REPO / ".local" / "wheelhouse"))
    if not path.is_dir():
        pytest.fail(
            f"no wheelhouse at {path}: the offline layer build needs it; "
            "`make setup` makes it (or `make wheelhouse` alone)"
        )
    wheels = [p.name.lower() for p in path.glob("*.whl")]
    missing = [
        f"{name}=={version}"
        for name, version in _pinned_requirements(LAYER_SRC / "requirements.txt")
        if not any(w.startswith(_wheel_prefix(name, version)) for w in wheels)
    ]
    if missing:
        pytest.fail(
            f"wheelhouse {path} lacks {', '.join(missing)} (stale after a requirements change?): "
            "run `make setup` (or `make wheelhouse`)"
        )
    return path


@pytest.fixture(scope="module")
def build_env(tool_env: dict[str, str], wheelhouse: Path) -> dict[str, str]:
    """What `sam build` needs: make on PATH, the handler, the wheelhouse for the layer."""
    if shutil.which("make", path=tool_env.get("PATH")) is None:
        pytest.fail("`make` is not on PATH: sam build runs the layer and function Makefiles")
    if not (COLLECTOR_SRC / "app.py").is_file():
        pytest.fail(f"{COLLECTOR_SRC / 'app.py'} is missing: the collector handler lives there")
    return dict(tool_env, MINUTEMETER_WHEELHOUSE=str(wheelhouse), MINUTEMETER_PYTHON=sys.executable)


@pytest.fixture(scope="module")
def build_dir(
    tmp_path_factory: pytest.TempPathFactory, build_env: dict[str, str]
) -> Iterator[Path]:
    """`sam build` once, in-process (no Docker), into a temporary build dir.

    No --language-extensions flag: samconfig.toml's `language_extensions = true` must be what
    lets SAM CLI read the Fn::ForEach (without it, sam build crashes on it).
    """
    out = tmp_path_factory.mktemp("sam") / "build"
    proc = _sam_build(tool("sam"), build_env, out)
    assert_ok(proc)
    assert "offline, from" in proc.stdout + proc.stderr, "layer not built from the wheelhouse"
    yield out


# --------------------------------------------------------------------------- lint


def test_cfn_lint_passes(tool_env: dict[str, str]) -> None:
    assert_ok(run([tool("cfn-lint"), TEMPLATE], tool_env))


def test_cfn_lint_passes_with_punctuated_source_ids(
    tool_env: dict[str, str], tmp_path: Path
) -> None:
    """cfn-lint expands Fn::ForEach with the parameter's Default (its --parameters do not feed
    the expansion), so lint a copy whose default lists several ids with '-', '_' and '.'."""
    text = TEMPLATE.read_text()
    default = "    Default: demo\n"
    assert text.count(default) == 1, "SourceIds' default is no longer `demo`: update this test"
    copy = tmp_path / "template.yaml"
    copy.write_text(text.replace(default, f'    Default: "{PUNCTUATED_SOURCE_IDS}"\n'))
    assert_ok(run([tool("cfn-lint"), copy], tool_env))


def test_cfn_lint_sees_inside_the_foreach(tool_env: dict[str, str], tmp_path: Path) -> None:
    """A mistake inside the Fn::ForEach body fails cfn-lint: the loop is linted, not skipped."""
    text = TEMPLATE.read_text()
    assert text.count('Mode: "OFF"') == 1
    broken = tmp_path / "template.yaml"
    broken.write_text(text.replace('Mode: "OFF"', 'Mode: "NEVER"'))
    proc = run([tool("cfn-lint"), broken], tool_env)
    assert proc.returncode != 0 and "NEVER" in proc.stdout, proc.stdout + proc.stderr


def test_sam_validate_lint_passes(tool_env: dict[str, str]) -> None:
    assert_ok(run([tool("sam"), "validate", "--lint", "--template-file", TEMPLATE], tool_env))


def test_sam_validate_translates_with_language_extensions(
    tool_env: dict[str, str], tmp_path: Path
) -> None:
    """`sam validate` without --lint runs the SAM translator. It passes only because SAM CLI
    expands the Fn::ForEach first, as samconfig's global `language_extensions = true` asks
    (without it: "All 'Resources' must be Objects"). The config used is samconfig.toml without
    its validate section (which turns --lint on)."""
    config = tomllib.loads(SAMCONFIG.read_text())
    config["default"].pop("validate")
    lines = [f"version = {config['version']}"]
    for command, sections in config["default"].items():
        for section, values in sections.items():
            lines.append(f"[default.{command}.{section}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    no_lint = tmp_path / "samconfig.toml"
    no_lint.write_text("\n".join(lines) + "\n")
    proc = run(
        [tool("sam"), "validate", "--template-file", TEMPLATE, "--config-file", no_lint],
        tool_env,
    )
    assert_ok(proc)
    assert "basic SAM Validation" in proc.stdout + proc.stderr, "ran the linter, not the translator"


# --------------------------------------------------------------------------- sam build


def test_built_layer_has_package_and_dependencies(build_dir: Path) -> None:
    python = build_dir / "MinutemeterLayer" / "python"
    assert (python / "minutemeter" / "__init__.py").is_file()
    assert (python / "aws_lambda_powertools").is_dir()
    assert (python / "requests").is_dir()


def test_built_layer_leaves_out_dev_tools_caches_and_runtime_provided_sdk(build_dir: Path) -> None:
    python = build_dir / "MinutemeterLayer" / "python"
    assert not (python / "minutemeter" / "local").exists(), "minutemeter/local must not ship"
    assert not list((python / "minutemeter").rglob("__pycache__"))
    assert not list((python / "minutemeter").rglob("*.pyc"))
    assert not (python / "boto3").exists(), "boto3 comes with the Lambda runtime"
    assert not (python / "botocore").exists(), "botocore comes with the Lambda runtime"


def test_built_layer_native_code_is_for_arm64_cp313(build_dir: Path) -> None:
    python = build_dir / "MinutemeterLayer" / "python"
    for so in python.rglob("*.so"):
        assert _elf_machine(so) == AARCH64_ELF_MACHINE, f"{so} is not aarch64"
        assert "cpython-313" in so.name or ".abi3." in so.name, f"{so} is not for CPython 3.13"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_built_function_has_handler_only(build_dir: Path, name: str) -> None:
    function = build_dir / name
    assert (function / "app.py").is_file()
    assert not (function / "Makefile").exists()
    assert (build_dir / "template.yaml").is_file()


def test_built_template_keeps_the_foreach_for_cloudformation(build_dir: Path) -> None:
    """What `sam deploy` uploads: the loop, not its expansion, so that CloudFormation expands it
    with the stack's own SourceIds."""
    built = (build_dir / "template.yaml").read_text()
    assert "Fn::ForEach::SourceSchedules" in built
    assert "Fn::ForEach::SourceLagAlarms" in built
    assert "AWS::LanguageExtensions" in built
    # And the dashboard body as written: CloudFormation resolves the Ref/GetAtt inside it (SAM
    # CLI's local expansion cannot, and leaves them as objects in the JSON).
    assert "Fn::ToJsonString" in built


def test_sam_build_with_several_source_ids(
    tmp_path: Path, build_env: dict[str, str]
) -> None:
    proc = _sam_build(
        tool("sam"), build_env, tmp_path / "build", f"SourceIds={PUNCTUATED_SOURCE_IDS}"
    )
    assert_ok(proc)


def test_sam_build_rejects_source_ids_whose_logical_ids_collide(
    tmp_path: Path, build_env: dict[str, str]
) -> None:
    """node-a and nodea both become CollectorSchedulenodea: the build stops before a deploy."""
    proc = _sam_build(tool("sam"), build_env, tmp_path / "build", "SourceIds=node-a,nodea")
    assert proc.returncode != 0
    assert "CollectorSchedulenodea" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- template facts


def test_transforms_language_extensions_first(template: dict[str, Any]) -> None:
    assert template["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


def test_runtime_and_architecture(template: dict[str, Any], resources: dict[str, Any]) -> None:
    globals_fn = template["Globals"]["Function"]
    assert globals_fn["Runtime"] == "python3.13"
    assert globals_fn["Architectures"] == ["arm64"]
    for name, res in resources.items():
        if res["Type"] == "AWS::Serverless::Function":
            props = res["Properties"]
            assert props.get("Runtime", "python3.13") == "python3.13", name
            assert props.get("Architectures", ["arm64"]) == ["arm64"], name


def test_environment_names_match_settings(template: dict[str, Any]) -> None:
    constants = {
        node.targets[0].id: node.value.value
        for node in ast.parse(SETTINGS_PY.read_text()).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    # Every MINUTEMETER_* name anywhere in the template is one that settings reads.
    names = set(re.findall(r"MINUTEMETER_[A-Z_]+", TEMPLATE.read_text()))
    assert names <= set(constants.values()), names - set(constants.values())
    assert env[constants["ENV_LEDGER_TABLE"]] == {"Ref": "LedgerTable"}
    assert env[constants["ENV_STATE_TABLE"]] == {"Ref": "StateTable"}
    assert env["POWERTOOLS_SERVICE_NAME"] == "minutemeter"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Minutemeter"
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert template["Parameters"]["LogLevel"]["Default"] == "INFO"


@pytest.mark.parametrize("table", ["LedgerTable", "StateTable"])
def test_tables_are_durable(resources: dict[str, Any], table: str) -> None:
    res = resources[table]
    props = res["Properties"]
    assert res["Type"] == "AWS::DynamoDB::Table"
    assert res.get("DeletionPolicy") == "Retain"
    assert res.get("UpdateReplacePolicy") == "Retain"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert {(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]} == {
        ("pk", "HASH"),
        ("sk", "RANGE"),
    }
    assert {(a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]} == {
        ("pk", "S"),
        ("sk", "S"),
    }


def test_ledger_never_expires_and_is_deletion_protected(resources: dict[str, Any]) -> None:
    props = resources["LedgerTable"]["Properties"]
    assert "TimeToLiveSpecification" not in props, "billing facts must never expire"
    assert props["DeletionProtectionEnabled"] is True


def test_state_expires_on_expires_at(resources: dict[str, Any]) -> None:
    ttl = resources["StateTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expires_at", "Enabled": True}


def test_layer_is_built_by_makefile_for_arm64(resources: dict[str, Any]) -> None:
    layer = resources["MinutemeterLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/minutemeter"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}


def test_collector_function_shape(resources: dict[str, Any]) -> None:
    fn = resources["CollectorFunction"]
    props = fn["Properties"]
    assert fn["Metadata"]["BuildMethod"] == "makefile"
    assert props["CodeUri"] == "functions/collector"
    assert props["Handler"] == "app.lambda_handler"
    assert props["Timeout"] == 300
    assert {"Ref": "MinutemeterLayer"} in props["Layers"]
    log_group = props["LoggingConfig"]["LogGroup"]
    assert log_group == {"Ref": "CollectorLogGroup"}
    retention = resources["CollectorLogGroup"]["Properties"]["RetentionInDays"]
    assert retention == {"Ref": "LogRetentionInDays"}


def test_only_the_collector_requires_the_clock_guard(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """Collectors in the stack must honour the drift verdict (settings' default is off, for
    local use without a drift check); no other function reads it."""
    name = "MINUTEMETER_CLOCK_GUARD_REQUIRED"
    assert name not in template["Globals"]["Function"]["Environment"]["Variables"]
    for logical_id, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        env = res["Properties"].get("Environment", {}).get("Variables", {})
        if logical_id == "CollectorFunction":
            assert env[name] == "true"
        else:
            assert name not in env, logical_id


def _unconditional_and_conditional(policies: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """Policies as written: plain documents, and {condition: document} of
    `!If [condition, document, !Ref AWS::NoValue]`."""
    plain_docs, conditional = [], {}
    for policy in policies:
        assert isinstance(policy, dict), f"only inline documents, not {policy!r}"
        if "Fn::If" in policy:
            condition, document, otherwise = policy["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}, policy
            conditional[condition] = document
        else:
            plain_docs.append(policy)
    return plain_docs, conditional


def test_collector_policy_is_least_privilege(resources: dict[str, Any]) -> None:
    policies = resources["CollectorFunction"]["Properties"]["Policies"]
    # Only inline documents: SAM policy templates and managed policies (e.g. DynamoDBCrudPolicy)
    # grant Scan/DeleteItem.
    unconditional, conditional = _unconditional_and_conditional(policies)
    assert all("Statement" in p for p in unconditional), unconditional
    granted: dict[str, set[str]] = {}
    for policy in unconditional:
        for stmt in policy["Statement"]:
            assert stmt["Effect"] == "Allow"
            actions = as_list(stmt["Action"])
            for action in actions:
                assert "*" not in action, f"wildcard action {action}"
                assert action not in NEVER_ACTIONS, f"{action} is never granted"
            for resource in as_list(stmt["Resource"]):
                assert resource != "*" and "*" not in json.dumps(resource), resource
                assert isinstance(resource, dict) and "Fn::GetAtt" in resource, resource
                table, attr = resource["Fn::GetAtt"]
                assert attr == "Arn" and table in {"StateTable", "LedgerTable"}, resource
                granted.setdefault(table, set()).update(actions)
    assert granted == {"StateTable": STATE_ACTIONS, "LedgerTable": LEDGER_ACTIONS}
    # Everything else is a token grant, present only when its parameter is non-empty.
    assert set(conditional) == {condition for condition, _, _ in TOKEN_GRANTS.values()}


def test_token_grants_only_on_their_parameters(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    _, conditional = _unconditional_and_conditional(
        resources["CollectorFunction"]["Properties"]["Policies"]
    )
    for sid, (condition, parameter, action) in TOKEN_GRANTS.items():
        (stmt,) = conditional[condition]["Statement"]
        assert stmt["Sid"] == sid
        assert stmt["Effect"] == "Allow"
        assert stmt["Action"] == action, f"{sid} grants exactly {action}"
        assert stmt["Resource"] == {"Ref": parameter}, f"{sid} is limited to {parameter}"
        assert template["Parameters"][parameter]["Type"] == "CommaDelimitedList"
        assert template["Parameters"][parameter]["Default"] == ""
        # The condition: the list joined is not empty.
        assert template["Conditions"][condition] == {
            "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": parameter}]}, ""]}]
        }
    kms = conditional["HasExporterTokenKmsKeys"]["Statement"][0]
    services = kms["Condition"]["StringEquals"]["kms:ViaService"]
    assert services == [
        {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"},
        {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"},
    ], "keys are usable only through the two token stores"


def test_collector_failures_go_to_the_dead_letter_queue(resources: dict[str, Any]) -> None:
    """Scheduler invokes asynchronously: Lambda's own retries and DLQ handle failed runs."""
    props = resources["CollectorFunction"]["Properties"]
    assert props["EventInvokeConfig"] == {
        "MaximumRetryAttempts": 0,
        "MaximumEventAgeInSeconds": 120,
    }
    assert props["DeadLetterQueue"] == {
        "Type": "SQS",
        "TargetArn": {"Fn::GetAtt": ["CollectorDeadLetterQueue", "Arn"]},
    }


def test_sink_function_is_fed_by_the_ledger_stream(resources: dict[str, Any]) -> None:
    """Issue 11: new entries only, partial batch failures, bisect, bounded retries and age, an
    on-failure queue; the stream holds new images."""
    stream = resources["LedgerTable"]["Properties"]["StreamSpecification"]
    assert stream == {"StreamViewType": "NEW_IMAGE"}
    mapping = resources["SinkStreamMapping"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["LedgerTable", "StreamArn"]}
    assert mapping["FunctionName"] == {"Ref": "SinkFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 < mapping["MaximumRetryAttempts"] <= 10
    assert 0 < mapping["MaximumRecordAgeInSeconds"] < 86_400  # before the stream drops it
    assert mapping["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["SinkFailureQueue", "Arn"]}}}
    (only,) = mapping["FilterCriteria"]["Filters"]
    assert json.loads(only["Pattern"]) == {
        "eventName": ["INSERT"], "dynamodb": {"NewImage": {"type": {"S": ["entry"]}}}}
    schedule = resources["SinkBackfillSchedule"]["Properties"]["Target"]
    assert schedule["Arn"] == {"Fn::GetAtt": ["SinkFunction", "Arn"]}
    assert json.loads(schedule["Input"]) == {"backfill": True}


def test_sink_policy_is_least_privilege(resources: dict[str, Any]) -> None:
    """Items by partition (dynamodb:LeadingKeys), no Scan, no UpdateItem or DeleteItem, and the
    API key secrets only those of the parameter."""
    policies = resources["SinkFunction"]["Properties"]["Policies"]
    statements = {s["Sid"]: s for s in policies[0]["Statement"]}
    keys = {sid: s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            for sid, s in statements.items() if "Condition" in s}
    assert keys == {"RegistriesRead": ["SINKS", "SOURCES"], "DeliveryRecordsReadWrite":
                    ["DELIVERY#*"], "CustomersRead": ["PROFILE#*"],
                    "LedgerRead": ["MONTH#*", "ENTRY#*"]}
    actions = {a for s in statements.values() for a in as_list(s["Action"])}
    assert not actions & {"dynamodb:Scan", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    assert all("*" not in a for a in actions)
    secrets = policies[1]["Fn::If"]
    assert secrets[0] == "HasSinkApiKeySecrets"
    (read,) = secrets[1]["Statement"]
    assert (read["Action"], read["Resource"]) == ("secretsmanager:GetSecretValue",
                                                  {"Ref": "SinkApiKeySecretArns"})


def test_outputs(template: dict[str, Any]) -> None:
    outputs = {k: v["Value"] for k, v in template["Outputs"].items()}
    assert {"Fn::GetAtt": ["CollectorFunction", "Arn"]} in outputs.values()
    assert {"Ref": "LedgerTable"} in outputs.values()
    assert {"Ref": "StateTable"} in outputs.values()
    assert {"Ref": "MinutemeterLayer"} in outputs.values()
    assert {"Ref": "ScheduleGroup"} in outputs.values()
    assert {"Ref": "CollectorDeadLetterQueue"} in outputs.values()
    assert {"Fn::GetAtt": ["DriftCheckFunction", "Arn"]} in outputs.values()
    assert {"Ref": "Dashboard"} in outputs.values()


# --------------------------------------------------------------------------- samconfig


def test_samconfig() -> None:
    config = tomllib.loads(SAMCONFIG.read_text())
    assert config["version"] == 0.1
    default = config["default"]
    assert default["global"]["parameters"]["stack_name"] == "minutemeter"
    # Every command that reads the template must expand Fn::ForEach (SAM CLI's opt-in flag).
    assert default["global"]["parameters"]["language_extensions"] is True
    assert "use_container" not in default["build"]["parameters"]
    assert default["validate"]["parameters"]["lint"] is True
    deploy = default["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True
    assert deploy["fail_on_empty_changeset"] is False


# The modules holding each SAM CLI command that reads template.yaml.
SAM_COMMAND_MODULES = {
    "build": "samcli.commands.build.command",
    "validate": "samcli.commands.validate.validate",
    "package": "samcli.commands.package.command",
    "deploy": "samcli.commands.deploy.command",
    "sync": "samcli.commands.sync.command",
    "local_invoke": "samcli.commands.local.invoke.cli",
}


def test_samconfig_keys_are_sam_cli_options() -> None:
    """Every key in samconfig.toml is an option of the SAM CLI command(s) it configures: SAM CLI
    ignores unknown keys, so a typo or a key it does not know would silently do nothing."""
    options = {
        name: {p.name for p in importlib.import_module(module).cli.params}
        for name, module in SAM_COMMAND_MODULES.items()
    }
    config = tomllib.loads(SAMCONFIG.read_text())["default"]
    for command, sections in config.items():
        keys = set(sections.get("parameters", {}))
        if command == "global":
            for key in keys:
                assert any(key in opts for opts in options.values()), f"global key {key}"
        else:
            assert keys <= options[command], f"{command}: {keys - options[command]}"
    for command, opts in options.items():
        assert "language_extensions" in opts, f"sam {command} has no --language-extensions"
