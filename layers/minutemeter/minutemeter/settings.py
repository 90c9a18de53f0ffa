"""Settings, read once from the environment into a frozen, validated object.

Only :func:`load_settings` reads ``os.environ``; everything else receives a :class:`Settings`.
Each field of :class:`Settings` is declared once, with its variable, parser, default and rule
(:mod:`minutemeter.env_fields`); each variable's name is an ``ENV_*`` constant, which other
modules, the CLI's help and the template tests read.

Endpoints and credentials are never settings of ours: boto3 reads ``AWS_REGION``,
``AWS_ENDPOINT_URL_DYNAMODB`` and the credential chain itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from minutemeter.domain.errors import ConfigError, InputError
from minutemeter.domain.model import BillingProfile
from minutemeter.domain.money import MAX_BILLABLE_BYTES, check_profile
from minutemeter.domain.registry import MAX_CLOCK_TOLERANCE_SECONDS
from minutemeter.env_fields import (
    BOOLEAN,
    DECIMAL,
    INTEGER,
    NOT_EMPTY,
    NOT_NEGATIVE,
    POSITIVE,
    SECONDS,
    TEXT,
    TEXT_LIST,
    TEXT_OR_NONE,
    Rule,
    between,
    env_field,
    env_group,
    read_env_fields,
)

ENV_LEDGER_TABLE = "MINUTEMETER_LEDGER_TABLE"
ENV_STATE_TABLE = "MINUTEMETER_STATE_TABLE"
ENV_DEFAULT_INCLUDED_BYTES = "MINUTEMETER_DEFAULT_INCLUDED_BYTES"
ENV_DEFAULT_PRICE_PER_BYTE = "MINUTEMETER_DEFAULT_PRICE_PER_BYTE"
ENV_DEFAULT_MULTIPLIER = "MINUTEMETER_DEFAULT_MULTIPLIER"
ENV_DEFAULT_PRICING_VERSION = "MINUTEMETER_DEFAULT_PRICING_VERSION"
ENV_CLOCK_TOLERANCE_SECONDS = "MINUTEMETER_CLOCK_TOLERANCE_SECONDS"
ENV_MAX_COUNTER_BYTES = "MINUTEMETER_MAX_COUNTER_BYTES"
ENV_COMMIT_CONCURRENCY = "MINUTEMETER_COMMIT_CONCURRENCY"
ENV_DEADLINE_MARGIN_SECONDS = "MINUTEMETER_DEADLINE_MARGIN_SECONDS"
ENV_HTTP_TIMEOUT_SECONDS = "MINUTEMETER_HTTP_TIMEOUT_SECONDS"
ENV_HTTP_RETRIES = "MINUTEMETER_HTTP_RETRIES"
ENV_RECORD_TTL_DAYS = "MINUTEMETER_RECORD_TTL_DAYS"
ENV_LEASE_MARGIN_SECONDS = "MINUTEMETER_LEASE_MARGIN_SECONDS"
ENV_CLOCK_GUARD_REQUIRED = "MINUTEMETER_CLOCK_GUARD_REQUIRED"
ENV_CLOCK_VERDICT_MAX_AGE_SECONDS = "MINUTEMETER_CLOCK_VERDICT_MAX_AGE_SECONDS"
ENV_CLOCK_FALLBACK_ERROR_SECONDS = "MINUTEMETER_CLOCK_FALLBACK_ERROR_SECONDS"
ENV_DRIFT_TSS = "MINUTEMETER_DRIFT_TSS"  # host[:port]; empty: no TSS
ENV_DRIFT_NTP = "MINUTEMETER_DRIFT_NTP"  # comma-separated host[:port]
ENV_DRIFT_LINK_LOCAL = "MINUTEMETER_DRIFT_LINK_LOCAL"  # empty: not probed
ENV_DRIFT_SAMPLES = "MINUTEMETER_DRIFT_SAMPLES"
ENV_DRIFT_BUDGET_SECONDS = "MINUTEMETER_DRIFT_BUDGET_SECONDS"
ENV_DRIFT_WARNING_OFFSET_MS = "MINUTEMETER_DRIFT_WARNING_OFFSET_MS"
ENV_DRIFT_CRITICAL_OFFSET_MS = "MINUTEMETER_DRIFT_CRITICAL_OFFSET_MS"
ENV_DRIFT_CRITICAL_BOUND_MS = "MINUTEMETER_DRIFT_CRITICAL_BOUND_MS"
ENV_DRIFT_TSS_VS_NTP_MS = "MINUTEMETER_DRIFT_TSS_VS_NTP_MS"
ENV_EXTRA_LEAP_SECONDS = "MINUTEMETER_EXTRA_LEAP_SECONDS"  # "2027-06-30:+1,..."

DEFAULT_LEDGER_TABLE = "minutemeter-ledger"
DEFAULT_STATE_TABLE = "minutemeter-state"


DEFAULT_PROFILE = BillingProfile(
    included_bytes=0,
    price_per_byte=Decimal("0.000000001"),
    multiplier=Decimal("1"),
    pricing_rule_version="default-v1",
)


def _check_profile(profile: BillingProfile, variables: Mapping[str, str]) -> None:
    """The precision that keeps every amount exact (domain/money.py); <= 0 multiplies by 1."""
    try:
        check_profile(replace(profile, multiplier=profile.effective_multiplier), names=variables)
    except InputError as exc:
        raise ConfigError(str(exc)) from exc


_HTTP_TIMEOUT: Rule[float] = Rule(lambda seconds: 0 < seconds <= 900, "must be > 0 and at most 900")


@dataclass(frozen=True)
class Settings:
    """Process-wide settings; per-source settings live in :class:`SourceConfig`."""

    ledger_table: str = env_field(ENV_LEDGER_TABLE, TEXT, DEFAULT_LEDGER_TABLE, NOT_EMPTY)
    state_table: str = env_field(ENV_STATE_TABLE, TEXT, DEFAULT_STATE_TABLE, NOT_EMPTY)
    # a field declaration, its default (DEFAULT_PROFILE) frozen: nothing mutable is shared
    default_profile: BillingProfile = env_group(  # noqa: RUF009
        DEFAULT_PROFILE,
        {
            "included_bytes": (ENV_DEFAULT_INCLUDED_BYTES, INTEGER),
            "price_per_byte": (ENV_DEFAULT_PRICE_PER_BYTE, DECIMAL),
            "multiplier": (ENV_DEFAULT_MULTIPLIER, DECIMAL),
            "pricing_rule_version": (ENV_DEFAULT_PRICING_VERSION, TEXT),
        },
        check=_check_profile,
    )
    clock_tolerance_seconds: int = env_field(
        ENV_CLOCK_TOLERANCE_SECONDS, INTEGER, 1800, between(1, MAX_CLOCK_TOLERANCE_SECONDS))
    max_counter_bytes: int = env_field(ENV_MAX_COUNTER_BYTES, INTEGER, 2**60, between(
        1, MAX_BILLABLE_BYTES, " (pricing stays exact up to it)"))
    commit_concurrency: int = env_field(ENV_COMMIT_CONCURRENCY, INTEGER, 8, between(1, 64))
    deadline_margin_seconds: float = env_field(
        ENV_DEADLINE_MARGIN_SECONDS, SECONDS, 20.0, between(0, 900))
    http_timeout_seconds: float = env_field(ENV_HTTP_TIMEOUT_SECONDS, SECONDS, 10.0, _HTTP_TIMEOUT)
    http_retries: int = env_field(ENV_HTTP_RETRIES, INTEGER, 3, NOT_NEGATIVE)
    record_ttl_days: int = env_field(ENV_RECORD_TTL_DAYS, INTEGER, 90, between(1, 3650))
    # Clock-skew margin for leases: takeover needs expiry by more than this, and a holder stops
    # this long before its lease ends. Keep it above the drift alarm's critical threshold
    # (500 ms): two runners' clocks may differ by up to twice the margin without overlap.
    lease_margin_seconds: float = env_field(
        ENV_LEASE_MARGIN_SECONDS, SECONDS, 2.0, between(0, 60))
    # Clock guard (domain/clock_guard.py). Required in the deployed stack (template.yaml sets
    # it); locally, with no drift check running, a missing verdict does not stop billing.
    clock_guard_required: bool = env_field(ENV_CLOCK_GUARD_REQUIRED, BOOLEAN, False)
    clock_verdict_max_age_seconds: int = env_field(
        ENV_CLOCK_VERDICT_MAX_AGE_SECONDS, INTEGER, 900, between(1, 86_400))
    clock_fallback_error_seconds: int = env_field(
        ENV_CLOCK_FALLBACK_ERROR_SECONDS, INTEGER, 30, between(0, 3600))
    # Drift check (service/drift.py): the NTP servers asked, each host[:port]; thresholds in ms,
    # the alarms in template.yaml match them.
    drift_tss: str | None = env_field(ENV_DRIFT_TSS, TEXT_OR_NONE, "time.aws.com")
    drift_ntp: tuple[str, ...] = env_field(
        ENV_DRIFT_NTP, TEXT_LIST, ("0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org"))
    drift_link_local: str | None = env_field(ENV_DRIFT_LINK_LOCAL, TEXT_OR_NONE, "169.254.169.123")
    drift_samples: int = env_field(ENV_DRIFT_SAMPLES, INTEGER, 3, between(1, 10))
    drift_budget_seconds: int = env_field(ENV_DRIFT_BUDGET_SECONDS, INTEGER, 40, between(1, 600))
    drift_warning_offset_ms: int = env_field(ENV_DRIFT_WARNING_OFFSET_MS, INTEGER, 50, POSITIVE)
    drift_critical_offset_ms: int = env_field(
        ENV_DRIFT_CRITICAL_OFFSET_MS, INTEGER, 500, POSITIVE)
    drift_critical_bound_ms: int = env_field(ENV_DRIFT_CRITICAL_BOUND_MS, INTEGER, 1000, POSITIVE)
    drift_tss_vs_ntp_ms: int = env_field(ENV_DRIFT_TSS_VS_NTP_MS, INTEGER, 100, POSITIVE)
    extra_leap_seconds: str = env_field(ENV_EXTRA_LEAP_SECONDS, TEXT, "")


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from an environment mapping: every variable parsed first, then
    each value checked in field order; raises :class:`ConfigError` naming the variable."""
    return Settings(**read_env_fields(Settings, environ))
