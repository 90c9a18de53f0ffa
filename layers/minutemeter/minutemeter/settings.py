"""Settings, read once from the environment into a frozen, validated object.

Only :func:`load_settings` reads ``os.environ``; everything else receives a :class:`Settings`.
Endpoints and credentials are never settings of ours: boto3 reads ``AWS_REGION``,
``AWS_ENDPOINT_URL_DYNAMODB`` and the credential chain itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation

from minutemeter.domain.errors import ConfigError, InputError
from minutemeter.domain.model import BillingProfile
from minutemeter.domain.money import MAX_BILLABLE_BYTES, check_profile
from minutemeter.domain.registry import MAX_CLOCK_TOLERANCE_SECONDS

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


@dataclass(frozen=True)
class Settings:
    """Process-wide settings; per-source settings live in :class:`SourceConfig`."""

    ledger_table: str = DEFAULT_LEDGER_TABLE
    state_table: str = DEFAULT_STATE_TABLE
    default_profile: BillingProfile = DEFAULT_PROFILE
    clock_tolerance_seconds: int = 1800
    max_counter_bytes: int = 2**60
    commit_concurrency: int = 8
    deadline_margin_seconds: float = 20.0
    http_timeout_seconds: float = 10.0
    http_retries: int = 3
    record_ttl_days: int = 90
    # Clock-skew margin for leases: takeover needs expiry by more than this, and a holder stops
    # this long before its lease ends. Keep it above the drift alarm's critical threshold
    # (500 ms): two runners' clocks may differ by up to twice the margin without overlap.
    lease_margin_seconds: float = 2.0
    # Clock guard (domain/clock_guard.py). Required in the deployed stack (template.yaml sets
    # it); locally, with no drift check running, a missing verdict does not stop billing.
    clock_guard_required: bool = False
    clock_verdict_max_age_seconds: int = 900
    clock_fallback_error_seconds: int = 30
    # Drift check (service/drift.py); thresholds in ms, the alarms in template.yaml match them.
    drift_tss: str | None = "time.aws.com"
    drift_ntp: tuple[str, ...] = ("0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org")
    drift_link_local: str | None = "169.254.169.123"
    drift_samples: int = 3
    drift_budget_seconds: int = 40
    drift_warning_offset_ms: int = 50
    drift_critical_offset_ms: int = 500
    drift_critical_bound_ms: int = 1000
    drift_tss_vs_ntp_ms: int = 100
    extra_leap_seconds: str = ""


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from an environment mapping; raises :class:`ConfigError`."""
    base = Settings()
    profile = BillingProfile(
        included_bytes=_int(
            environ, ENV_DEFAULT_INCLUDED_BYTES, base.default_profile.included_bytes
        ),
        price_per_byte=_decimal(
            environ, ENV_DEFAULT_PRICE_PER_BYTE, base.default_profile.price_per_byte
        ),
        multiplier=_decimal(environ, ENV_DEFAULT_MULTIPLIER, base.default_profile.multiplier),
        pricing_rule_version=environ.get(
            ENV_DEFAULT_PRICING_VERSION, base.default_profile.pricing_rule_version
        ),
    )
    settings = Settings(
        ledger_table=environ.get(ENV_LEDGER_TABLE, base.ledger_table),
        state_table=environ.get(ENV_STATE_TABLE, base.state_table),
        default_profile=profile,
        clock_tolerance_seconds=_int(
            environ, ENV_CLOCK_TOLERANCE_SECONDS, base.clock_tolerance_seconds
        ),
        max_counter_bytes=_int(environ, ENV_MAX_COUNTER_BYTES, base.max_counter_bytes),
        commit_concurrency=_int(environ, ENV_COMMIT_CONCURRENCY, base.commit_concurrency),
        deadline_margin_seconds=_seconds(
            environ, ENV_DEADLINE_MARGIN_SECONDS, base.deadline_margin_seconds
        ),
        http_timeout_seconds=_seconds(environ, ENV_HTTP_TIMEOUT_SECONDS, base.http_timeout_seconds),
        http_retries=_int(environ, ENV_HTTP_RETRIES, base.http_retries),
        record_ttl_days=_int(environ, ENV_RECORD_TTL_DAYS, base.record_ttl_days),
        lease_margin_seconds=_seconds(
            environ, ENV_LEASE_MARGIN_SECONDS, base.lease_margin_seconds
        ),
        clock_guard_required=_bool(
            environ, ENV_CLOCK_GUARD_REQUIRED, base.clock_guard_required
        ),
        clock_verdict_max_age_seconds=_int(
            environ, ENV_CLOCK_VERDICT_MAX_AGE_SECONDS, base.clock_verdict_max_age_seconds
        ),
        clock_fallback_error_seconds=_int(
            environ, ENV_CLOCK_FALLBACK_ERROR_SECONDS, base.clock_fallback_error_seconds
        ),
        drift_tss=_optional(environ, ENV_DRIFT_TSS, base.drift_tss),
        drift_ntp=tuple(
            h.strip() for h in environ.get(ENV_DRIFT_NTP, ",".join(base.drift_ntp)).split(",")
            if h.strip()
        ),
        drift_link_local=_optional(environ, ENV_DRIFT_LINK_LOCAL, base.drift_link_local),
        drift_samples=_int(environ, ENV_DRIFT_SAMPLES, base.drift_samples),
        drift_budget_seconds=_int(environ, ENV_DRIFT_BUDGET_SECONDS, base.drift_budget_seconds),
        drift_warning_offset_ms=_int(
            environ, ENV_DRIFT_WARNING_OFFSET_MS, base.drift_warning_offset_ms
        ),
        drift_critical_offset_ms=_int(
            environ, ENV_DRIFT_CRITICAL_OFFSET_MS, base.drift_critical_offset_ms
        ),
        drift_critical_bound_ms=_int(
            environ, ENV_DRIFT_CRITICAL_BOUND_MS, base.drift_critical_bound_ms
        ),
        drift_tss_vs_ntp_ms=_int(environ, ENV_DRIFT_TSS_VS_NTP_MS, base.drift_tss_vs_ntp_ms),
        extra_leap_seconds=environ.get(ENV_EXTRA_LEAP_SECONDS, base.extra_leap_seconds),
    )
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if not settings.ledger_table:
        raise ConfigError(f"{ENV_LEDGER_TABLE} must not be empty")
    if not settings.state_table:
        raise ConfigError(f"{ENV_STATE_TABLE} must not be empty")
    profile = settings.default_profile
    try:  # the precision that keeps every amount exact (domain/money.py); <= 0 multiplies by 1
        check_profile(replace(profile, multiplier=profile.effective_multiplier), names={
            "included_bytes": ENV_DEFAULT_INCLUDED_BYTES,
            "price_per_byte": ENV_DEFAULT_PRICE_PER_BYTE,
            "multiplier": ENV_DEFAULT_MULTIPLIER,
            "pricing_rule_version": ENV_DEFAULT_PRICING_VERSION,
        })
    except InputError as exc:
        raise ConfigError(str(exc)) from exc
    if not 0 < settings.clock_tolerance_seconds <= MAX_CLOCK_TOLERANCE_SECONDS:
        raise ConfigError(
            f"{ENV_CLOCK_TOLERANCE_SECONDS} must be between 1 and {MAX_CLOCK_TOLERANCE_SECONDS}")
    if not 0 < settings.max_counter_bytes <= MAX_BILLABLE_BYTES:
        raise ConfigError(f"{ENV_MAX_COUNTER_BYTES} must be between 1 and {MAX_BILLABLE_BYTES}"
                          " (pricing stays exact up to it)")
    if not 1 <= settings.commit_concurrency <= 64:
        raise ConfigError(f"{ENV_COMMIT_CONCURRENCY} must be between 1 and 64")
    if not 0 < settings.http_timeout_seconds <= 900:
        raise ConfigError(f"{ENV_HTTP_TIMEOUT_SECONDS} must be > 0 and at most 900")
    if not 0 <= settings.deadline_margin_seconds <= 900:
        raise ConfigError(f"{ENV_DEADLINE_MARGIN_SECONDS} must be between 0 and 900")
    if settings.http_retries < 0:
        raise ConfigError(f"{ENV_HTTP_RETRIES} must be >= 0")
    if not 0 <= settings.lease_margin_seconds <= 60:
        raise ConfigError(f"{ENV_LEASE_MARGIN_SECONDS} must be between 0 and 60")
    if not 0 < settings.clock_verdict_max_age_seconds <= 86_400:
        raise ConfigError(f"{ENV_CLOCK_VERDICT_MAX_AGE_SECONDS} must be between 1 and 86400")
    if not 0 <= settings.clock_fallback_error_seconds <= 3600:
        raise ConfigError(f"{ENV_CLOCK_FALLBACK_ERROR_SECONDS} must be between 0 and 3600")
    if not 1 <= settings.drift_samples <= 10:
        raise ConfigError(f"{ENV_DRIFT_SAMPLES} must be between 1 and 10")
    if not 1 <= settings.drift_budget_seconds <= 600:
        raise ConfigError(f"{ENV_DRIFT_BUDGET_SECONDS} must be between 1 and 600")
    for name, value in (
        (ENV_DRIFT_WARNING_OFFSET_MS, settings.drift_warning_offset_ms),
        (ENV_DRIFT_CRITICAL_OFFSET_MS, settings.drift_critical_offset_ms),
        (ENV_DRIFT_CRITICAL_BOUND_MS, settings.drift_critical_bound_ms),
        (ENV_DRIFT_TSS_VS_NTP_MS, settings.drift_tss_vs_ntp_ms),
    ):
        if value <= 0:
            raise ConfigError(f"{name} must be > 0")
    if not 0 < settings.record_ttl_days <= 3650:
        raise ConfigError(f"{ENV_RECORD_TTL_DAYS} must be between 1 and 3650")


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _optional(environ: Mapping[str, str], name: str, default: str | None) -> str | None:
    """Unset: the default; set but empty: none."""
    raw = environ.get(name)
    if raw is None:
        return default
    return raw.strip() or None


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes"}:
        return True
    if raw.lower() in {"0", "false", "no"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    return float(_decimal(environ, name, Decimal(str(default))))


def _decimal(environ: Mapping[str, str], name: str, default: Decimal) -> Decimal:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ConfigError(f"{name} must be a decimal number, got {raw!r}") from exc
    if not value.is_finite():
        raise ConfigError(f"{name} must be finite, got {raw!r}")
    return value
