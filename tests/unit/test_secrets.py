"""SecretTokenLookup (Powertools Parameters underneath) against moto's Secrets Manager and SSM
Parameter Store: tokens cached for five minutes per container, rotated ones picked up after
that, failures not cached, binary secrets refused, tokens never in a log or an error."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from moto import mock_aws

from minutemeter.adapters.secrets import SecretTokenLookup, parameter_name
from minutemeter.domain.errors import ConfigError, ExporterError
from minutemeter.domain.model import SourceConfig

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
TOKEN = "tok-5f3a9c1e-very-secret"


def _source(token_secret: str | None, source_id: str = "s1") -> SourceConfig:
    return SourceConfig(
        source_id=source_id,
        url="http://127.0.0.1:9",
        start=datetime(2026, 11, 22, tzinfo=UTC),
        token_secret=token_secret,
    )


class Clients:
    """A client factory that counts the clients it makes."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self, service: str) -> Any:
        self.made.append(service)
        return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def clients() -> Clients:
    return Clients()


def _secret(name: str = "exporter/token", value: str = TOKEN) -> str:
    return str(
        boto3.client("secretsmanager", region_name=REGION)
        .create_secret(Name=name, SecretString=value)["ARN"]
    )


def _parameter(name: str, value: str = TOKEN) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=name, Value=value, Type="SecureString"
    )


def test_no_token_secret_means_no_token_and_no_client(clients: Clients) -> None:
    lookup = SecretTokenLookup(clients)
    assert lookup(_source(None)) is None
    assert lookup(_source("")) is None
    assert clients.made == []


def test_secrets_manager_arn_returns_the_secret_string(aws: None, clients: Clients) -> None:
    arn = _secret()
    assert SecretTokenLookup(clients)(_source(arn)) == TOKEN
    assert clients.made == ["secretsmanager"]


@pytest.mark.parametrize(
    "reference",
    [
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/exporter/token",
        "ssm:/exporter/token",
    ],
)
def test_ssm_secure_string_is_decrypted(aws: None, clients: Clients, reference: str) -> None:
    _parameter("/exporter/token")
    assert SecretTokenLookup(clients)(_source(reference)) == TOKEN
    assert clients.made == ["ssm"]


def test_a_secret_is_read_once_then_cached(aws: None, clients: Clients) -> None:
    arn = _secret()
    lookup = SecretTokenLookup(clients)
    assert lookup(_source(arn)) == TOKEN

    boto3.client("secretsmanager", region_name=REGION).delete_secret(
        SecretId=arn, ForceDeleteWithoutRecovery=True
    )
    # the secret is gone from the service, but this container already knows it
    assert lookup(_source(arn)) == TOKEN
    assert lookup(_source(arn, source_id="another-source-same-secret")) == TOKEN
    # a fresh lookup (a new container) does go to the service
    with pytest.raises(ExporterError):
        SecretTokenLookup(clients)(_source(arn))


def test_a_parameter_is_read_once_then_cached(aws: None, clients: Clients) -> None:
    _parameter("/exporter/token")
    lookup = SecretTokenLookup(clients)
    assert lookup(_source("ssm:/exporter/token")) == TOKEN

    boto3.client("ssm", region_name=REGION).delete_parameter(Name="/exporter/token")
    assert lookup(_source("ssm:/exporter/token")) == TOKEN
    assert clients.made == ["ssm"]  # one client, created on first use


def test_each_reference_is_cached_separately(aws: None, clients: Clients) -> None:
    arn = _secret(value="token-one")
    _parameter("/other", value="token-two")
    lookup = SecretTokenLookup(clients)

    assert lookup(_source(arn)) == "token-one"
    assert lookup(_source("ssm:/other")) == "token-two"
    assert sorted(clients.made) == ["secretsmanager", "ssm"]


def test_a_missing_secret_is_an_exporter_error_naming_the_reference(
    aws: None, clients: Clients
) -> None:
    existing = _secret()
    missing = existing.rsplit(":", 1)[0] + ":exporter/gone-AbCdEf"
    with pytest.raises(ExporterError) as caught:
        SecretTokenLookup(clients)(_source(missing))

    message = str(caught.value)
    assert missing in message
    assert TOKEN not in message
    assert "ResourceNotFoundException" in message


