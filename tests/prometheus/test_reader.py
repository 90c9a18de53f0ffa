"""The reader's window logic against a scripted API on 127.0.0.1: a window is read only once
Prometheus has a sample at or after its end, the node comes from the configured label, and the
range of each query is the slice's, evaluated at its last millisecond."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from minutemeter.domain.errors import SourceProtocolError
from minutemeter.domain.exporter_errors import WindowNotReadyError
from minutemeter.domain.model import Window
from minutemeter.ports import CounterIdentity
from tests.prometheus.stub import Answer, Seen, StubPrometheus, json_answer, matrix
from tests.prometheus.support import prometheus_reader, prometheus_source

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
T0_S = int(T0.timestamp())
WINDOW = Window(T0, T0 + timedelta(minutes=12))
ACCOUNT = "0b5a4d2e-1111-4222-8333-444455556666"


def _vector(items: list[dict[str, Any]]) -> Answer:
    return json_answer(200, {"status": "success",
                             "data": {"resultType": "vector", "result": items}})


def _query(seen: Seen) -> tuple[str, str | None]:
    params = parse_qs(urlsplit(seen.path).query)
    return params["query"][0], params.get("time", [None])[0]


def _respond(horizon: list[dict[str, Any]], newest: list[dict[str, Any]],
             series: Callable[[str], list[dict[str, Any]]] = lambda q: []) -> Any:
    def respond(seen: Seen) -> Answer:
        query, _ = _query(seen)
        if query.startswith("count"):
            return _vector(horizon)
        if query.startswith("max"):
            return _vector(newest)
        return matrix(series(query))
    return respond


def _read(stub: StubPrometheus, node_label: str | None = "node",
          expected: str | None = None) -> list[Any]:
    source = prometheus_source("p1", stub.url, T0, selector="b_total", node_label=node_label)
    read = prometheus_reader().read(source, CounterIdentity(expected, None), WINDOW,
                                    before_request=lambda: None, time_left=lambda: None)
    return list(read)


def test_a_window_past_the_newest_sample_is_not_ready() -> None:
    newest = [{"metric": {"node": "n1"}, "value": [T0_S, str(T0_S + 700)]}]  # before 10:12
    with (StubPrometheus(_respond([], newest)) as stub,
          pytest.raises(WindowNotReadyError) as raised):
        _read(stub)
    assert raised.value.newest == T0 + timedelta(seconds=700)
    assert raised.value.until == WINDOW.until
    assert len(stub.seen) == 2  # the horizon, then the newest sample: no data was read


def test_a_sample_after_a_long_gap_still_makes_the_window_ready() -> None:
    newest = [{"metric": {"node": "n1"}, "value": [T0_S, str(T0_S + 7200)]}]

    def series(query: str) -> list[dict[str, Any]]:
        return [{"metric": {"node": "n1", "bucket": ACCOUNT}, "values": [[T0_S + 30, "5"]]}]

    with StubPrometheus(_respond([], newest, series)) as stub:
        batches = _read(stub)
    assert [len(batch) for batch in batches] == [1]  # one sample, in the first slice
    queries = [_query(seen) for seen in stub.seen[2:]]
    # three slices of at most five minutes, each its own range at its last millisecond
    assert queries == [("b_total[300000ms]", f"{T0_S + 299}.999"),
                       ("b_total[300000ms]", f"{T0_S + 599}.999"),
                       ("b_total[120000ms]", f"{T0_S + 719}.999")]


def test_the_readiness_answer_names_the_node_and_it_is_enforced() -> None:
    horizon = [{"metric": {"node": "n2"}, "value": [0, "1"]}]
    with (StubPrometheus(_respond(horizon, [])) as stub,
          pytest.raises(SourceProtocolError, match="node_id 'n2' is not the expected 'n1'")):
        _read(stub, expected="n1")


def test_a_series_without_the_node_label_is_refused() -> None:
    with (StubPrometheus(_respond([{"metric": {}, "value": [0, "1"]}], [])) as stub,
          pytest.raises(SourceProtocolError, match="has no label 'node'")):
        _read(stub)
