"""Request parsing of the operations API (functions/api/app.py): hammered with hypothesis.

No input crashes the parser or the handler, and none gets a 5xx: a body is either a request
(with the window invariants) or a typed error that the error table maps to a 4xx. The handler
runs on in-memory stores and an exporter with no data, so there is no network and no DynamoDB.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from minutemeter.adapters.dynamo.wire import CapacityMeter
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.bootstrap import App
from minutemeter.domain.errors import InputError
from minutemeter.domain.model import Page, SourceConfig, SourceKind, Window
from minutemeter.service.operations import MalformedRequestError
from minutemeter.service.reconcile import MAX_WINDOW, ReconcileRequest
from minutemeter.settings import Settings
from tests.support.clock import FakeClock
from tests.support.fakes import FakeLedgerStore, fake_state_stores

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
PRINCIPAL = "arn:aws:iam::111122223333:user/ops-alice"
EVENT: dict[str, Any] = json.loads((REPO / "events" / "api-reconcile-dry-run.json").read_text())
ERROR_TYPES = {"malformed_request", "unauthenticated", "source_not_found", "source_busy",
               "source_disabled", "payload_too_large", "invalid_window"}
HYPOTHESIS = settings(max_examples=200, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _load_handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_app_unit", REPO / "functions/api/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api = _load_handler()


def _status_of(exc: InputError) -> int:
    for cls in type(exc).__mro__:
        if cls in api.ERRORS:
            status: int = api.ERRORS[cls][0]
            return status
    raise AssertionError(f"{type(exc).__name__} is not in the error table")


# -- strategies ---------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=15,
)
aligned = st.datetimes(min_value=datetime(2000, 1, 1),  # noqa: DTZ001 (naive bounds)
                       max_value=datetime(2100, 1, 1),  # noqa: DTZ001
                       timezones=st.just(UTC)).map(lambda d: d.replace(second=0, microsecond=0))
odd_times = st.sampled_from([
    "2026-11-22T10:10:00Z", "2026-11-22t10:10:00z", "2026-11-22 10:10:00Z",
    "2026-11-22T10:10:00+05:30", "2026-11-22T10:10:00-23:59", "2026-11-22T10:10:00.000000000Z",
    "2026-11-22T10:10:00.000001Z", "2026-11-22T10:10:60Z", "2026-11-22T10:10:30Z",
    "2026-02-30T00:00:00Z", "2026-11-22T24:00:00Z", "9999-12-31T23:59:00-01:00",
    "0001-01-01T00:00:00+01:00", "2026-11-22T10:10Z", "2026-11-22", "", "now", "1795602600",
    "2026-11-22T10:10:00\u00a0Z", "\uff12\uff10\uff12\uff16-11-22T10:10:00Z",
])
times = st.one_of(aligned.map(lambda d: d.isoformat()), aligned.map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")), odd_times, st.text(max_size=30), json_values)
fields = st.fixed_dictionaries(
    {},
    optional={
        "source_id": st.sampled_from(["demo", "ghost", "", "-x", "a" * 65, "dé", "a/b"])
        | st.text(max_size=70) | json_values,
        "since": times,
        "until": times,
        "dry_run": st.booleans() | json_values,
        "requested_by": st.text(max_size=20),
        "padding": st.text(max_size=5),
    },
)
windows = st.builds(  # well-formed; some inside the billed 10:01-10:49, most not
    lambda source_id, since, minutes, dry_run: {
        "source_id": source_id, "since": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "until": (since + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dry_run": dry_run,
    },
    st.sampled_from(["demo", "demo", "demo", "ghost"]),
    st.sampled_from([T0 + timedelta(minutes=10)] * 3 + [T0, T0 - timedelta(days=30)]),
    st.integers(-10, 60) | st.integers(-10, 31 * 24 * 60 + 10),
    st.booleans(),
)
documents = st.one_of(fields, windows, windows, json_values)
huge = st.builds(lambda char, n: char * n, st.characters(), st.integers(16_000, 40_000))


@st.composite
def bodies(draw: st.DrawFn) -> tuple[object, object]:
    """(body, isBase64Encoded) as a Function URL event could carry them, and then some."""
    kind = draw(st.sampled_from(["json", "window", "text", "bytes", "huge", "padded", "odd"]))
    if kind == "json":
        text = json.dumps(draw(documents), ensure_ascii=draw(st.booleans()))
    elif kind == "window":
        text = json.dumps(draw(windows))
    elif kind == "text":
        text = draw(st.text(max_size=200))
    elif kind == "huge":
        text = draw(huge)
    elif kind == "padded":
        text = json.dumps(draw(windows)) + " " * draw(st.integers(16_200, 16_500))
    elif kind == "odd":
        return draw(st.sampled_from([None, 17, ["x"], {"a": 1}, b"{}"])), draw(st.booleans())
    else:
        raw = draw(st.binary(max_size=300))
        return base64.b64encode(raw).decode(), True
    flag = draw(st.sampled_from([False, True, None, "true", 1]))
    if flag is True and draw(st.booleans()):
        return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode(), True
    return text, flag


def _check(body: object, flag: object) -> ReconcileRequest | InputError:
    try:
        request = api.parse_reconcile_request(body, flag, PRINCIPAL)
    except InputError as exc:
        assert 400 <= _status_of(exc) < 500
        if currently_in_test_context():
            event(type(exc).__name__)
        return exc
    assert isinstance(request, ReconcileRequest)
    assert request.since.tzinfo is not None and request.since.utcoffset() == timedelta(0)
    assert request.since < request.until <= request.since + MAX_WINDOW
    assert request.since.second == request.since.microsecond == 0
    assert request.until.second == request.until.microsecond == 0
    assert isinstance(request.dry_run, bool) and request.requested_by == PRINCIPAL
    return request


# -- the pure parser ----------------------------------------------------------------------------
@HYPOTHESIS
@given(bodies())
def test_any_body_is_a_request_or_a_4xx_error(body_and_flag: tuple[object, object]) -> None:
    _check(*body_and_flag)


@HYPOTHESIS
@given(documents)
def test_any_json_document_is_a_request_or_a_4xx_error(document: object) -> None:
    outcome = _check(json.dumps(document), False)
    if isinstance(document, dict) and isinstance(outcome, ReconcileRequest):
        assert set(document) == {"source_id", "since", "until", "dry_run"}
        assert document["dry_run"] is outcome.dry_run


@HYPOTHESIS
@given(json_values.filter(lambda v: not isinstance(v, bool)))
def test_dry_run_must_be_a_json_boolean(value: object) -> None:
    document = {"source_id": "demo", "since": "2026-11-22T10:10:00Z",
                "until": "2026-11-22T10:40:00Z", "dry_run": value}
    try:
        body, strict = json.dumps(document, allow_nan=False), True
    except ValueError:  # an infinity somewhere: Python writes it, JSON has none
        body, strict = json.dumps(document), False
    with pytest.raises(MalformedRequestError, match="dry_run" if strict else "JSON"):
        api.parse_reconcile_request(body, False, PRINCIPAL)


@HYPOTHESIS
@given(json_values | st.text())
@example({"requestContext": {"authorizer": {"iam": {"userArn": " ", "callerId": 5}}}})
@example({"requestContext": {"authorizer": None}})
def test_the_principal_is_a_string_or_none_whatever_the_event(event: object) -> None:
    principal = api.principal_of(event)
    assert principal is None or (isinstance(principal, str) and principal.strip())


def _request(**overrides: object) -> str:
    document = {"source_id": "demo", "since": "2026-11-22T10:10:00Z",
                "until": "2026-11-22T10:40:00Z", "dry_run": True, **overrides}
    return json.dumps(document)


@pytest.mark.parametrize(
    ("body", "is_base64", "status"),
    [
        (_request(), False, None),
        (base64.b64encode(_request().encode()).decode(), True, None),
        (_request(since="2026-11-22T11:10:00+01:00"), False, None),  # 10:10 UTC
        (_request(since="2026-11-22T10:10:00.000Z"), False, None),
        (_request(until="2026-12-23T10:10:00Z"), False, None),  # exactly 31 days
        (_request(until="2026-12-23T10:11:00Z"), False, 422),
        (_request(until="2026-11-22T10:10:00Z"), False, 422),
        (_request(since="2026-11-22T10:10:00.000001Z"), False, 422),
        (_request(since="2026-11-22T10:09:60Z"), False, 422),  # a leap second is :59.999999
        (_request(since="2026-02-30T00:00:00Z"), False, 400),
        (_request(since="9999-12-31T23:59:00-01:00"), False, 400),
        (_request(dry_run=None), False, 400),
        (_request(dry_run=0), False, 400),
        (_request(dry_run="false"), False, 400),
        (_request(source_id="a" * 65), False, 400),
        (_request(source_id=["demo"]), False, 400),
        ('{"source_id": "demo", "since": NaN}', False, 400),
        ('{"dry_run": Infinity}', False, 400),
        (_request()[:-1] + ', "dry_run": false}', False, 400),  # a duplicate key
        ("[" * 8_000 + "]" * 8_000, False, 400),  # nesting deeper than the parser's stack
        (_request()[:-6] + "9" * 5000 + "}", False, 400),  # beyond int's digit limit
        ('"demo"', False, 400),
        ("", False, 400),
        (None, False, 400),
        ("eyJ9", True, 400),  # base64 of '{"}'
        ("not base64!", True, 400),
        (base64.b64encode(b"\xff\xfe{}").decode(), True, 400),
        (_request() + " " * (16_384 - len(_request())), False, None),  # exactly the limit
        (_request() + " " * (16_385 - len(_request())), False, 413),
        (base64.b64encode((_request() + " " * (16_385 - len(_request()))).encode()).decode(),
         True, 413),
        ("A" * 30_000, True, 413),  # refused before decoding
        ("\ud800" * 10, False, 400),  # a lone surrogate
    ],
)
def test_edges(body: object, is_base64: object, status: int | None) -> None:
    outcome = _check(body, is_base64)
    if status is None:
        assert isinstance(outcome, ReconcileRequest), outcome
    else:
        assert isinstance(outcome, InputError) and _status_of(outcome) == status, outcome


# -- the whole handler, on in-memory stores -----------------------------------------------------
class EmptyExporter:
    """An exporter whose window holds no snapshot (reconcile finds nothing to compare)."""

    def fetch_page(self, source: SourceConfig, window: Window, cursor: str | None, *,
                   time_left: float | None = None) -> Page:
        return Page(node_id="node-a", env="prod", snapshots=(), has_more=False,
                    next_cursor=None, digest=f"{window.since}/{window.until}")


@pytest.fixture(scope="module")
def fake_app() -> Iterator[App]:
    state = fake_state_stores()
    state.sources.put_source(SourceConfig("demo", "http://127.0.0.1:9",
                                          T0 + timedelta(minutes=1)))
    state.sync.commit_progress("demo", until=T0 + timedelta(minutes=49), node_id="node-a",
                               baseline_taken_at=T0 + timedelta(minutes=1), at=T0, fence=None)
    app = App(settings=Settings(), clock=FakeClock(T0 + timedelta(days=3)), dynamodb=None,
              meter=CapacityMeter(), ledger=FakeLedgerStore(),
              state=state,
              readers={SourceKind.EXPORTER: ExporterReader(EmptyExporter())})
    with pytest.MonkeyPatch.context() as patch:  # the handler's warm app, put back afterwards
        patch.setattr(api, "_app", app)
        yield app


class Context:
    aws_request_id = "unit"
    function_name = "minutemeter-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:minutemeter-api"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@HYPOTHESIS
@given(bodies())
def test_the_handler_never_answers_5xx(fake_app: App, body_and_flag: tuple[object, object]) -> None:
    body, flag = body_and_flag
    request = {**EVENT, "body": body, "isBase64Encoded": flag}

    response = api.lambda_handler(request, Context())

    event(f"status {response['statusCode']}")
    assert 200 <= response["statusCode"] < 500, response
    document = json.loads(response["body"])
    if response["statusCode"] == 200:
        assert document["status"] == "ok" and document["requested_by"] == PRINCIPAL
    else:
        assert set(document) == {"error"} and document["error"]["type"] in ERROR_TYPES
        assert "Traceback" not in document["error"]["message"]


# -- events of any shape ------------------------------------------------------------------------
GET_EVENTS = [json.loads((REPO / "events" / f"{name}.json").read_text())
              for name in ("api-sources", "api-source", "api-status", "api-healthz")]
odd_values = st.sampled_from([None, 0, 17, "", "x", [], ["a"], {}, {"a": 1}, True])
paths = st.sampled_from([
    "/reconcile", "/sources", "/sources/demo", "/sources/ghost", "/status", "/healthz", "",
    "/", "//sources", "sources", "/sources/", "/sources/a/b", "/sources/a\u0000b",
    "/sources/\ud800", "/sources/" + "x" * 100_000, "/metrics",
]) | st.text(max_size=30)
methods = st.sampled_from(["GET", "POST", "PUT", "get", "", "HEAD"]) | st.text(max_size=8)
# (where in the event, what to put there): a missing key is the marker _DELETE
_DELETE = object()
places = st.sampled_from([
    ("requestContext",), ("requestContext", "http"), ("requestContext", "http", "method"),
    ("requestContext", "http", "path"), ("requestContext", "authorizer"), ("rawPath",),
    ("rawQueryString",), ("headers",), ("queryStringParameters",), ("cookies",), ("version",),
    ("isBase64Encoded",), ("body",),
])


def _set(event: dict[str, Any], place: tuple[str, ...], value: object) -> None:
    target: Any = event
    for key in place[:-1]:
        if not isinstance(target, dict) or not isinstance(target.get(key), dict):
            return
        target = target[key]
    if value is _DELETE:
        target.pop(place[-1], None)
    else:
        target[place[-1]] = value


@st.composite
def shaped_events(draw: st.DrawFn) -> object:
    """A Function URL event with its path and method varied and then any of its parts
    missing or of another type; now and then not an object at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(odd_values | st.text(max_size=5))
    event = json.loads(json.dumps(draw(st.sampled_from([EVENT, *GET_EVENTS]))))
    path = draw(paths)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = draw(methods)
    for place in draw(st.lists(places, max_size=3)):
        value = draw(st.just(_DELETE) | odd_values | st.dictionaries(
            st.text(max_size=5), st.text(max_size=5) | odd_values, max_size=3))
        _set(event, place, value)
    return event


@HYPOTHESIS
@given(shaped_events())
@example({"version": "2.0", "rawPath": "/status"})  # no requestContext
@example({**GET_EVENTS[0], "rawPath": None})
@example({**GET_EVENTS[0], "headers": ["accept"]})
@example({**GET_EVENTS[1], "rawPath": "/sources/" + "x" * 100_000})
def test_the_handler_never_answers_5xx_whatever_the_event(fake_app: App, incoming: object) -> None:
    response = api.lambda_handler(incoming, Context())

    status = response["statusCode"]
    event(f"status {status}")
    document = json.loads(response["body"])
    path = incoming.get("rawPath") if isinstance(incoming, dict) else None
    if status == 503:  # /healthz of the in-memory app: no drift verdict, a stale source
        assert path == "/healthz" and document["ok"] is False
        return
    assert 200 <= status < 500, response
    if status >= 400:
        assert set(document) == {"error"}
        assert document["error"]["type"] in ERROR_TYPES | {"route_not_found",
                                                           "method_not_allowed"}
        assert len(document["error"]["message"]) <= 300  # echoed input is cut
