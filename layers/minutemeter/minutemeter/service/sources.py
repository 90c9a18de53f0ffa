"""Registering sources and reading their status."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, runtime_checkable
from urllib.parse import urlparse

from minutemeter.domain.errors import ConfigError, InputError, SourceNotFoundError
from minutemeter.domain.model import (
    ClockGuardAction,
    ResetPolicy,
    SourceAuth,
    SourceConfig,
    SourceKind,
    SyncState,
)
from minutemeter.domain.promql import check_label_name, check_selector
from minutemeter.domain.references import classify_reference
from minutemeter.domain.registry import (
    EARLIEST_START,
    LATEST_START,
    MAX_CLOCK_TOLERANCE_SECONDS,
    MAX_ECHO,
    SourceUnreadableError,
    UnreadableSource,
)
from minutemeter.domain.text import shorten
from minutemeter.domain.timeutil import MINUTE, floor_minute, format_second, is_minute_aligned
from minutemeter.ports import SourceStore, SyncStore

logger = logging.getLogger(__name__)

_SOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
MAX_URL_LENGTH = 2048
# What a new source of a kind gets unless the operator says otherwise. Prometheus: a lag of
# two scrape intervals at Prometheus' default ``scrape_interval`` of 1 m (a sample is
# stamped when its scrape starts and visible once the scrape is appended; remote-write stores
# add their delay, which the reader's readiness check covers), and counters that count from
# zero after a restart, as Prometheus' own rate() treats them.
KIND_DEFAULTS: dict[SourceKind, dict[str, object]] = {
    SourceKind.PROMETHEUS: {"lag_seconds": 120, "reset_policy": ResetPolicy.FROM_ZERO},
}
PROMETHEUS_ONLY = ("selector", "account_label", "node_label")


@dataclass(frozen=True)
class SourceChanges:
    """What an operator asked to set; ``None`` keeps the current (or default) value."""

    url: str | None = None
    node_id: str | None = None
    env: str | None = None
    start: datetime | None = None
    lag_seconds: int | None = None
    max_window_seconds: int | None = None
    reset_policy: ResetPolicy | None = None
    lease_seconds: int | None = None
    token_secret: str | None = None
    clock_tolerance_seconds: int | None = None
    enabled: bool | None = None
    clock_guard: ClockGuardAction | None = None
    clock_margin_ms: int | None = None
    kind: SourceKind | None = None
    selector: str | None = None
    account_label: str | None = None
    node_label: str | None = None
    auth: SourceAuth | None = None


def put_source(
    sources: SourceStore, sync: SyncStore, source_id: str, changes: SourceChanges, now: datetime
) -> SourceConfig:
    """Create or update a source; unspecified fields keep their value.

    A new source without ``start`` starts at the next minute after ``now``; a start that is not
    minute-aligned moves up to the next minute (nothing before it is ever billed). A source
    whose stored record is unreadable is replaced as if it were new (``--url`` required,
    unspecified fields take their defaults). Raises :class:`InputError` on invalid values.
    """
    check_source_id(source_id)
    if changes.start is not None:
        check_start(changes.start)  # before rounding: a start at the end of time cannot round
    try:
        current: SourceConfig | None = sources.get_source(source_id)
    except SourceNotFoundError:
        current = None
    except SourceUnreadableError as exc:
        if changes.url is None:
            raise InputError(
                f"source {shorten(source_id, MAX_ECHO)!r} has an unreadable record ({exc.reason}); "
                "give --url (and any other settings) to replace it"
            ) from exc
        logger.warning("replacing an unreadable source record",
                       extra={"source_id": source_id, "reason": exc.reason})
        current = None
    created = current is None
    if current is None:
        if changes.url is None:
            raise InputError("a new source needs --url")
        current = SourceConfig(source_id=source_id, url=changes.url, start=_ceil_minute(now))
    updates = {k: v for k, v in vars(changes).items() if v is not None}
    if "start" in updates:
        updates["start"] = _ceil_minute(updates["start"])
    kind = changes.kind or current.kind
    if created or kind is not current.kind:  # the kind's defaults, unless given
        updates = {**KIND_DEFAULTS.get(kind, {}), **updates}
    if (kind is SourceKind.PROMETHEUS and changes.token_secret and changes.auth is None
            and current.auth is SourceAuth.NONE):
        updates["auth"] = SourceAuth.BEARER  # a token is sent as a bearer token
    _check_kind_options(kind, changes)
    source = replace(current, **updates)
    validate_source(source)
    if source.kind is not current.kind:  # first: a new kind brings its own defaults
        _check_kind_change(sync, current, source)
    if source.reset_policy is not current.reset_policy:
        _check_policy_change(sync, current, source)
    sources.put_source(source)
    return source


def _check_kind_options(kind: SourceKind, changes: SourceChanges) -> None:
    """Options of the ``prometheus`` kind given for another kind are a mistake, not ignored."""
    if kind is SourceKind.PROMETHEUS:
        return
    for name in PROMETHEUS_ONLY:
        if getattr(changes, name) is not None:
            raise InputError(f"--{name.replace('_', '-')} is an option of --kind prometheus")
    if changes.auth is SourceAuth.SIGV4:
        raise InputError("--auth sigv4 is an option of --kind prometheus")


def _check_policy_change(sync: SyncStore, current: SourceConfig, source: SourceConfig) -> None:
    """A source that has billed keeps its reset policy: reconcile recomputes billed windows with
    the source's policy, so a change would re-rate every reset it already billed."""
    _refuse_once_billed(
        sync, current.source_id,
        billed_as=f"with --reset-policy {current.reset_policy.value}",
        why="changing it would re-rate the resets already billed",
        register_with=f"--reset-policy {source.reset_policy.value}",
    )


