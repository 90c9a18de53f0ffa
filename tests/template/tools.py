"""Running the template tools (sam, cfn-lint, checkov) from the template tests, offline.

The tools are the ones installed next to the Python running pytest (`make setup` puts sam and
cfn-lint in .venv); checkov has a venv of its own (`make checkov-install`, .local/checkov) because
its exact boto3 pin conflicts with aws-sam-cli's. Where the machine allows it (root, or user
namespaces), every tool runs inside `unshare -n`: a network namespace with only loopback, so a
tool that tried to reach the network would fail the test instead of silently passing.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SAMCONFIG = REPO / "samconfig.toml"
VENV_BIN = Path(sys.executable).parent
CHECKOV_VENV_BIN = REPO / ".local" / "checkov" / "bin"
REGION = "us-east-1"
TOOL_TIMEOUT_S = 600


def tool(name: str) -> Path:
    """A dev tool next to the running interpreter; fails the test with what to run if missing."""
    path = VENV_BIN / name
    if not path.is_file():
        pytest.fail(
            f"{name} is not installed next to {sys.executable}: run `make setup` "
            "(it installs the dev tools, aws-sam-cli and cfn-lint, into .venv)"
        )
    return path


def checkov() -> Path:
    """checkov: $MINUTEMETER_CHECKOV, else .local/checkov (make checkov-install), else .venv."""
    candidates = [
        Path(os.environ["MINUTEMETER_CHECKOV"]) if os.environ.get("MINUTEMETER_CHECKOV") else None,
        CHECKOV_VENV_BIN / "checkov",
        VENV_BIN / "checkov",
    ]
    for path in candidates:
        if path is not None and path.is_file():
            return path
    pytest.fail(
        "checkov is not installed: run `make checkov-install` (a venv of its own in "
        ".local/checkov; it cannot share .venv with aws-sam-cli) or set MINUTEMETER_CHECKOV"
    )


@functools.cache
def offline_prefix() -> tuple[str, ...]:
    """`unshare -n` when this machine lets us make a network namespace, else nothing."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    probe = subprocess.run(
        [unshare, "-n", "true"], capture_output=True, timeout=30, check=False
    )
    return (unshare, "-n") if probe.returncode == 0 else ()


def run(
    cmd: list[str | Path], env: dict[str, str], *, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run a tool offline (see :func:`offline_prefix`), capturing its output."""
    return subprocess.run(
        [*offline_prefix(), *(str(c) for c in cmd)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"`{' '.join(proc.args)}` exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


def plain(node: Any) -> Any:
    """Decoded template nodes as plain dicts, lists and scalars."""
    return json.loads(json.dumps(node, default=str))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
