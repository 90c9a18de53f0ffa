"""The SAM application: lint, an offline `sam build`, and what template.yaml promises.

The tools (sam, cfn-lint) are the ones installed next to the Python running pytest (`make setup`
puts them in .venv). Nothing here talks to the network: `sam build` installs the layer's wheels
from the wheelhouse that `make setup` downloads (`make wheelhouse`), and SAM's version check is
pre-empted. A missing tool or wheelhouse fails the test with what to run; nothing is skipped.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SAMCONFIG = REPO / "samconfig.toml"
LAYER_SRC = REPO / "layers" / "minutemeter"
SETTINGS_PY = LAYER_SRC / "minutemeter" / "settings.py"
COLLECTOR_SRC = REPO / "functions" / "collector"
VENV_BIN = Path(sys.executable).parent
REGION = "us-east-1"
TOOL_TIMEOUT_S = 600

# What the collector may do, per table. Changing a permission means changing this on purpose.
STATE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:Query",
}
LEDGER_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
}
NEVER_ACTIONS = {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:DeleteTable"}

AARCH64_ELF_MACHINE = 0xB7


# --------------------------------------------------------------------------- helpers


def _tool(name: str) -> Path:
    path = VENV_BIN / name
    if not path.is_file():
        pytest.fail(
            f"{name} is not installed next to {sys.executable}: run `make setup` "
            "(it installs the dev tools, aws-sam-cli and cfn-lint, into .venv)"
        )
    return path


def _run(cmd: list[str | Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )


def _assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"`{' '.join(proc.args)}` exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


def _plain(node: Any) -> Any:
    """cfn-lint's decoded nodes as plain dicts, lists and scalars."""
    return json.loads(json.dumps(node))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


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


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tool_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for sam/cfn-lint: a region, no telemetry, no version check, no make flags."""
    # SAM CLI checks PyPI for a newer version at most weekly, remembering when in its app dir:
    # give it a private app dir that says it just checked.
    app_dir = tmp_path_factory.mktemp("sam-app-dir")
    (app_dir / "metadata.json").write_text(
        json.dumps({"telemetryEnabled": False, "lastVersionCheck": time.time()})
    )
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env.update(
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        SAM_CLI_TELEMETRY="0",
        __SAM_CLI_APP_DIR=str(app_dir),
    )
    return env


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    try:
        from cfnlint.decode import decode_str
    except ImportError as exc:
        pytest.fail(f"cfn-lint is not importable ({exc}): run `make setup`")
    decoded, matches = decode_str(TEMPLATE.read_text())
    assert not matches, f"template.yaml does not parse: {matches}"
    assert isinstance(decoded, dict)
    return dict(_plain(decoded))


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


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
def build_dir(
    tmp_path_factory: pytest.TempPathFactory, tool_env: dict[str, str], wheelhouse: Path
) -> Iterator[Path]:
    """`sam build` once, in-process (no Docker), into a temporary build dir."""
    sam = _tool("sam")
    if shutil.which("make", path=tool_env.get("PATH")) is None:
        pytest.fail("`make` is not on PATH: sam build runs the layer and function Makefiles")
    if not (COLLECTOR_SRC / "app.py").is_file():
        pytest.fail(f"{COLLECTOR_SRC / 'app.py'} is missing: the collector handler lives there")
    out = tmp_path_factory.mktemp("sam") / "build"
    env = dict(tool_env, MINUTEMETER_WHEELHOUSE=str(wheelhouse), MINUTEMETER_PYTHON=sys.executable)
    proc = _run([sam, "build", "--template-file", TEMPLATE, "--build-dir", out], env)
    _assert_ok(proc)
    assert "offline, from" in proc.stdout + proc.stderr, "layer not built from the wheelhouse"
    yield out


# --------------------------------------------------------------------------- lint


def test_cfn_lint_passes(tool_env: dict[str, str]) -> None:
    _assert_ok(_run([_tool("cfn-lint"), TEMPLATE], tool_env))


def test_sam_validate_lint_passes(tool_env: dict[str, str]) -> None:
    _assert_ok(_run([_tool("sam"), "validate", "--lint", "--template-file", TEMPLATE], tool_env))


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


def test_built_function_has_handler_only(build_dir: Path) -> None:
    function = build_dir / "CollectorFunction"
    assert (function / "app.py").is_file()
    assert not (function / "Makefile").exists()
    assert (build_dir / "template.yaml").is_file()


# --------------------------------------------------------------------------- template facts


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


def test_collector_policy_is_least_privilege(resources: dict[str, Any]) -> None:
    policies = resources["CollectorFunction"]["Properties"]["Policies"]
    # Only inline documents: SAM policy templates and managed policies (e.g. DynamoDBCrudPolicy)
    # grant Scan/DeleteItem.
    assert all(isinstance(p, dict) and "Statement" in p for p in policies), policies
    granted: dict[str, set[str]] = {}
    for policy in policies:
        for stmt in policy["Statement"]:
            assert stmt["Effect"] == "Allow"
            actions = _as_list(stmt["Action"])
            for action in actions:
                assert "*" not in action, f"wildcard action {action}"
                assert action not in NEVER_ACTIONS, f"{action} is never granted"
            for resource in _as_list(stmt["Resource"]):
                assert resource != "*" and "*" not in json.dumps(resource), resource
                assert isinstance(resource, dict) and "Fn::GetAtt" in resource, resource
                table, attr = resource["Fn::GetAtt"]
                assert attr == "Arn" and table in {"StateTable", "LedgerTable"}, resource
                granted.setdefault(table, set()).update(actions)
    assert granted == {"StateTable": STATE_ACTIONS, "LedgerTable": LEDGER_ACTIONS}


def test_outputs(template: dict[str, Any]) -> None:
    outputs = {k: v["Value"] for k, v in template["Outputs"].items()}
    assert {"Fn::GetAtt": ["CollectorFunction", "Arn"]} in outputs.values()
    assert {"Ref": "LedgerTable"} in outputs.values()
    assert {"Ref": "StateTable"} in outputs.values()
    assert {"Ref": "MinutemeterLayer"} in outputs.values()


# --------------------------------------------------------------------------- samconfig


def test_samconfig() -> None:
    config = tomllib.loads(SAMCONFIG.read_text())
    assert config["version"] == 0.1
    default = config["default"]
    assert default["global"]["parameters"]["stack_name"] == "minutemeter"
    assert "use_container" not in default["build"]["parameters"]
    assert default["validate"]["parameters"]["lint"] is True
    deploy = default["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True
    assert deploy["fail_on_empty_changeset"] is False
