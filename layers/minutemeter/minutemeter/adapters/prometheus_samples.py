"""Prometheus series to the snapshots every kind yields (pure: no I/O).

A range query (``selector[range]``) answers a *matrix*: each series with its labels and raw
samples ``[unix_seconds, "value"]``. :func:`parse_matrix` shape-checks it; :func:`snapshots`
turns the series of one node into :class:`~minutemeter.domain.model.RawSnapshot` s, one per
distinct sample timestamp (a scrape stamps all the series of a target with one time, so a
snapshot is one scrape), with samples ``{"account_id", "total_bytes"}`` as the exporter's.

Values are float64. Only an integral value from 0 to 2**53 is an exact byte count; any other
(fractional, NaN, +/-Inf, over 2**53) is passed on with its reason in ``unreadable``, and
sample validation quarantines it like a bad exporter sample. Prometheus' staleness markers
never reach a range query's answer, so a gap is just a gap: the next sample diffs against the
last one (a counter that went down is a reset, by the source's reset policy).

**One counter per (node, account).** Several series of one node may name the same account
only one after the other (a series relabelled by a restart, e.g. a new pod name): the samples
of one must all come before those of the next, and they are then read as one counter (a drop
between them is a reset). Series that overlap in time are refused
(:class:`SeriesConflictError`): summing them per scrape would turn one series' restart into a
drop of the sum and bill the other's total again (a recording rule ``sum by (bucket)`` has
the same flaw). Narrow the selector so that one series is left per account and node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

from minutemeter.domain.errors import SourceProtocolError
from minutemeter.domain.model import RawSnapshot
from minutemeter.domain.text import clip

MAX_EXACT = 2**53


@dataclass(frozen=True)
class Series:
    """One series of a matrix: its labels and samples ``(unix_ms, value text)`` in order."""

    labels: Mapping[str, str]
    points: tuple[tuple[int, str], ...]

    def describe(self) -> str:
        """The series as PromQL shows it, clipped (for errors and quarantine records)."""
        name = self.labels.get("__name__", "")
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items())
                         if k != "__name__")
        return clip(f"{name}{{{inner}}}", 300)


class SeriesConflictError(SourceProtocolError):
    """Two series of one node name the same account at overlapping times (see the module)."""

    def __init__(self, account: str, first: Series, second: Series) -> None:
        super().__init__(
            f"series {first.describe()} and {second.describe()} both carry account "
            f"{clip(account, 64)!r} at overlapping times: narrow the selector (or record one "
            "series per account) so that each account has one counter per node",
            field="series", value=clip(account, 64),
        )


def parse_matrix(result_type: str, result: list[Any], *, what: str) -> list[Series]:
    """The series of a range query's answer; :class:`SourceProtocolError` for any other."""
    if result_type != "matrix":
        raise SourceProtocolError(f"{what}: a range query answered {clip(result_type, 20)!r}, "
                                  "not a matrix", field="resultType")
    return [_series(item, what) for item in result]


def _series(item: Any, what: str) -> Series:
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        raise SourceProtocolError(f"{what}: a series without labels", field="metric")
    labels = item["metric"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise SourceProtocolError(f"{what}: labels must be strings", field="metric")
    if "histograms" in item:
        raise SourceProtocolError(f"{what}: {Series(labels, ()).describe()} is a histogram, "
                                  "not a counter", field="histograms")
    values = item.get("values")
    if not isinstance(values, list):
        raise SourceProtocolError(f"{what}: a series without values", field="values")
    return Series(labels=labels, points=tuple(_point(value, what) for value in values))


def _point(value: Any, what: str) -> tuple[int, str]:
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], Decimal | int)
            or not isinstance(value[1], str)):
        raise SourceProtocolError(f"{what}: a sample is not [time, \"value\"]", field="values",
                                  value=clip(repr(value), 100))
    return int(Decimal(value[0]) * 1000), value[1]


def exact_value(text: str) -> tuple[int | None, str | None]:
    """A sample's value as whole bytes, or ``None`` and why it is not one."""
    lowered = text.strip().lower()
    if lowered == "nan":
        return None, "value_nan"
    if lowered in {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}:
        return None, "value_infinite"
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None, "value_not_integral"
    if not number.is_finite():
        return None, "value_infinite" if number.is_infinite() else "value_nan"
    if number != number.to_integral_value():
        return None, "value_not_integral"
    if number > MAX_EXACT:
        return None, "value_above_2_53"
    return int(number), None  # a negative one is quarantined by validation, as an exporter's


def snapshots(
    series: Iterable[Series], *, account_label: str, since_ms: int, until_ms: int,
) -> tuple[RawSnapshot, ...]:
    """The samples in ``[since_ms, until_ms)`` of one node's series as snapshots, ascending.

    Raises :class:`SeriesConflictError` for an account with overlapping series."""
    by_time: dict[int, list[dict[str, object]]] = defaultdict(list)
    spans: dict[str, list[tuple[int, int, Series]]] = defaultdict(list)
    for one in series:
        points = [(ms, text) for ms, text in one.points if since_ms <= ms < until_ms]
        if not points:
            continue
        account = one.labels.get(account_label)
        if account is not None:
            spans[account.lower()].append((points[0][0], points[-1][0], one))
        for ms, text in points:
            by_time[ms].append(_sample(account, text, one))
    for account, ranges in spans.items():
        ranges.sort(key=lambda span: span[0])
        for (_, last, before), (first, _, after) in pairwise(ranges):
            if first <= last:
                raise SeriesConflictError(account, before, after)
    return tuple(RawSnapshot(taken_at=_rfc3339(ms), samples=tuple(by_time[ms]))
                 for ms in sorted(by_time))


def _sample(account: str | None, text: str, series: Series) -> dict[str, object]:
    value, reason = exact_value(text)
    if reason is None:
        return {"account_id": account, "total_bytes": value}
    return {"account_id": account, "total_bytes": text, "unreadable": reason,
            "series": series.describe()}


def _rfc3339(ms: int) -> str:
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def node_of(labels: Mapping[str, str], node_label: str | None, fixed: str,
            describe: Callable[[], str]) -> str:
    """The node a series belongs to: its ``node_label`` value, else ``fixed``."""
    if node_label is None:
        return fixed
    node = labels.get(node_label)
    if not node:
        raise SourceProtocolError(f"series {describe()} has no label {node_label!r} (the "
                                  "source's --node-label)", field="node_label")
    return node
