"""The source registry on the state table (:class:`minutemeter.ports.SourceStore`).

One item per source (``keys.source_key``): every field of its configuration, times
fixed-width, enums by value. A record that does not parse, or is not operable
(``domain.registry``), is never collected: reading it raises ``SourceUnreadableError``, and a
listing shows it as an :class:`UnreadableSource` (and a warning in the log) rather than fail.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from minutemeter.adapters.dynamo.base import DynamoTable, Item
from minutemeter.adapters.dynamo.state.items import _stored
from minutemeter.adapters.dynamo.state.keys import SOURCES_PK, source_key
from minutemeter.domain.errors import MinutemeterError, SourceNotFoundError
from minutemeter.domain.model import (
    ClockGuardAction,
    ResetPolicy,
    SourceAuth,
    SourceConfig,
    SourceKind,
)
from minutemeter.domain.registry import (
    MAX_ECHO,
    SourceUnreadableError,
    UnreadableSource,
    operability_problem,
)
from minutemeter.domain.text import shorten
from minutemeter.domain.timeutil import parse_rfc3339

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 300  # why a registry record is unreadable


class DynamoSourceStore:
    """:class:`minutemeter.ports.SourceStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def put_source(self, source: SourceConfig) -> None:
        item: Item = {**source_key(source.source_id), "type": "source"}
        item.update(_source_to_item(source))
        self.table.put(item)

    def get_source(self, source_id: str) -> SourceConfig:
        """Raises ``SourceNotFoundError``, or ``SourceUnreadableError`` for a record that does
        not parse or is not operable (``domain.registry``)."""
        item = self.table.get(source_key(source_id))
        if item is None:
            raise SourceNotFoundError(source_id)
        entry = _read_source(source_id, item)
        if isinstance(entry, UnreadableSource):
            raise SourceUnreadableError(source_id, entry.error)
        return entry

    def list_sources(self) -> list[SourceConfig]:
        """The readable sources; an unreadable record is logged and left out."""
        return [e for e in self.list_source_entries() if isinstance(e, SourceConfig)]

    def list_source_entries(self) -> list[SourceConfig | UnreadableSource]:
        """Every registry record by source id; one that cannot be read is an
        :class:`UnreadableSource` (and a warning in the log), never a failed listing."""
        items = self.table.query("pk = :pk", {":pk": SOURCES_PK})
        entries = [_read_source(str(i.get("sk", "")), i) for i in items]
        for entry in entries:
            if isinstance(entry, UnreadableSource):
                logger.warning("unreadable source record",
                               extra={"source_id": entry.source_id, "error": entry.error})
        return entries


# -- items ------------------------------------------------------------------------------------
def _source_to_item(source: SourceConfig) -> Item:
    """Every field of the configuration, times fixed-width, enums by value."""
    return {name: _stored(value) for name, value in asdict(source).items()}


def _read_source(source_id: str, item: Item) -> SourceConfig | UnreadableSource:
    """The record as a config, or why it cannot be operated on (never raises)."""
    try:
        source = _source_from_item(item)
    except (KeyError, TypeError, ValueError, ArithmeticError, MinutemeterError) as exc:
        return UnreadableSource(source_id, _reason(f"{type(exc).__name__}: {exc}"))
    if source.source_id != source_id:
        return UnreadableSource(
            source_id,
            _reason(f"source_id {shorten(source.source_id, MAX_ECHO)!r} differs from the key"),
        )
    problem = operability_problem(source)
    return source if problem is None else UnreadableSource(source_id, _reason(problem))


def _reason(text: str) -> str:
    """One line of at most ``MAX_REASON_CHARS``: it is repeated in messages and listings."""
    return shorten(" ".join(text.split()), MAX_REASON_CHARS)


def _source_from_item(item: Item) -> SourceConfig:
    tolerance = item.get("clock_tolerance_seconds")
    return SourceConfig(
        source_id=_text(item, "source_id"),
        url=_text(item, "url"),
        start=parse_rfc3339(item["start"], what="start"),
        node_id=_optional_text(item, "node_id"),
        env=_optional_text(item, "env"),
        lag_seconds=_whole(item["lag_seconds"]),
        max_window_seconds=_whole(item["max_window_seconds"]),
        reset_policy=ResetPolicy(item["reset_policy"]),
        lease_seconds=_whole(item["lease_seconds"]),
        token_secret=_optional_text(item, "token_secret"),
        clock_tolerance_seconds=_whole(tolerance) if tolerance is not None else None,
        enabled=bool(item.get("enabled", True)),
        clock_guard=ClockGuardAction(item.get("clock_guard", ClockGuardAction.WIDEN.value)),
        clock_margin_ms=_whole(item.get("clock_margin_ms", 1000)),
        # Sources stored before kinds existed are exporter sources.
        kind=SourceKind(item.get("kind", SourceKind.EXPORTER.value)),
        selector=_optional_text(item, "selector"),
        account_label=_optional_text(item, "account_label"),
        node_label=_optional_text(item, "node_label"),
        auth=SourceAuth(item.get("auth", SourceAuth.NONE.value)),
    )


def _text(item: Item, name: str) -> str:
    value = item[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} is a {type(value).__name__}, not a string")
    return value


def _optional_text(item: Item, name: str) -> str | None:
    return None if item.get(name) is None else _text(item, name)


def _whole(value: Any) -> int:
    """A stored whole number (DynamoDB numbers are Decimal); anything else is a TypeError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, Decimal):
        raise TypeError(f"{shorten(repr(value), 40)} is not a number")
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError(f"{shorten(str(value), 40)} is not a whole number")
    return int(value)