def _check_kind_change(sync: SyncStore, current: SourceConfig, source: SourceConfig) -> None:
    """A source that has billed keeps its kind: its checkpoints and baseline are counters read
    by its kind's reader, and another kind reads other counters (reconcile would recompute the
    billed windows from them)."""
    _refuse_once_billed(
        sync, current.source_id,
        billed_as=f"as --kind {current.kind.value}",
        why="another kind reads other counters, which must not be diffed against the ones "
        "already billed",
        register_with=f"--kind {source.kind.value}",
    )


def _refuse_once_billed(
    sync: SyncStore, source_id: str, *, billed_as: str, why: str, register_with: str
) -> None:
    """Raise :class:`InputError` if ``source_id`` has billed (a watermark): what it billed
    ``billed_as`` cannot change ``why``; the operator registers a new source ``register_with``
    the new setting from the watermark on."""
    mark = sync.get_state(source_id).last_completed_until
    if mark is None:
        return
    raise InputError(
        f"source {source_id!r} has billed up to {format_second(mark)} {billed_as}; {why}. "
        f"Register a new source id with {register_with} --start {format_second(mark)} (it "
        "starts from a fresh baseline), then disable this one"
    )


def check_source_id(source_id: str) -> None:
    if _SOURCE_ID.fullmatch(source_id) is None:
        raise InputError(
            f"source id {source_id!r} must be 1-64 of A-Z a-z 0-9 _ . - (starting alphanumeric)"
        )


def check_start(start: datetime) -> None:
    """Raise :class:`InputError` unless ``EARLIEST_START <= start <= LATEST_START``."""
    if not EARLIEST_START <= start <= LATEST_START:
        raise InputError(
            f"--start must be between {format_second(EARLIEST_START)} and "
            f"{format_second(LATEST_START)}"
        )


def check_url(url: str) -> None:
    """Raise :class:`InputError` unless ``url`` is a plain http(s) base URL: a host, no
    credentials (tokens belong in Secrets Manager or SSM, ``--token-secret``), and no query or
    fragment (the window path and its query are appended to it)."""
    if len(url) > MAX_URL_LENGTH:
        raise InputError(f"--url must be at most {MAX_URL_LENGTH} characters")
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError as exc:
        raise InputError(f"--url is not a valid URL: {shorten(url, MAX_ECHO)!r}") from exc
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise InputError(f"--url must be an http(s) URL, got {shorten(url, MAX_ECHO)!r}")
    if "@" in parsed.netloc:  # userinfo: never shown back, it may hold a password
        raise InputError(
            "--url must not contain credentials (user:password@); put the token in Secrets "
            "Manager or SSM and name it with --token-secret"
        )
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise InputError("--url must not have a query string or fragment (a base URL only)")


