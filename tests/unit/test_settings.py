"""load_settings: defaults, every variable parsed, every invalid value a ConfigError naming it."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from minutemeter import settings as s
from minutemeter.domain.errors import ConfigError
from minutemeter.domain.model import BillingProfile
from minutemeter.settings import Settings, load_settings


def test_defaults_from_an_empty_environment() -> None:
    loaded = load_settings({})

    assert loaded == Settings()
    assert loaded.ledger_table == "minutemeter-ledger"
    assert loaded.state_table == "minutemeter-state"
    assert loaded.default_profile == BillingProfile(
        included_bytes=0,
        price_per_byte=Decimal("0.000000001"),
        multiplier=Decimal("1"),
        pricing_rule_version="default-v1",
    )
    assert (loaded.clock_tolerance_seconds, loaded.max_counter_bytes) == (1800, 2**60)
    assert (loaded.commit_concurrency, loaded.http_retries, loaded.record_ttl_days) == (8, 3, 90)
    assert (loaded.deadline_margin_seconds, loaded.http_timeout_seconds) == (20.0, 10.0)


def test_every_variable_is_parsed() -> None:
    environ = {
        s.ENV_LEDGER_TABLE: "ledger-x",
        s.ENV_STATE_TABLE: "state-x",
        s.ENV_DEFAULT_INCLUDED_BYTES: "1000000",
        s.ENV_DEFAULT_PRICE_PER_BYTE: "0.0000000025",
        s.ENV_DEFAULT_MULTIPLIER: "1.5",
        s.ENV_DEFAULT_PRICING_VERSION: "tier-2026",
        s.ENV_CLOCK_TOLERANCE_SECONDS: "300",
        s.ENV_MAX_COUNTER_BYTES: "1099511627776",
        s.ENV_COMMIT_CONCURRENCY: "16",
        s.ENV_DEADLINE_MARGIN_SECONDS: "7.5",
        s.ENV_HTTP_TIMEOUT_SECONDS: "2.25",
        s.ENV_HTTP_RETRIES: "0",
        s.ENV_RECORD_TTL_DAYS: "30",
    }
    loaded = load_settings(environ)

    assert loaded == Settings(
        ledger_table="ledger-x",
        state_table="state-x",
        default_profile=BillingProfile(
            1_000_000, Decimal("0.0000000025"), Decimal("1.5"), "tier-2026"
        ),
        clock_tolerance_seconds=300,
        max_counter_bytes=2**40,
        commit_concurrency=16,
        deadline_margin_seconds=7.5,
        http_timeout_seconds=2.25,
        http_retries=0,
        record_ttl_days=30,
    )
    # money stays Decimal, never a float
    assert isinstance(loaded.default_profile.price_per_byte, Decimal)
    assert loaded.default_profile.price_per_byte * 4 == Decimal("0.00000001")
    assert isinstance(loaded.deadline_margin_seconds, float)


def test_empty_numeric_values_mean_the_default() -> None:
    numeric = [
        s.ENV_DEFAULT_INCLUDED_BYTES, s.ENV_DEFAULT_PRICE_PER_BYTE, s.ENV_DEFAULT_MULTIPLIER,
        s.ENV_CLOCK_TOLERANCE_SECONDS, s.ENV_MAX_COUNTER_BYTES, s.ENV_COMMIT_CONCURRENCY,
        s.ENV_DEADLINE_MARGIN_SECONDS, s.ENV_HTTP_TIMEOUT_SECONDS, s.ENV_HTTP_RETRIES,
        s.ENV_RECORD_TTL_DAYS,
    ]
    assert load_settings(dict.fromkeys(numeric, "")) == Settings()


def test_only_the_given_mapping_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(s.ENV_LEDGER_TABLE, "from-os-environ")
    monkeypatch.setenv(s.ENV_HTTP_RETRIES, "-5")
    assert load_settings({}) == Settings()


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "expected"),
    [
        (s.ENV_COMMIT_CONCURRENCY, "1", "commit_concurrency", 1),
        (s.ENV_COMMIT_CONCURRENCY, "64", "commit_concurrency", 64),
        (s.ENV_HTTP_RETRIES, "0", "http_retries", 0),
        (s.ENV_CLOCK_TOLERANCE_SECONDS, "1", "clock_tolerance_seconds", 1),
        (s.ENV_RECORD_TTL_DAYS, "1", "record_ttl_days", 1),
        (s.ENV_MAX_COUNTER_BYTES, "1", "max_counter_bytes", 1),
        (s.ENV_DEADLINE_MARGIN_SECONDS, "0", "deadline_margin_seconds", 0.0),
        (s.ENV_DEADLINE_MARGIN_SECONDS, "1e1", "deadline_margin_seconds", 10.0),
        (s.ENV_HTTP_TIMEOUT_SECONDS, "30", "http_timeout_seconds", 30.0),
    ],
)
def test_boundary_values_are_accepted(
    name: str, raw: str, attribute: str, expected: object
) -> None:
    assert getattr(load_settings({name: raw}), attribute) == expected


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "expected"),
    [
        (s.ENV_DEFAULT_INCLUDED_BYTES, "0", "included_bytes", 0),
        (s.ENV_DEFAULT_PRICE_PER_BYTE, "0", "price_per_byte", Decimal("0")),
        (s.ENV_DEFAULT_MULTIPLIER, "0", "multiplier", Decimal("0")),  # rating falls back to 1
        (s.ENV_DEFAULT_MULTIPLIER, "-2", "multiplier", Decimal("-2")),
        (s.ENV_DEFAULT_PRICING_VERSION, "v9", "pricing_rule_version", "v9"),
    ],
)
def test_profile_boundary_values_are_accepted(
    name: str, raw: str, attribute: str, expected: object
) -> None:
    profile = load_settings({name: raw}).default_profile
    assert getattr(profile, attribute) == expected
    assert profile.effective_multiplier > 0


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        # not a number at all
        (s.ENV_DEFAULT_INCLUDED_BYTES, "lots"),
        (s.ENV_DEFAULT_INCLUDED_BYTES, "1.5"),
        (s.ENV_DEFAULT_PRICE_PER_BYTE, "cheap"),
        (s.ENV_DEFAULT_MULTIPLIER, "x2"),
        (s.ENV_CLOCK_TOLERANCE_SECONDS, "30s"),
        (s.ENV_MAX_COUNTER_BYTES, "1e18"),
        (s.ENV_COMMIT_CONCURRENCY, "eight"),
        (s.ENV_DEADLINE_MARGIN_SECONDS, "20s"),
        (s.ENV_HTTP_TIMEOUT_SECONDS, "ten"),
        (s.ENV_HTTP_RETRIES, "3.0"),
        (s.ENV_RECORD_TTL_DAYS, "90d"),
        # not finite
        (s.ENV_DEFAULT_PRICE_PER_BYTE, "NaN"),
        (s.ENV_DEFAULT_MULTIPLIER, "Infinity"),
        (s.ENV_DEADLINE_MARGIN_SECONDS, "inf"),
        (s.ENV_HTTP_TIMEOUT_SECONDS, "sNaN"),
        # out of range
        (s.ENV_DEFAULT_INCLUDED_BYTES, "-1"),
        (s.ENV_DEFAULT_PRICE_PER_BYTE, "-0.000000001"),
        (s.ENV_CLOCK_TOLERANCE_SECONDS, "0"),
        (s.ENV_CLOCK_TOLERANCE_SECONDS, "-30"),
        (s.ENV_MAX_COUNTER_BYTES, "0"),
        (s.ENV_COMMIT_CONCURRENCY, "0"),
        (s.ENV_COMMIT_CONCURRENCY, "65"),
        (s.ENV_HTTP_RETRIES, "-1"),
        (s.ENV_RECORD_TTL_DAYS, "0"),
    ],
)
def test_an_invalid_value_is_a_config_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: raw})


@pytest.mark.parametrize("name", [s.ENV_LEDGER_TABLE, s.ENV_STATE_TABLE])
def test_an_empty_table_name_is_a_config_error_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: ""})


@pytest.mark.parametrize("raw", ["0", "-1"])
def test_a_non_positive_http_timeout_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match=s.ENV_HTTP_TIMEOUT_SECONDS):
        load_settings({s.ENV_HTTP_TIMEOUT_SECONDS: raw})


def test_a_negative_deadline_margin_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=s.ENV_DEADLINE_MARGIN_SECONDS):
        load_settings({s.ENV_DEADLINE_MARGIN_SECONDS: "-5"})


def test_settings_are_frozen() -> None:
    loaded = load_settings({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.http_retries = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        # money with more precision than pricing keeps exact (domain/money.py): the run would
        # fail on decimal.Inexact after writing other accounts' entries
        (s.ENV_DEFAULT_PRICE_PER_BYTE, "0." + "1" * 38),
        (s.ENV_DEFAULT_PRICE_PER_BYTE, "1e7"),
        (s.ENV_DEFAULT_MULTIPLIER, "1.0000001"),
        (s.ENV_DEFAULT_INCLUDED_BYTES, str(2**63 + 1)),
        # durations whose datetime arithmetic would overflow
        (s.ENV_CLOCK_TOLERANCE_SECONDS, "999999999999999"),
        (s.ENV_RECORD_TTL_DAYS, "99999999999"),
        (s.ENV_DEADLINE_MARGIN_SECONDS, "1e12"),
        (s.ENV_MAX_COUNTER_BYTES, str(10**20)),
    ],
)
def test_values_that_would_fail_a_later_run_are_refused_at_load(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: raw})
