"""A Lambda function of template.yaml as ``make invoke`` imitates it, without a container.

What ``sam local invoke`` takes from the template and the runtime: the function's timeout,
memory and environment (parameters at their defaults; CloudFormation's short-form tags read as
their long form), its handler module ``functions/<fn>/app.py`` imported by path (as the tests
do: it is not a package), and a Lambda context whose remaining time counts down from the
timeout on the monotonic clock. Dev tooling (``minutemeter/local`` is not in the layer).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml  # type: ignore[import-untyped]

from minutemeter.local.ddb import LOCAL_CREDENTIALS, REPO_ROOT

TEMPLATE = REPO_ROOT / "template.yaml"
# make invoke's FN -> the template's logical id (the folder under functions/ is FN)
FUNCTIONS = {
    "collector": "CollectorFunction",
    "drift_check": "DriftCheckFunction",
    "api": "ApiFunction",
    "audit": "AuditFunction",
}
ACCOUNT = "123456789012"
REGION = LOCAL_CREDENTIALS["AWS_REGION"]


# --------------------------------------------------------------------------- the template


class _TemplateLoader(yaml.SafeLoader):  # type: ignore[misc]
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as their long form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says about one function: enough to imitate its Lambda."""

    name: str  # make invoke's FN, the folder under functions/
    logical_id: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def handler_path(self) -> Path:
        return REPO_ROOT / "functions" / self.name / "app.py"

    @property
    def function_name(self) -> str:
        return f"minutemeter-{self.name.replace('_', '-')}"

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    document = yaml.load(path.read_text(), Loader=_TemplateLoader)
    assert isinstance(document, dict)
    return document


def function_spec(name: str, template: Mapping[str, Any]) -> FunctionSpec:
    """Timeout, memory and environment of ``functions/<name>`` as template.yaml deploys it with
    the parameters' defaults. Variables whose value is not a literal or a parameter (table
    names, conditional ones) are left out: :func:`invoke` sets what it needs."""
    logical_id = FUNCTIONS[name]
    globals_fn = template.get("Globals", {}).get("Function", {})
    props = template["Resources"][logical_id]["Properties"]
    defaults = {k: p.get("Default") for k, p in template.get("Parameters", {}).items()}
    variables = {
        **globals_fn.get("Environment", {}).get("Variables", {}),
        **props.get("Environment", {}).get("Variables", {}),
    }
    environment: dict[str, str] = {}
    for key, value in variables.items():
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in defaults:
            value = defaults[value["Ref"]]
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            environment[key] = str(value)
        elif isinstance(value, bool):
            environment[key] = "true" if value else "false"
    return FunctionSpec(
        name=name,
        logical_id=logical_id,
        timeout_seconds=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
        memory_mb=int(props.get("MemorySize", globals_fn.get("MemorySize", 128))),
        environment=environment,
    )


# --------------------------------------------------------------------------- the Lambda context


class LocalLambdaContext:
    """The parts of a Lambda context handlers and Powertools read; the remaining time counts
    down from the function's timeout on the monotonic clock."""

    def __init__(self, spec: FunctionSpec, request_id: str) -> None:
        self.function_name = spec.function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = spec.memory_mb
        self.invoked_function_arn = spec.arn
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec: FunctionSpec) -> ModuleType:
    """``functions/<fn>/app.py`` imported by path, as the tests do (it is not a package)."""
    module_spec = importlib.util.spec_from_file_location(f"{spec.name}_app", spec.handler_path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
