"""Local runs of the template's functions (issue 14): `sam local invoke --env-vars` can point them
at a local DynamoDB, the deployed ones get no endpoint, samconfig.toml's `local` environment, and
the stack outputs that the CLI's `--stack` reads. `make invoke`: tests/functional/test_invoke.py.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.template import sam_expand
from tests.template.tools import REPO, SAMCONFIG, TEMPLATE

ENDPOINT = "AWS_ENDPOINT_URL_DYNAMODB"
ENV_LOCAL = REPO / "events" / "env.local.json"
FUNCTIONS = ("CollectorFunction", "DriftCheckFunction", "ApiFunction", "AuditFunction",
             "SinkFunction")


def _functions(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items()
            if isinstance(res, dict) and res.get("Type") == kind}


def test_every_function_declares_the_endpoint_variable_empty(template: dict[str, Any]) -> None:
    """Declared (SAM CLI lets --env-vars set only declared variables), empty on AWS."""
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env[ENDPOINT] == ""
    for name in FUNCTIONS:
        props = template["Resources"][name]["Properties"]
        assert ENDPOINT not in props.get("Environment", {}).get("Variables", {}), name


@pytest.mark.parametrize("value", ["", None])
def test_botocore_reads_an_empty_endpoint_variable_as_none(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    """Why an empty value is safe to deploy: botocore's configured-endpoint lookup skips empty
    values (botocore/configprovider.py), so the client uses the regional endpoint, exactly as
    with the variable unset."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    if value is None:
        monkeypatch.delenv(ENDPOINT, raising=False)
    else:
        monkeypatch.setenv(ENDPOINT, value)
    client = boto3.session.Session(region_name="us-east-1").client("dynamodb")
    assert client.meta.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"


def test_botocore_does_use_a_set_endpoint_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT, "http://127.0.0.1:8000")
    client = boto3.session.Session(region_name="us-east-1").client("dynamodb")
    assert client.meta.endpoint_url == "http://127.0.0.1:8000"


def test_deployed_functions_get_an_empty_endpoint(sam_template: dict[str, Any]) -> None:
    """After the SAM transform (Globals merged), every Lambda function carries the variable, empty:
    no parameter or condition can put an endpoint there on deploy."""
    deployed = sam_expand.translate(sam_expand.expand(sam_template))
    functions = _functions(deployed, "AWS::Lambda::Function")
    assert set(functions) == set(FUNCTIONS)
    for name, res in functions.items():
        assert res["Properties"]["Environment"]["Variables"][ENDPOINT] == "", name


def test_sam_local_env_vars_point_every_function_at_the_local_dynamodb() -> None:
    """What `sam local invoke --env-vars events/env.local.json` gives each function: SAM CLI's own
    resolution (template value, then shell, then the file's Parameters) over the functions as SAM
    CLI's local provider reads them."""
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
    from samcli.local.lambdafn.env_vars import EnvironmentVariables

    overrides = json.loads(ENV_LOCAL.read_text())["Parameters"]
    stacks, _ = SamLocalStackProvider.get_stacks(
        template_file=str(TEMPLATE), language_extensions_enabled=True
    )
    functions = {f.name: f for f in SamFunctionProvider(stacks).get_all()}
    assert set(functions) == set(FUNCTIONS)
    for name, function in functions.items():
        variables = (function.environment or {}).get("Variables", {})
        assert ENDPOINT in variables, name
        resolved = EnvironmentVariables(
            function_name=name, function_memory=function.memory, function_timeout=function.timeout,
            function_handler=function.handler, variables=variables, override_values=overrides,
        ).resolve()
        for key, value in overrides.items():
            assert resolved[key] == value, (name, key)
        without = EnvironmentVariables(
            function_name=name, function_memory=function.memory, function_timeout=function.timeout,
            function_handler=function.handler, variables=variables,
        ).resolve()
        assert without[ENDPOINT] == "", name


def test_env_local_sets_only_variables_the_functions_declare(template: dict[str, Any]) -> None:
    document = json.loads(ENV_LOCAL.read_text())
    assert set(document) == {"Parameters"}
    declared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    assert set(document["Parameters"]) <= declared
    assert document["Parameters"][ENDPOINT].startswith("http://")
    assert all(isinstance(v, str) for v in document["Parameters"].values())


def test_samconfig_local_environment() -> None:
    config = tomllib.loads(SAMCONFIG.read_text())
    local = config["local"]
    # another environment reads only its own sections: the loop flag must be there too
    assert local["global"]["parameters"]["language_extensions"] is True
    invoke = local["local_invoke"]["parameters"]
    assert (REPO / invoke["env_vars"]) == ENV_LOCAL
    assert invoke["add_host"] == ["host.docker.internal:host-gateway"]
    assert "deploy" not in local, "the local environment must never deploy"


def test_the_outputs_the_cli_reads(template: dict[str, Any]) -> None:
    """`minutemeter --stack NAME` resolves the tables and the API URL from these outputs."""
    outputs = {k: v["Value"] for k, v in template["Outputs"].items()}
    assert outputs["LedgerTableName"] == {"Ref": "LedgerTable"}
    assert outputs["StateTableName"] == {"Ref": "StateTable"}
    assert outputs["ApiFunctionUrl"] == {"Fn::GetAtt": ["ApiFunctionUrl", "FunctionUrl"]}


def test_events_are_documented() -> None:
    doc = (REPO / "docs" / "build.md").read_text()
    for name in ("scheduler-event.json", "drift-check-scheduled.json", "api-status.json",
                 "env.local.json", "make invoke", "--env-vars", "--config-env local"):
        assert name in doc, name
    assert Path(ENV_LOCAL).is_file()
