"""The Prometheus client's answers, against a scripted server on 127.0.0.1: every failure of
the API is a typed error, retried only when it may pass (5xx, 429, connection), and a body
over the cap asks the collector for a smaller window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from minutemeter.adapters.prometheus_auth import Authenticator
from minutemeter.adapters.prometheus_http import PrometheusHttp, PrometheusQueryError
from minutemeter.domain.errors import SourceProtocolError
from minutemeter.domain.exporter_errors import BodyTooLargeError
from minutemeter.domain.model import JobStatus, SourceAuth, SourceConfig
from minutemeter.service.collect import collect_source
from minutemeter.settings import Settings
from tests.prometheus.stub import Answer, Seen, StubPrometheus, json_answer, matrix
from tests.prometheus.support import prometheus_deps, prometheus_reader, prometheus_source
from tests.support.backends import Backend
from tests.support.clock import FakeClock
from tests.support.fakes import FakeLedgerStore, fake_state_stores

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(minutes=5))


def _client(**options: object) -> PrometheusHttp:
    def token(source: SourceConfig) -> str | None:
        return "t0ken" if source.token_secret else None

    values: dict[str, object] = {"timeout_seconds": 5, "retries": 2,
                                 "auth": Authenticator(token, None), "sleep": lambda s: None}
    return PrometheusHttp(**{**values, **options})  # type: ignore[arg-type]


def _source(url: str, **fields: object) -> SourceConfig:
    return prometheus_source("p1", url, T0, node_id="n1", selector="bytes_total", **fields)


def _query(stub: StubPrometheus, client: PrometheusHttp | None = None,
           **fields: object) -> tuple[str, list[object]]:
    return (client or _client()).query(_source(stub.url, **fields), "bytes_total[300000ms]",
                                       1_795_341_899_999, time_left=None, window=WINDOW)


def _error(status: int, error_type: str) -> Answer:
    return json_answer(status, {"status": "error", "errorType": error_type, "error": "boom"})


@pytest.mark.parametrize(("answer", "error_type"), [
    (_error(400, "bad_data"), "bad_data"),
    (_error(422, "execution"), "execution"),
    (json_answer(200, {"status": "success", "warnings": ["remote store down"],
                       "data": {"resultType": "matrix", "result": []}}), "warnings"),
    (json_answer(200, {"status": "error", "errorType": "internal", "error": "x"}), "internal"),
    ((404, {}, b"not here"), "http"),
    ((302, {"Location": "http://elsewhere.example/"}, b""), "redirect"),
])
def test_a_refusal_is_typed_and_not_retried(answer: Answer, error_type: str) -> None:
    with StubPrometheus(lambda seen: answer) as stub, pytest.raises(PrometheusQueryError) as raised:
        _query(stub)
    assert raised.value.error_type == error_type and len(stub.seen) == 1


def test_a_timeout_or_unavailable_answer_is_retried_then_typed() -> None:
    with (StubPrometheus(lambda seen: _error(503, "timeout")) as stub,
          pytest.raises(PrometheusQueryError) as raised):
        _query(stub)
    assert raised.value.error_type == "timeout" and raised.value.status == 503
    assert len(stub.seen) == 3  # the first attempt and two retries


def test_a_retry_that_passes_returns_the_answer() -> None:
    answers = iter([_error(503, "unavailable"), (429, {}, b""), matrix([])])
    with StubPrometheus(lambda seen: next(answers)) as stub:
        assert _query(stub) == ("matrix", [])
    assert len(stub.seen) == 3


def test_the_query_is_an_instant_query_at_the_given_millisecond() -> None:
    with StubPrometheus(lambda seen: matrix([])) as stub:
        _query(stub)
    parts = urlsplit(stub.seen[0].path)
    assert parts.path == "/api/v1/query"
    assert parse_qs(parts.query) == {"query": ["bytes_total[300000ms]"],
                                     "time": ["1795341899.999"]}
    assert "authorization" not in stub.seen[0].headers


def test_bearer_auth_sends_the_token() -> None:
    with StubPrometheus(lambda seen: matrix([])) as stub:
        _query(stub, token_secret="ssm:/prom/token", auth=SourceAuth.BEARER)
    assert stub.seen[0].headers["authorization"] == "Bearer t0ken"


def test_a_body_over_the_cap_asks_for_a_smaller_window() -> None:
    big = matrix([{"metric": {"bucket": "b"}, "values": [[1, "1"]] * 5000}])
    with StubPrometheus(lambda seen: big) as stub, pytest.raises(BodyTooLargeError) as raised:
        _query(stub, _client(max_body_bytes=10_000))
    assert (raised.value.since, raised.value.until) == WINDOW


def test_a_body_that_is_not_an_api_answer_is_a_protocol_error() -> None:
    with (StubPrometheus(lambda seen: (200, {}, b"<html>")) as stub,
          pytest.raises(SourceProtocolError)):
        _query(stub)


def test_a_failing_query_fails_the_run_and_moves_nothing() -> None:
    # GIVEN Prometheus answers the readiness check, then a result with warnings
    def respond(seen: Seen) -> Answer:
        if "count_over_time" in seen.path:
            return json_answer(200, {"status": "success", "data": {
                "resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]}})
        return json_answer(200, {"status": "success", "warnings": ["partial"],
                                 "data": {"resultType": "matrix", "result": []}})

    backend = Backend("fake", FakeLedgerStore(), fake_state_stores(), Settings())
    with StubPrometheus(respond) as stub:
        backend.state.sources.put_source(_source(stub.url))
        deps = prometheus_deps(backend, FakeClock(T0 + timedelta(minutes=30)),
                               prometheus_reader(retries=0))
        job = collect_source(deps, "p1")
    # THEN the run is an error of that type and the watermark did not move
    assert job.status is JobStatus.ERROR and job.error_type == "PrometheusQueryError"
    assert "warnings" in (job.error or "")
    assert backend.state.sync.get_state("p1").last_completed_until is None