@pytest.mark.parametrize(
    "reference",
    [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/exporter/gone", "ssm:/exporter/gone"],
)
def test_a_missing_parameter_is_an_exporter_error_naming_the_reference(
    aws: None, clients: Clients, reference: str
) -> None:
    _parameter("/exporter/token")
    with pytest.raises(ExporterError) as caught:
        SecretTokenLookup(clients)(_source(reference))

    assert reference in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_a_failed_lookup_is_not_cached(aws: None, clients: Clients) -> None:
    lookup = SecretTokenLookup(clients)
    with pytest.raises(ExporterError):
        lookup(_source("ssm:/later"))
    _parameter("/later", value="arrived")
    assert lookup(_source("ssm:/later")) == "arrived"


@pytest.mark.parametrize(
    "reference",
    [
        TOKEN,  # the token itself pasted in by mistake
        "exporter/token",
        "/exporter/token",
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/exporter",
        f"arn:aws:s3:::bucket/{TOKEN}",
    ],
)
def test_an_invalid_reference_is_a_config_error(clients: Clients, reference: str) -> None:
    with pytest.raises(ConfigError, match="token secret must be"):
        SecretTokenLookup(clients)(_source(reference))
    assert clients.made == []  # refused before any client is made


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("ssm:/x", "/x"),
        ("ssm:plain", "plain"),
        # GetParameter accepts the ARN itself (and only it knows whether the name has a slash)
        (
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/x",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/x",
        ),
        (
            f"arn:aws-cn:ssm:cn-north-1:{ACCOUNT}:parameter/team/token",
            f"arn:aws-cn:ssm:cn-north-1:{ACCOUNT}:parameter/team/token",
        ),
    ],
)
def test_parameter_name(reference: str, name: str) -> None:
    assert parameter_name(reference) == name


def test_a_binary_secret_is_a_typed_error(aws: None, clients: Clients) -> None:
    arn = str(
        boto3.client("secretsmanager", region_name=REGION)
        .create_secret(Name="binary", SecretBinary=b"\x00tok")["ARN"]
    )
    with pytest.raises((ConfigError, ExporterError)):
        SecretTokenLookup(clients)(_source(arn))


# --------------------------------------------------------------------------- max age and rotation


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Moves the wall clock that Powertools Parameters reads for its cache expiry
    (``datetime.now()`` in its ``base`` module, nowhere else) by the given seconds.
    That module's ``datetime`` is the standard one (``from datetime import datetime``)."""
    shift = [0.0]

    class Shifted(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Any:
            return datetime.now(tz) + timedelta(seconds=shift[0])

    monkeypatch.setattr(parameters_base, "datetime", Shifted)

    def advance(seconds: float) -> None:
        shift[0] = seconds

    return advance


def test_a_rotated_secret_is_picked_up_after_five_minutes(
    aws: None, clients: Clients, later: Callable[[float], None]
) -> None:
    arn = _secret()
    lookup = SecretTokenLookup(clients)
    assert lookup(_source(arn)) == TOKEN
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=arn, SecretString="rotated-token"
    )

    later(290)
    assert lookup(_source(arn)) == TOKEN  # still within five minutes
    later(301)
    assert lookup(_source(arn)) == "rotated-token"
    assert clients.made == ["secretsmanager"]  # the same client throughout


def test_a_rotated_parameter_is_picked_up_after_five_minutes(
    aws: None, clients: Clients, later: Callable[[float], None]
) -> None:
    _parameter("/exporter/token")
    lookup = SecretTokenLookup(clients)
    assert lookup(_source("ssm:/exporter/token")) == TOKEN
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/exporter/token", Value="rotated-token", Type="SecureString", Overwrite=True
    )

    later(290)
    assert lookup(_source("ssm:/exporter/token")) == TOKEN
    later(301)
    assert lookup(_source("ssm:/exporter/token")) == "rotated-token"


def test_the_max_age_can_be_shorter(
    aws: None, clients: Clients, later: Callable[[float], None]
) -> None:
    arn = _secret()
    lookup = SecretTokenLookup(clients, max_age_seconds=30)
    assert lookup(_source(arn)) == TOKEN
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=arn, SecretString="rotated-token"
    )
    later(31)
    assert lookup(_source(arn)) == "rotated-token"


def test_the_powertools_max_age_variable_does_not_change_ours(
    aws: None, clients: Clients, later: Callable[[float], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit argument beats the environment: POWERTOOLS_PARAMETERS_MAX_AGE is ignored."""
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "1")
    arn = _secret()
    lookup = SecretTokenLookup(clients)
    assert lookup(_source(arn)) == TOKEN
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=arn, SecretString="rotated-token"
    )
    later(60)
    assert lookup(_source(arn)) == TOKEN


def test_a_binary_secret_is_refused_every_time(aws: None, clients: Clients) -> None:
    arn = str(
        boto3.client("secretsmanager", region_name=REGION)
        .create_secret(Name="binary", SecretBinary=TOKEN.encode())["ARN"]
    )
    lookup = SecretTokenLookup(clients)
    for _ in range(2):  # not returned from the cache either
        with pytest.raises(ConfigError, match="binary") as caught:
            lookup(_source(arn))
        assert TOKEN not in str(caught.value)


def test_tokens_are_never_logged(
    aws: None, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aws_lambda_powertools")
    caplog.set_level(logging.DEBUG, logger="minutemeter")
    arn = _secret()
    _parameter("/exporter/token")
    lookup = SecretTokenLookup(clients)
    assert lookup(_source(arn)) == TOKEN
    assert lookup(_source("ssm:/exporter/token")) == TOKEN
    with pytest.raises(ConfigError):
        lookup(_source(TOKEN))  # the token pasted as the reference

    ours = [r for r in caplog.records
            if r.name.startswith(("aws_lambda_powertools", "minutemeter"))]
    assert all(TOKEN not in r.getMessage() for r in ours)
    assert TOKEN not in caplog.text