def validate_source(source: SourceConfig) -> None:
    """Raise :class:`InputError` if ``source`` cannot be collected safely."""
    check_url(source.url)
    check_start(source.start)
    if not 0 <= source.lag_seconds <= 86_400:
        raise InputError("--lag must be between 0 and 86400 seconds")
    if source.max_window_seconds < 60 or source.max_window_seconds % 60:
        raise InputError("--max-window must be a positive whole number of minutes, in seconds")
    if source.max_window_seconds > 7 * 86_400:
        raise InputError("--max-window must be at most 7 days")
    if not 5 <= source.lease_seconds <= 900:
        raise InputError("--lease-seconds must be between 5 and 900")
    tolerance = source.clock_tolerance_seconds
    if tolerance is not None and not 1 <= tolerance <= MAX_CLOCK_TOLERANCE_SECONDS:
        raise InputError(
            f"--clock-tolerance must be between 1 and {MAX_CLOCK_TOLERANCE_SECONDS} seconds"
        )
    if not 0 <= source.clock_margin_ms <= 600_000:
        raise InputError("--clock-margin-ms must be between 0 and 600000")
    if not is_minute_aligned(source.start):
        raise InputError("start must be minute-aligned")
    if source.token_secret is not None:
        try:
            classify_reference(source.token_secret)
        except ConfigError as exc:
            raise InputError(f"--token-secret: {exc}") from exc
    if source.auth is SourceAuth.BEARER and not source.token_secret:
        raise InputError("--auth bearer needs --token-secret (where the token is kept)")
    if source.auth is SourceAuth.SIGV4 and source.token_secret:
        raise InputError("--auth sigv4 signs with AWS credentials; drop --token-secret")
    if source.kind is SourceKind.PROMETHEUS:
        validate_prometheus(source)


def validate_prometheus(source: SourceConfig) -> None:
    """Raise :class:`InputError` unless a ``prometheus`` source names what to read."""
    if source.selector is None or source.account_label is None:
        raise InputError("--kind prometheus needs --selector and --account-label")
    check_selector(source.selector)
    check_label_name(source.account_label, "--account-label")
    if source.node_label is not None:
        check_label_name(source.node_label, "--node-label")
        if source.node_label == source.account_label:
            raise InputError("--node-label and --account-label must be different labels")


@runtime_checkable
class SourceRegistry(Protocol):
    """A source store that can list unreadable registry records too (``DynamoSourceStore``).

    Belongs on ``ports.SourceStore`` once every implementation (the fakes) has it; until then
    :func:`registry_entries` falls back to ``list_sources`` (stores that cannot hold an
    unreadable record)."""

    def list_source_entries(self) -> list[SourceConfig | UnreadableSource]:
        """Every registry record, by source id: a config, or why it cannot be read."""


def registry_entries(sources: SourceStore) -> list[SourceConfig | UnreadableSource]:
    """Every registered source; an unreadable record is an :class:`UnreadableSource` entry
    rather than a failure of the whole listing."""
    if isinstance(sources, SourceRegistry):
        return sources.list_source_entries()
    return list(sources.list_sources())


@dataclass(frozen=True)
class SourceStatus:
    source: SourceConfig
    state: SyncState
    lag_seconds: float | None


def source_status(sync: SyncStore, source: SourceConfig, now: datetime) -> SourceStatus:
    """The source's sync state and how far its watermark is behind ``now``."""
    state = sync.get_state(source.source_id)
    mark = state.last_completed_until
    lag = (now - mark).total_seconds() if mark else None
    return SourceStatus(source=source, state=state, lag_seconds=lag)


def _ceil_minute(moment: datetime) -> datetime:
    floored = floor_minute(moment)
    return floored if floored == moment else floored + MINUTE

