"""The operations API in the template: IAM-authenticated URL, narrow invoke grant."""

from __future__ import annotations

from typing import Any


def test_the_function_url_requires_iam_auth(template: dict[str, Any]) -> None:
    api = template["Resources"]["ApiFunction"]
    assert api["Properties"]["FunctionUrlConfig"]["AuthType"] == "AWS_IAM"
    assert api["Properties"]["CodeUri"] == "functions/api"
    assert template["Outputs"]["ApiFunctionUrl"]["Value"] == {
        "Fn::GetAtt": ["ApiFunctionUrl", "FunctionUrl"]}


def test_the_invoke_policy_allows_only_this_function_and_only_through_its_url(
    template: dict[str, Any],
) -> None:
    statements = template["Resources"]["ApiInvokePolicy"]["Properties"]["PolicyDocument"][
        "Statement"]
    by_action = {s["Action"]: s for s in statements}
    assert set(by_action) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] == {"Fn::GetAtt": ["ApiFunction", "Arn"]}
    assert by_action["lambda:InvokeFunctionUrl"]["Condition"] == {
        "StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}
    # a direct Invoke could carry a hand-made request context (a forged principal)
    assert by_action["lambda:InvokeFunction"]["Condition"] == {
        "Bool": {"lambda:InvokedViaFunctionUrl": "true"}}


def test_the_api_writes_only_the_partitions_it_owns(template: dict[str, Any]) -> None:
    statements = [s for p in template["Resources"]["ApiFunction"]["Properties"]["Policies"]
                  if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [
            statement["Action"]]
        assert not {"dynamodb:Scan", "dynamodb:DeleteItem"} & set(actions)
        if writes & set(actions):
            condition = statement["Condition"]
            assert condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            assert condition["Null"] == {"dynamodb:LeadingKeys": "false"}
