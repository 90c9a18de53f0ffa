"""The sink factory (bootstrap.sink_builders): every kind has an adapter, built once per sink
configuration, with its API key from the environment or Secrets Manager and never anywhere else."""

from __future__ import annotations

from dataclasses import replace

import pytest

from minutemeter.adapters.secrets import SecretTokenLookup
from minutemeter.adapters.sinks.lago_sink import LagoSink
from minutemeter.adapters.sinks.stripe_sink import StripeSink
from minutemeter.bootstrap import SinkAdapters, sink_api_keys, sink_builders
from minutemeter.domain.delivery import SinkConfig, SinkKind
from minutemeter.domain.errors import ConfigError, MinutemeterError
from tests.support.sinks import LAGO, STRIPE

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:stripe-AbCdEf"


class _Secrets(SecretTokenLookup):
    """Secrets Manager with one secret (no client)."""

    def __init__(self) -> None:
        super().__init__(lambda service: None)
        self.asked: list[str] = []

    def read(self, reference: str, *, what: str,
             error: type[MinutemeterError] = MinutemeterError) -> str:
        self.asked.append(reference)
        return "sk_from_secret"


def _adapters(environ: dict[str, str]) -> tuple[SinkAdapters, _Secrets]:
    secrets = _Secrets()
    return SinkAdapters(sink_builders(sink_api_keys(secrets, environ))), secrets


def test_every_kind_has_a_builder() -> None:
    assert set(sink_builders(lambda sink: "k")) == set(SinkKind)


def test_each_kind_builds_its_adapter_once_per_configuration() -> None:
    adapters, _ = _adapters({"STRIPE_KEY": "sk_test_1", "LAGO_KEY": "lago_1"})
    stripe, lago = adapters(STRIPE), adapters(LAGO)
    assert isinstance(stripe, StripeSink) and isinstance(lago, LagoSink)
    assert adapters(STRIPE) is stripe  # one client per sink and process
    moved = replace(STRIPE, url="http://127.0.0.1:2")
    assert adapters(moved) is not stripe and adapters(moved).config == moved


def test_the_key_comes_from_the_secret_when_the_sink_names_one() -> None:
    adapters, secrets = _adapters({})
    sink = adapters(replace(STRIPE, api_key_env=None, api_key_secret=SECRET))
    assert isinstance(sink, StripeSink) and secrets.asked == [SECRET]


@pytest.mark.parametrize(("config", "says"), [
    (STRIPE, "STRIPE_KEY"),  # named, but not set
    (replace(STRIPE, api_key_env=None), "names no API key"),
])
def test_a_missing_key_is_a_config_error_naming_where_it_was_looked_for(
    config: SinkConfig, says: str,
) -> None:
    adapters, _ = _adapters({})
    with pytest.raises(ConfigError, match=says):
        adapters(config)
