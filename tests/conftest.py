"""Shared fixtures: fake AWS credentials, DynamoDB Local (one per session), moto, backends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from minutemeter.local.ddb import DynamoDBLocal
from minutemeter.settings import Settings
from tests.support.backends import Backend, dynamo_backend
from tests.support.fakes import FakeLedgerStore, fake_state_stores

# Nothing in the tests may reach AWS: fake credentials, a fixed region, no endpoint from the host.
for _name in list(os.environ):
    if _name.startswith("AWS_ENDPOINT_URL") or _name in {"AWS_PROFILE", "AWS_SESSION_TOKEN"}:
        del os.environ[_name]
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)


@pytest.fixture(scope="session")
def ddb_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamoDBLocal]:
    log = Path(tmp_path_factory.mktemp("ddblocal")) / "dynamodb-local.log"
    with DynamoDBLocal(log_path=log) as server:
        yield server


@pytest.fixture
def moto_client() -> Iterator[object]:
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture(params=["moto", "ddblocal"])
def dynamo(request: pytest.FixtureRequest) -> Backend:
    """The real DynamoDB adapters on moto and on Amazon's DynamoDB Local."""
    if request.param == "moto":
        client = request.getfixturevalue("moto_client")
    else:
        client = request.getfixturevalue("ddb_local").client()
    return dynamo_backend(request.param, client)


def _backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "fake":
        return Backend("fake", FakeLedgerStore(), fake_state_stores(), Settings())
    if request.param == "moto":
        client = request.getfixturevalue("moto_client")
    else:
        client = request.getfixturevalue("ddb_local").client()
    return dynamo_backend(request.param, client)


@pytest.fixture(params=["fake", "moto", "ddblocal"])
def any_backend(request: pytest.FixtureRequest) -> Backend:
    """Fakes as well as both DynamoDB engines: for the contract suite."""
    return _backend(request)


@pytest.fixture(params=["fake", "ddblocal"])
def concurrent_backend(request: pytest.FixtureRequest) -> Backend:
    """For tests with several threads writing at once. Not moto: it applies an UpdateItem to
    the stored item in place, without a lock, so a concurrent GetItem can read a half-updated
    item (seen here as a quota item without ``used_bytes``). Real DynamoDB and DynamoDB Local
    never show that."""
    return _backend(request)
