"""Prometheus series to snapshots, without a server: exact values only, one counter per
account and node, a snapshot per scrape time, and the selector and label checks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from minutemeter.adapters.prometheus_samples import (
    Series,
    SeriesConflictError,
    exact_value,
    parse_matrix,
    snapshots,
)
from minutemeter.domain.errors import InputError, SourceProtocolError
from minutemeter.domain.promql import check_label_name, check_selector


@pytest.mark.parametrize(("text", "expected"), [
    ("0", (0, None)),
    ("9007199254740992", (2**53, None)),  # 2**53 itself is exact
    ("1e3", (1000, None)),
    ("-5", (-5, None)),  # a negative count is validation's to quarantine, as an exporter's
    ("1.5", (None, "value_not_integral")),
    ("NaN", (None, "value_nan")),
    ("+Inf", (None, "value_infinite")),
    ("-Inf", (None, "value_infinite")),
    ("18014398509481984", (None, "value_above_2_53")),
])
def test_only_whole_numbers_up_to_2_53_are_exact(text: str,
                                                 expected: tuple[int | None, str | None]) -> None:
    assert exact_value(text) == expected


def _series(pod: str, points: list[tuple[int, str]], account: str = "A") -> Series:
    return Series({"__name__": "b_total", "bucket": account, "pod": pod}, tuple(points))


def test_one_snapshot_per_scrape_time_in_the_window_only() -> None:
    result = snapshots([_series("p", [(999, "1"), (1000, "2"), (2000, "1.5"), (3000, "4")]),
                        _series("p", [(1000, "7")], account="B")],
                       account_label="bucket", since_ms=1000, until_ms=3000)
    assert [s.taken_at for s in result] == ["1970-01-01T00:00:01.000Z",
                                            "1970-01-01T00:00:02.000Z"]
    assert result[0].samples == ({"account_id": "A", "total_bytes": 2},
                                 {"account_id": "B", "total_bytes": 7})
    odd = result[1].samples[0]
    assert isinstance(odd, dict) and odd["unreadable"] == "value_not_integral"


def test_an_account_may_move_to_a_new_series_but_not_have_two_at_once() -> None:
    before, after = _series("p1", [(1000, "5"), (2000, "6")]), _series("p2", [(3000, "1")])
    assert len(snapshots([after, before], account_label="bucket", since_ms=0,
                         until_ms=10_000)) == 3
    overlapping = _series("p2", [(2000, "1"), (4000, "2")])
    with pytest.raises(SeriesConflictError, match="overlapping times"):
        snapshots([before, overlapping], account_label="bucket", since_ms=0, until_ms=10_000)


def test_a_matrix_is_shape_checked() -> None:
    good = [{"metric": {"bucket": "A"}, "values": [[Decimal("1.5"), "3"]]}]
    assert parse_matrix("matrix", good, what="t")[0].points == ((1500, "3"),)
    cases: list[tuple[str, list[Any]]] = [
        ("vector", good), ("matrix", [{"metric": {}, "values": [[1]]}]),
        ("matrix", [{"metric": {"a": "b"}, "histograms": []}]), ("matrix", ["x"])]
    for kind, result in cases:
        with pytest.raises(SourceProtocolError):
            parse_matrix(kind, result, what="t")


@pytest.mark.parametrize("selector", [
    "b_total", 'b_total{job="minio"}', '{__name__="b_total", bucket=~"a|b"}',
    "b_total{ bucket != 'x', job =~ `m.*` , }", 'b:total{a="}[5m]"}'])
def test_plain_series_selectors_are_accepted(selector: str) -> None:
    check_selector(selector)


@pytest.mark.parametrize("selector", [
    "", "sum(b_total)", "b_total[5m]", "b_total offset 5m", "b_total @ 100",
    'b_total{a="1"} or c_total', "b_total{a=1}", "b_total{a=\"1\"", "x" * 1001])
def test_anything_else_is_refused(selector: str) -> None:
    with pytest.raises(InputError):
        check_selector(selector)


def test_label_names() -> None:
    check_label_name("bucket", "--account-label")
    for bad in ("__name__", "1x", "a-b", ""):
        with pytest.raises(InputError):
            check_label_name(bad, "--account-label")
