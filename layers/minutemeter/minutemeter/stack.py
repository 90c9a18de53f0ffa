"""A deployed stack by name: its table names and operations API URL from CloudFormation outputs.

``minutemeter --stack NAME`` (or ``MINUTEMETER_STACK``) reads the outputs of template.yaml:
``LedgerTableName``, ``StateTableName`` and ``ApiFunctionUrl`` (``DescribeStacks``; the caller
needs ``cloudformation:DescribeStacks`` on the stack). The tables get generated names when
deployed, so this is how the CLI finds them without copying names around.

Precedence, per table: an explicitly set ``MINUTEMETER_LEDGER_TABLE`` or
``MINUTEMETER_STATE_TABLE`` wins over the stack's output (a warning names both when they
differ), the stack's output wins over the local default.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from minutemeter.domain.errors import MinutemeterError
from minutemeter.settings import ENV_LEDGER_TABLE, ENV_STATE_TABLE, Settings

ENV_STACK = "MINUTEMETER_STACK"
OUTPUT_LEDGER_TABLE = "LedgerTableName"
OUTPUT_STATE_TABLE = "StateTableName"
OUTPUT_API_URL = "ApiFunctionUrl"

log = logging.getLogger(__name__)


class StackOutputsError(MinutemeterError):
    """The stack exists but lacks an output the CLI needs (not a minutemeter stack, or a
    deployment that did not complete)."""

    def __init__(self, stack: str, status: str, missing: list[str]) -> None:
        super().__init__(
            f"stack {stack!r} ({status}) has no output {' or '.join(missing)}: name a stack "
            "deployed from minutemeter's template.yaml, or set MINUTEMETER_LEDGER_TABLE and "
            "MINUTEMETER_STATE_TABLE instead")
        self.stack = stack
        self.status = status
        self.missing = missing


@dataclass(frozen=True)
class StackOutputs:
    """What the CLI takes from a deployed stack."""

    stack: str
    ledger_table: str
    state_table: str
    api_url: str | None


def describe_stack(client: Any, name: str) -> StackOutputs:
    """The outputs of stack ``name`` through a CloudFormation ``client``.

    A missing stack comes back as botocore's ``ClientError`` (``ValidationException`` from
    ``DescribeStacks``); a stack without the table outputs raises :class:`StackOutputsError`.
    """
    stack = client.describe_stacks(StackName=name)["Stacks"][0]
    outputs = {
        str(o["OutputKey"]): str(o["OutputValue"])
        for o in stack.get("Outputs", [])
        if o.get("OutputKey") and o.get("OutputValue")
    }
    missing = [k for k in (OUTPUT_LEDGER_TABLE, OUTPUT_STATE_TABLE) if k not in outputs]
    if missing:
        raise StackOutputsError(name, str(stack.get("StackStatus", "?")), missing)
    return StackOutputs(
        stack=name,
        ledger_table=outputs[OUTPUT_LEDGER_TABLE],
        state_table=outputs[OUTPUT_STATE_TABLE],
        api_url=outputs.get(OUTPUT_API_URL),
    )


def settings_for_stack(
    settings: Settings, outputs: StackOutputs, environ: Mapping[str, str]
) -> Settings:
    """``settings`` with the stack's table names, except where ``environ`` sets one explicitly."""
    ledger = _chosen(environ, ENV_LEDGER_TABLE, outputs.ledger_table, outputs.stack)
    state = _chosen(environ, ENV_STATE_TABLE, outputs.state_table, outputs.stack)
    return replace(settings, ledger_table=ledger or settings.ledger_table,
                   state_table=state or settings.state_table)


def _chosen(environ: Mapping[str, str], variable: str, output: str, stack: str) -> str | None:
    """The stack's ``output``, or None when ``variable`` is set (and wins)."""
    explicit = environ.get(variable)
    if not explicit:
        return output
    if explicit != output:
        log.warning("%s=%s overrides the table of stack %s (%s)", variable, explicit, stack,
                    output)
    return None
