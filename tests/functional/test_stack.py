"""A deployed stack by name (issue 14): ``--stack NAME`` / ``MINUTEMETER_STACK`` takes the table
names and the operations API URL from the stack's CloudFormation outputs; an explicitly set
``MINUTEMETER_*_TABLE`` wins. ``tables create`` goes to AWS only with ``--real-aws``.

The outputs parser runs against botocore's Stubber (responses checked against the
CloudFormation API model); the CLI end to end against moto, whose CloudFormation creates the
stack's DynamoDB tables under generated names, as AWS does.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from minutemeter.cli import main
from minutemeter.settings import Settings
from minutemeter.stack import (
    StackOutputs,
    StackOutputsError,
    describe_stack,
    settings_for_stack,
)

TABLE_KEYS = {
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                             {"AttributeName": "sk", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                  {"AttributeName": "sk", "KeyType": "RANGE"}],
    "BillingMode": "PAY_PER_REQUEST",
}
WINDOW = ["--since", "2026-11-22T10:00:00Z", "--until", "2026-11-22T11:00:00Z"]


def _stack_response(outputs: dict[str, str], status: str = "UPDATE_COMPLETE") -> dict[str, Any]:
    return {"Stacks": [{
        "StackName": "minutemeter", "StackStatus": status,
        "CreationTime": "2026-11-01T00:00:00Z",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
    }]}


def _stubbed(response: dict[str, Any]) -> Any:
    client = boto3.client("cloudformation", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response("describe_stacks", response, {"StackName": "minutemeter"})
    stubber.activate()
    return client


# -- the outputs -------------------------------------------------------------------------------
def test_the_outputs_name_the_tables_and_the_api() -> None:
    client = _stubbed(_stack_response({
        "LedgerTableName": "minutemeter-LedgerTable-1AB", "StateTableName": "minutemeter-St-2CD",
        "ApiFunctionUrl": "https://abc.lambda-url.us-east-1.on.aws/", "DashboardName": "d"}))
    assert describe_stack(client, "minutemeter") == StackOutputs(
        stack="minutemeter", ledger_table="minutemeter-LedgerTable-1AB",
        state_table="minutemeter-St-2CD", api_url="https://abc.lambda-url.us-east-1.on.aws/")


def test_a_stack_without_the_table_outputs_says_so() -> None:
    client = _stubbed(_stack_response({"LedgerTableName": "x"}, status="ROLLBACK_COMPLETE"))
    with pytest.raises(StackOutputsError, match=r"ROLLBACK_COMPLETE.*StateTableName") as caught:
        describe_stack(client, "minutemeter")
    assert caught.value.missing == ["StateTableName"]


def test_an_explicit_table_variable_wins_over_the_stack(caplog: pytest.LogCaptureFixture) -> None:
    outputs = StackOutputs("mm", ledger_table="mm-ledger", state_table="mm-state", api_url=None)
    assert settings_for_stack(Settings(), outputs, {}).ledger_table == "mm-ledger"
    with caplog.at_level(logging.WARNING):
        chosen = settings_for_stack(Settings(ledger_table="mine"), outputs,
                                    {"MINUTEMETER_LEDGER_TABLE": "mine"})
    assert (chosen.ledger_table, chosen.state_table) == ("mine", "mm-state")
    assert "MINUTEMETER_LEDGER_TABLE=mine overrides" in caplog.text


# -- the CLI on a stack (moto) -----------------------------------------------------------------
def _moto_cloudformation() -> None:
    try:
        import moto.cloudformation  # noqa: F401
    except ImportError as exc:  # moto's CloudFormation needs its extra (openapi-spec-validator)
        pytest.skip(f"moto[cloudformation] is not installed: {exc}")


@pytest.fixture
def api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in operations API on 127.0.0.1: answers every POST /reconcile with ``ok``."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body),
                             "signed": "AWS4-HMAC-SHA256" in self.headers["Authorization"]})
            answer = json.dumps({"status": "ok", "difference_count": 0}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stack(api: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[dict[str, str]]:
    """A stack named ``mm`` with the template's three outputs; its tables get generated names."""
    _moto_cloudformation()
    for name in ("MINUTEMETER_LEDGER_TABLE", "MINUTEMETER_STATE_TABLE", "MINUTEMETER_STACK"):
        monkeypatch.delenv(name, raising=False)
    template = {
        "Resources": {"LedgerTable": {"Type": "AWS::DynamoDB::Table", "Properties": TABLE_KEYS},
                      "StateTable": {"Type": "AWS::DynamoDB::Table", "Properties": TABLE_KEYS}},
        "Outputs": {"LedgerTableName": {"Value": {"Ref": "LedgerTable"}},
                    "StateTableName": {"Value": {"Ref": "StateTable"}},
                    "ApiFunctionUrl": {"Value": api[0]}},
    }
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(StackName="mm", TemplateBody=json.dumps(template))
        outputs = cloudformation.describe_stacks(StackName="mm")["Stacks"][0]["Outputs"]
        yield {o["OutputKey"]: o["OutputValue"] for o in outputs}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_works_on_the_stacks_tables(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = _cli(capsys, "--stack", "mm", "sources", "put", "s1", "--url",
                        "http://127.0.0.1:1")
    assert code == 0, err
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    assert dynamodb.scan(TableName=stack["StateTableName"])["Count"] >= 1
    code, out, _ = _cli(capsys, "sources", "list", "--stack", "mm")
    assert code == 0 and [s["source_id"] for s in json.loads(out)] == ["s1"]

    monkeypatch.setenv("MINUTEMETER_STACK", "mm")  # the variable does what --stack does
    code, out, _ = _cli(capsys, "sources", "list")
    assert code == 0 and len(json.loads(out)) == 1

    monkeypatch.setenv("MINUTEMETER_STATE_TABLE", "elsewhere")  # explicit wins: not there
    code, out, err = _cli(capsys, "sources", "list")
    assert (code, out) == (1, "")
    assert "ResourceNotFoundException" in err and "tables create" in err
    assert "elsewhere" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("minutemeter: ")]) == 1


def test_reconcile_goes_to_the_stacks_api(
    stack: dict[str, str], api: tuple[str, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _cli(capsys, "--stack", "mm", "reconcile", "s1", *WINDOW, "--dry-run")
    assert code == 0, err
    assert json.loads(out)["status"] == "ok"
    (request,) = api[1]
    assert request["path"] == "/reconcile" and request["signed"]
    assert request["body"]["source_id"] == "s1" and request["body"]["dry_run"] is True


def test_an_unknown_stack_is_one_line(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _cli(capsys, "--stack", "nope", "status")
    assert (code, out) == (1, "")
    assert len(err.strip().splitlines()) == 1
    assert "does not exist" in err and "--stack" in err


def test_tables_create_needs_real_aws_to_create_in_the_account(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = _cli(capsys, "tables", "create")  # no endpoint variable: that is AWS
    assert code == 2 and "--real-aws" in err
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    before = set(dynamodb.list_tables()["TableNames"])
    assert "minutemeter-ledger" not in before
    code, out, err = _cli(capsys, "tables", "create", "--real-aws")
    assert code == 0, err
    assert {t["table"] for t in json.loads(out)["tables"]} == {"minutemeter-ledger",
                                                               "minutemeter-state"}
    code, out, _ = _cli(capsys, "--stack", "mm", "tables", "create", "--real-aws")
    assert [t["status"] for t in json.loads(out)["tables"]] == ["exists", "exists"]
