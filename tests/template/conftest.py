"""Fixtures of the template tests: the tools' environment and the template, raw and deployed."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from tests.template import sam_expand
from tests.template.tools import REGION, TEMPLATE, plain


@pytest.fixture(scope="session")
def tool_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for sam/cfn-lint/checkov: a region, no telemetry, no version checks, no
    make flags, no credentials or API keys from the host."""
    # SAM CLI checks PyPI for a newer version at most weekly, remembering when in its app dir:
    # give it a private app dir that says it just checked.
    app_dir = tmp_path_factory.mktemp("sam-app-dir")
    (app_dir / "metadata.json").write_text(
        json.dumps({"telemetryEnabled": False, "lastVersionCheck": time.time()})
    )
    dropped = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "BC_API_KEY", "PRISMA_API_URL"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        SAM_CLI_TELEMETRY="0",
        __SAM_CLI_APP_DIR=str(app_dir),
        # checkov: no look-up of a newer version on PyPI, no policy metadata from the platform.
        CKV_SKIP_PACKAGE_UPDATE_CHECK="true",
        BC_SKIP_MAPPING="TRUE",
    )
    return env


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml as written (Fn::ForEach not expanded), decoded by cfn-lint."""
    try:
        from cfnlint.decode import decode_str
    except ImportError as exc:
        pytest.fail(f"cfn-lint is not importable ({exc}): run `make setup`")
    decoded, matches = decode_str(TEMPLATE.read_text())
    assert not matches, f"template.yaml does not parse: {matches}"
    assert isinstance(decoded, dict)
    return dict(plain(decoded))


FOREACH_PREFIX = "Fn::ForEach::"


@pytest.fixture(scope="session")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    """The resources written out, without the Fn::ForEach loops (see `loops`)."""
    return {
        name: res
        for name, res in template["Resources"].items()
        if not name.startswith(FOREACH_PREFIX)
    }


@pytest.fixture(scope="session")
def loops(template: dict[str, Any]) -> dict[str, list[Any]]:
    """The Fn::ForEach loops of Resources by loop name: [identifier, collection, {key: body}]."""
    return {
        name[len(FOREACH_PREFIX):]: loop
        for name, loop in template["Resources"].items()
        if name.startswith(FOREACH_PREFIX)
    }


@pytest.fixture(scope="session")
def sam_template() -> dict[str, Any]:
    """template.yaml as SAM CLI reads it (long-form intrinsics), for expanding."""
    try:
        return sam_expand.load(TEMPLATE)
    except ImportError as exc:
        pytest.fail(f"aws-sam-cli is not importable ({exc}): run `make setup`")
