"""Fixtures of the prometheus source kind's tests: a real Prometheus (Debian's package).

Tests that need one take :func:`prometheus_tools`: they skip, saying why, when ``prometheus`` or
``promtool`` is not installed here; with ``MINUTEMETER_REQUIRE_PROMETHEUS=1`` (set by
``.ci/run``, which installs the package) they fail instead, so CI never skips them silently.
"""

from __future__ import annotations

import os

import pytest

from minutemeter.local.prometheus import prometheus_missing

ENV_REQUIRE = "MINUTEMETER_REQUIRE_PROMETHEUS"


@pytest.fixture(scope="session")
def prometheus_tools() -> None:
    missing = prometheus_missing()
    if missing is None:
        return
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{missing}, and {ENV_REQUIRE}=1 says these tests must run")
    pytest.skip(f"real-Prometheus test skipped: {missing}")
