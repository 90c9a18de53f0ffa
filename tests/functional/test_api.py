"""The operations API handler (functions/api/app.py) through the Function URL events in events/,
on moto (and once on DynamoDB Local), with a sample exporter on 127.0.0.1; and docs/openapi.yaml
checked against the resolver's real routes and the handler's real answers."""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import jsonschema
import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the dev tools (as in the package)
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import mock_aws

from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.system import SystemClock
from minutemeter.bootstrap import App, bootstrap
from minutemeter.domain.model import ClockVerdict, SourceConfig
from minutemeter.local.ddb import DynamoDBLocal
from minutemeter.local.exporter import SampleExporter, StaticHistory, SyntheticCounters, rfc3339
from minutemeter.local.exporter import account_ids as make_accounts
from minutemeter.ports import LedgerFilter
from minutemeter.remote import (
    RemoteAuthError,
    RemoteInputError,
    RemoteNotFoundError,
    call_health,
    call_reconcile,
    call_sources,
    call_status,
)
from minutemeter.service.operations import stale_limit_seconds
from minutemeter.settings import load_settings
from tests.support.clock import FakeClock
from tests.support.harness import run_until_caught_up

REPO = Path(__file__).resolve().parents[2]
HANDLER_PATH = REPO / "functions" / "api" / "app.py"
EVENTS = REPO / "events"
OPENAPI = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
LEDGER_TABLE, STATE_TABLE = "api-ledger", "api-state"
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # the windows in events/api-reconcile-*.json
BILLED_AT = T0 + timedelta(minutes=50)
ACCOUNTS = make_accounts(3, seed=11)
USER_ARN = "arn:aws:iam::111122223333:user/ops-alice"
ROLE_ARN = "arn:aws:sts::111122223333:assumed-role/MinutemeterOperator/bob@example.com"

# Every Function URL event in events/ and what the handler answers to it once the "demo"
# source has billed 10:01-10:49 on 2026-11-22 (a fresh stack: no drift verdict, so /healthz
# fails). The error type is the machine-readable one of the body.
EXPECTED: dict[str, tuple[int, str | None]] = {
    "api-reconcile-dry-run": (200, None),
    "api-reconcile-confirm": (200, None),
    "api-reconcile-malformed-json": (400, "malformed_request"),
    "api-reconcile-not-object": (400, "malformed_request"),
    "api-reconcile-missing-field": (400, "malformed_request"),
    "api-reconcile-extra-field": (400, "malformed_request"),
    "api-reconcile-dry-run-string": (400, "malformed_request"),
    "api-reconcile-not-rfc3339": (400, "malformed_request"),
    "api-reconcile-bad-base64": (400, "malformed_request"),
    "api-reconcile-no-principal": (401, "unauthenticated"),
    "api-reconcile-unknown-source": (404, "source_not_found"),
    "api-reconcile-too-large": (413, "payload_too_large"),
    "api-reconcile-not-minute": (422, "invalid_window"),
    "api-reconcile-reversed": (422, "invalid_window"),
    "api-reconcile-too-long": (422, "invalid_window"),
    "api-reconcile-beyond-watermark": (422, "invalid_window"),
    "api-sources": (200, None),
    "api-source": (200, None),
    "api-source-unknown": (404, "source_not_found"),
    "api-status": (200, None),
    "api-usage": (200, None),
    "api-usage-unknown-account": (404, "account_not_found"),
    "api-usage-bad-month": (422, "invalid_month"),
    "api-healthz": (503, None),
    "api-route-unknown": (404, "route_not_found"),
    "api-method-not-allowed": (405, "method_not_allowed"),
}


@dataclass
class FakeLambdaContext:
    remaining_ms: int = 300_000
    function_name: str = "minutemeter-api"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:minutemeter-api"
    aws_request_id: str = "0d8f4c1e-2b3a-4c5d-8e9f-a0b1c2d3e4f5"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    """functions/api/app.py, imported by path with the Powertools environment of the stack."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POWERTOOLS_SERVICE_NAME", "minutemeter")
        spec = importlib.util.spec_from_file_location("api_app", HANDLER_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _environment(monkeypatch: pytest.MonkeyPatch, handler: ModuleType) -> dict[str, str]:
    environ = {"MINUTEMETER_LEDGER_TABLE": LEDGER_TABLE, "MINUTEMETER_STATE_TABLE": STATE_TABLE,
               "MINUTEMETER_COMMIT_CONCURRENCY": "1",  # moto is not thread-safe
               "MINUTEMETER_HTTP_RETRIES": "0"}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(handler, "_app", None)
    return environ


@pytest.fixture
def ops(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """Moto with both tables and the function's environment, no App cached in the handler; an
    operator's App on the same tables for arranging and checking state."""
    environ = _environment(monkeypatch, handler)
    with mock_aws():
        app = bootstrap(load_settings(environ),
                        session=boto3.session.Session(region_name="us-east-1"))
        create_tables(app.dynamodb, ledger_table=LEDGER_TABLE, state_table=STATE_TABLE)
        yield app


@pytest.fixture
def exporter() -> Iterator[SampleExporter]:
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=45))
    with SampleExporter(counters) as server:
        yield server


def _bill(app: App, exporter: SampleExporter) -> SourceConfig:
    """GIVEN source "demo", billed by the collector up to its watermark 10:49."""
    source = SourceConfig("demo", exporter.url, T0 + timedelta(minutes=1), max_window_seconds=3600)
    app.state.sources.put_source(source)
    run_until_caught_up(replace(app.billing_deps, clock=FakeClock(BILLED_AT)), "demo")
    assert app.state.sync.get_state("demo").last_completed_until == T0 + timedelta(minutes=49)
    return source


@pytest.fixture
def billed(ops: App, exporter: SampleExporter) -> SourceConfig:
    return _bill(ops, exporter)


def _event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def _invoke(handler: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
    response = handler.lambda_handler(event, FakeLambdaContext())
    assert response["isBase64Encoded"] is False
    return response["statusCode"], response["headers"], json.loads(response["body"])


def _with_body(name: str, document: object) -> dict[str, Any]:
    event = _event(name)
    event["body"], event["isBase64Encoded"] = json.dumps(document), False
    return event


def _changed_history(counters: SyntheticCounters) -> StaticHistory:
    """The exporter's history corrected: account 0's counter is 7000 bytes higher from 10:20."""
    snapshots = []
    for at, values in counters.history(BILLED_AT):
        if at >= T0 + timedelta(minutes=20):
            values[ACCOUNTS[0]] += 7_000
        snapshots.append((at, {"taken_at": rfc3339(at), "samples": [
            {"account_id": a, "total_bytes": v} for a, v in values.items()]}))
    return StaticHistory(snapshots)


# -- every event ------------------------------------------------------------------------------
def test_every_event_has_an_expected_answer() -> None:
    names = {p.stem for p in EVENTS.glob("api-*.json")}
    assert names == set(EXPECTED)
    for name in names:
        event = _event(name)
        assert event["version"] == "2.0" and event["requestContext"]["stage"] == "$default"
        assert event["rawPath"] == event["requestContext"]["http"]["path"]


def test_each_event_gets_its_documented_answer(
    handler: ModuleType, ops: App, billed: SourceConfig
) -> None:
    for name in sorted(EXPECTED):  # one billed table for all (billing takes a second on moto)
        audited = len(ops.state.reconciles.list_reconciles("demo", 100))

        status, headers, body = _invoke(handler, _event(name))

        expected_status, error_type = EXPECTED[name]
        assert status == expected_status, (name, body)
        assert headers["Content-Type"] == "application/json", name
        assert headers["Cache-Control"] == "no-store", name
        if error_type is not None:
            assert body["error"]["type"] == error_type and body["error"]["message"], name
        _response_schema(_event(name), status).validate(body)
        if name.startswith("api-reconcile"):  # a refusal runs, records and writes nothing
            recorded = len(ops.state.reconciles.list_reconciles("demo", 100)) - audited
            assert recorded == (1 if status == 200 else 0), name
    # the history has not changed: nothing to correct
    assert not [e for e in ops.ledger.export(LedgerFilter(source_id="demo"))
                if e.kind == "correction"]


# -- reconcile --------------------------------------------------------------------------------
def test_dry_run_then_confirm_records_the_signing_principal(
    handler: ModuleType, ops: App, exporter: SampleExporter, billed: SourceConfig
) -> None:
    # the history matches the ledger: nothing differs
    status, _, clean = _invoke(handler, _event("api-reconcile-dry-run"))
    assert status == 200 and clean["status"] == "ok" and clean["differences"] == []
    assert clean["requested_by"] == USER_ARN
    assert (clean["since"], clean["until"]) == ("2026-11-22T10:10:00Z", "2026-11-22T10:40:00Z")
    # WHEN the exporter's history changes
    assert isinstance(exporter.history, SyntheticCounters)
    exporter.history = _changed_history(exporter.history)
    _, _, dry = _invoke(handler, _event("api-reconcile-dry-run"))
    status, _, confirmed = _invoke(handler, _event("api-reconcile-confirm"))  # base64 body
    _, _, after = _invoke(handler, _event("api-reconcile-dry-run"))
    # THEN the dry run shows the corrected account's minutes, the confirm corrects them as the
    # role that signed it, and a dry run afterwards finds nothing
    assert dry["status"] == "differences" and dry["difference_count"] > 0
    assert {d["account_id"] for d in dry["differences"]} == {ACCOUNTS[0]}
    assert status == 200 and confirmed["status"] == "corrected"
    assert confirmed["requested_by"] == ROLE_ARN and confirmed["dry_run"] is False
    assert confirmed["corrections_written"] == dry["difference_count"]
    assert after["status"] == "ok" and after["difference_count"] == 0
    corrections = [e for e in ops.ledger.export(LedgerFilter(source_id="demo"))
                   if e.kind == "correction"]
    assert len(corrections) == confirmed["corrections_written"]
    assert {c.correction.reconcile_id for c in corrections if c.correction} == {
        confirmed["reconcile_id"]}
    audit = ops.state.reconciles.list_reconciles("demo", 10)
    assert [(r["requested_by"], r["dry_run"], r["status"]) for r in audit] == [
        (USER_ARN, True, "ok"), (ROLE_ARN, False, "corrected"),
        (USER_ARN, True, "differences"), (USER_ARN, True, "ok"),
    ]


def test_the_principal_comes_from_the_request_context_never_the_body(
    handler: ModuleType, ops: App, billed: SourceConfig
) -> None:
    event = _event("api-reconcile-dry-run")
    iam = event["requestContext"]["authorizer"]["iam"]
    del iam["userArn"]  # then callerId, then accountId
    _, _, by_caller = _invoke(handler, event)
    iam["callerId"] = ""
    _, _, by_account = _invoke(handler, event)
    status, _, refused = _invoke(handler, _event("api-reconcile-extra-field"))

    assert by_caller["requested_by"] == "AIDACKCEVSQ6C2EXAMPLE"
    assert by_account["requested_by"] == "111122223333"
    assert status == 400 and "requested_by" in refused["error"]["message"]
    assert {r["requested_by"] for r in ops.state.reconciles.list_reconciles("demo", 10)} == {
        "AIDACKCEVSQ6C2EXAMPLE", "111122223333"}


class JumpingClock(SystemClock):
    """Monotonic time that jumps 30 s at every reading, so the 20 s wait behind a held lease
    ends at once (the wall clock is the real one)."""

    def __init__(self) -> None:
        self.readings = 0

    def monotonic(self) -> float:
        self.readings += 1
        return time.monotonic() + 30.0 * self.readings


def test_a_confirm_on_a_busy_source_is_409_and_writes_nothing(
    handler: ModuleType, ops: App, billed: SourceConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = ops.state.sync.acquire_lease("demo", "collector-run", now=datetime.now(UTC),
                                        lease_seconds=60, margin_seconds=2)
    monkeypatch.setattr(handler, "_app", replace(ops, clock=JumpingClock()))
    monkeypatch.setattr("minutemeter.service.reconcile.LEASE_WAIT_SECONDS", 1.0)

    status, _, body = _invoke(handler, _event("api-reconcile-confirm"))

    assert status == 409 and body["error"]["type"] == "source_busy"
    assert "collector-run" in body["error"]["message"]
    assert ops.state.sync.get_lease("demo") == held
    # the attempt is on record (who, when, window), with nothing corrected
    (record,) = ops.state.reconciles.list_reconciles("demo", 5)
    assert record["status"] == "busy" and record["corrections_written"] == 0
    assert str(record["requested_by"]).startswith("arn:aws:")


def test_a_warm_container_reuses_one_app(
    handler: ModuleType, ops: App, billed: SourceConfig
) -> None:
    assert handler._app is None
    _invoke(handler, _event("api-status"))
    first = handler._app
    _invoke(handler, _event("api-reconcile-dry-run"))
    assert first is not None and handler._app is first


# -- sources, status, health ------------------------------------------------------------------
def test_a_source_shows_config_state_last_job_health_lease_and_history(
    handler: ModuleType, ops: App, billed: SourceConfig
) -> None:
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:minutemeter/demo-AbCdEf"
    ops.state.sources.put_source(replace(billed, token_secret=secret, lag_seconds=90))
    ops.state.sync.acquire_lease("demo", "collector-run", now=datetime.now(UTC), lease_seconds=60,
                                 margin_seconds=2)
    _invoke(handler, _event("api-reconcile-dry-run"))

    status, _, source = _invoke(handler, _event("api-source"))

    assert status == 200
    assert source["token_secret"] == secret  # the reference, never a token
    assert source["lag_seconds"] == 90  # the configured lag is not shadowed
    assert source["last_completed_until"] == "2026-11-22T10:49:00Z"
    assert source["watermark_lag_seconds"] > 3 * 86_400 - 3600
    assert source["last_job"]["status"] == "ok"
    assert source["health"]["status"] == "healthy"
    assert source["lease"]["holder"] == "collector-run"
    assert [j["job_id"] for j in source["recent_jobs"]] == [
        j["job_id"] for j in ops.state.sync.list_jobs("demo", 10)]
    assert [r["requested_by"] for r in source["recent_reconciles"]] == [USER_ARN]
    _, _, listing = _invoke(handler, _event("api-sources"))
    assert [s["source_id"] for s in listing["sources"]] == ["demo"]
    assert "recent_jobs" not in listing["sources"][0]
    _, _, status_doc = _invoke(handler, _event("api-status"))
    (entry,) = status_doc["sources"]
    assert entry["last_job"] == source["last_job"] and entry["health"] == source["health"]


def _healthz(handler: ModuleType) -> tuple[int, dict[str, Any]]:
    status, _, body = _invoke(handler, _event("api-healthz"))
    return status, body


def test_healthz_passes_fails_on_an_old_verdict_and_on_a_stale_source(
    handler: ModuleType, ops: App
) -> None:
    now = datetime.now(UTC)
    verdict = ClockVerdict(now - timedelta(seconds=60), "ok", Decimal("0.4"), Decimal("2.5"), 3)
    ops.state.verdicts.put_clock_verdict(verdict)
    start = now.replace(second=0, microsecond=0) + timedelta(hours=1)  # not due yet
    ops.state.sources.put_source(SourceConfig("later", "http://127.0.0.1:9", start))
    ops.state.sources.put_source(SourceConfig("off", "http://127.0.0.1:9", T0, enabled=False))

    status, healthy = _healthz(handler)
    assert status == 200 and healthy["ok"] is True and healthy["failing"] == []
    assert healthy["checks"]["tables"] == {"ok": True, "state": "ok", "ledger": "ok"}
    assert healthy["checks"]["clock_verdict"]["offset_ms"] == "0.4"
    assert healthy["checks"]["sources"] == {"ok": True, "checked": 1, "disabled": ["off"],
                                            "stale": []}

    ops.state.verdicts.put_clock_verdict(replace(verdict, measured_at=now - timedelta(seconds=901)))
    status, old = _healthz(handler)
    assert status == 503 and old["failing"] == ["clock_verdict"]

    # a source 16 minutes behind with lag 60 and max window 5 min: limit 60 + 900 s
    ops.state.verdicts.put_clock_verdict(verdict)
    behind = now.replace(second=0, microsecond=0) - timedelta(minutes=17)
    stale = SourceConfig("behind", "http://127.0.0.1:9", behind, max_window_seconds=300)
    assert stale_limit_seconds(stale) == 960
    ops.state.sources.put_source(stale)
    status, lagging = _healthz(handler)
    assert status == 503 and lagging["failing"] == ["sources"]
    (entry,) = lagging["checks"]["sources"]["stale"]
    assert entry["source_id"] == "behind" and entry["watermark"] is None
    assert entry["limit_seconds"] == 960 and entry["behind_seconds"] > 960
    _response_schema(_event("api-healthz"), 503).validate(lagging)


def test_missing_tables_answer_503_not_500(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    _environment(monkeypatch, handler)
    monkeypatch.setenv("MINUTEMETER_STATE_TABLE", "no-such-state")
    monkeypatch.setenv("MINUTEMETER_LEDGER_TABLE", "no-such-ledger")
    with mock_aws():
        status, _, body = _invoke(handler, _event("api-sources"))
        health_status, _, health = _invoke(handler, _event("api-healthz"))
        reconcile_status, _, refused = _invoke(handler, _event("api-reconcile-dry-run"))

    assert status == 503 and body["error"]["type"] == "store_unavailable"
    assert health_status == 503
    assert health["failing"] == ["tables", "clock_verdict", "sources"]
    assert "ResourceNotFoundException" in health["checks"]["tables"]["state"]
    assert reconcile_status == 503 and refused["error"]["type"] == "store_unavailable"


def test_an_unexpected_error_is_a_generic_500_and_logged(
    handler: ModuleType, ops: App, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom: internal detail")

    monkeypatch.setattr(handler, "status_document", broken)
    status, _, body = _invoke(handler, _event("api-status"))

    assert status == 500
    assert body == {"error": {"type": "internal_error", "message": (
        "internal error; see the function's logs (request id "
        "0d8f4c1e-2b3a-4c5d-8e9f-a0b1c2d3e4f5)")}}
    (record,) = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert record.levelname == "ERROR" and record.exc_info is not None
    assert str(record.exc_info[1]) == "boom: internal detail"


# -- DynamoDB Local ---------------------------------------------------------------------------
def test_reconcile_and_status_through_dynamodb_local(
    handler: ModuleType, ddb_local: DynamoDBLocal, exporter: SampleExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environ = _environment(monkeypatch, handler)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", ddb_local.endpoint)
    suffix = time.monotonic_ns()
    for name in ("MINUTEMETER_LEDGER_TABLE", "MINUTEMETER_STATE_TABLE"):
        environ[name] = f"{environ[name]}-{suffix}"
        monkeypatch.setenv(name, environ[name])
    environ["MINUTEMETER_COMMIT_CONCURRENCY"] = "4"
    monkeypatch.setenv("MINUTEMETER_COMMIT_CONCURRENCY", "4")
    app = bootstrap(load_settings(environ), session=boto3.session.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"))
    create_tables(app.dynamodb, ledger_table=environ["MINUTEMETER_LEDGER_TABLE"],
                  state_table=environ["MINUTEMETER_STATE_TABLE"])
    _bill(app, exporter)
    assert isinstance(exporter.history, SyntheticCounters)
    exporter.history = _changed_history(exporter.history)

    _, _, dry = _invoke(handler, _event("api-reconcile-dry-run"))
    _, _, confirmed = _invoke(handler, _event("api-reconcile-confirm"))
    _, _, status_doc = _invoke(handler, _event("api-status"))

    assert dry["status"] == "differences" and confirmed["status"] == "corrected"
    assert confirmed["corrections_written"] == dry["difference_count"] > 0
    assert [s["source_id"] for s in status_doc["sources"]] == ["demo"]
    assert [r["requested_by"] for r in app.state.reconciles.list_reconciles("demo", 5)] == [
        ROLE_ARN, USER_ARN]


# -- the CLI's client against the handler ------------------------------------------------------
SIGNER = Credentials("AKIDOPERATOR", "operator-secret", "operator-session-token")


@contextmanager
def function_url(handler: ModuleType) -> Iterator[str]:
    """A Function URL with AuthType AWS_IAM on 127.0.0.1: checks the SigV4 signature (service
    lambda, the SIGNER's keys) as Lambda does, answers 403 when it does not match, else turns
    the request into a payload 2.0 event for the handler."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not _signature_matches(self.command, self.path, headers, body):
                status, out = 403, {"Message": "Forbidden"}
                payload, content_type = json.dumps(out), "application/json"
            else:
                event = _event("api-status")
                event.update(rawPath=self.path, headers=headers, isBase64Encoded=False,
                             body=body.decode() if body else None)
                event["requestContext"]["http"].update(method=self.command, path=self.path)
                event["requestContext"]["authorizer"]["iam"].update(
                    accessKey=SIGNER.access_key, userArn=f"{USER_ARN}-via-url")
                response = handler.lambda_handler(event, FakeLambdaContext())
                status, payload = response["statusCode"], response["body"]
                content_type = response["headers"]["Content-Type"]
            encoded = payload.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()


def _signature_matches(method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
    found = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([a-z0-9-]+)/lambda/"
                         r"aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
                         headers.get("authorization", ""))
    if found is None or found[1] != SIGNER.access_key:
        return False
    signed = found[3].split(";")
    request = AWSRequest(method=method, url=f"http://{headers['host']}{path}", data=body,
                         headers={k: v for k, v in headers.items() if k in signed})
    request.context["timestamp"] = headers.get("x-amz-date", "")
    auth = SigV4Auth(SIGNER, "lambda", found[2])
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                              request)
    payload_ok = headers.get("x-amz-content-sha256") == hashlib.sha256(body).hexdigest()
    return payload_ok and expected == found[4]


def test_the_cli_client_talks_to_the_handler_through_a_signed_url(
    handler: ModuleType, ops: App, billed: SourceConfig
) -> None:
    session = boto3.session.Session(region_name="us-east-1")
    request = {"source_id": "demo", "since": "2026-11-22T10:10:00Z",
               "until": "2026-11-22T10:40:00Z", "dry_run": True}
    with function_url(handler) as url:
        status, result = call_reconcile(url, request, session=session, credentials=SIGNER)
        _, source = call_sources(url, "demo", session=session, credentials=SIGNER)
        health_status, health = call_health(url, session=session, credentials=SIGNER)
        with pytest.raises(RemoteInputError) as refused:
            call_reconcile(url, {**request, "until": "2026-11-22T12:00:00Z"}, session=session,
                           credentials=SIGNER)
        with pytest.raises(RemoteNotFoundError):
            call_sources(url, "ghost", session=session, credentials=SIGNER)
        with pytest.raises(RemoteAuthError):
            call_status(url, session=session,
                        credentials=Credentials(SIGNER.access_key, "wrong-secret"))

    assert status == 200 and result["status"] == "ok"
    assert result["requested_by"] == f"{USER_ARN}-via-url"
    assert source["source_id"] == "demo" and source["recent_reconciles"][0]["dry_run"] is True
    assert health_status == 503 and "clock_verdict" in health["failing"]
    assert refused.value.status == 422 and refused.value.error_type == "invalid_window"
    assert [r["requested_by"] for r in ops.state.reconciles.list_reconciles("demo", 5)] == [
        f"{USER_ARN}-via-url"]


# -- the OpenAPI document ---------------------------------------------------------------------
def _routes_of(handler: ModuleType) -> set[tuple[str, str]]:
    schema = handler.resolver.get_openapi_schema()
    return {(method.upper(), path) for path, item in schema.paths.items()
            for method in item.model_dump(exclude_none=True)}


def _documented_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in OPENAPI["paths"].items()
            for method in item if method in {"get", "post", "put", "patch", "delete"}}


def test_the_openapi_document_has_exactly_the_real_routes(handler: ModuleType) -> None:
    assert _documented_routes() == _routes_of(handler)
    # and the 405 table of the not-found handler knows the same routes
    known = {(method, path) for path, method in handler._ROUTES.items()}
    assert known | {("GET", "/sources/{source_id}"),
                    ("GET", "/accounts/{account_id}/usage")} == _routes_of(handler)


def test_the_openapi_error_types_and_statuses_match_the_error_table(handler: ModuleType) -> None:
    error_types = set(OPENAPI["components"]["schemas"]["Error"]["properties"]["error"][
        "properties"]["type"]["enum"])
    assert {error_type for _, error_type in handler.ERRORS.values()} <= error_types
    documented = {int(code) for code in OPENAPI["paths"]["/reconcile"]["post"]["responses"]}
    assert {status for status, _ in handler.ERRORS.values()} <= documented


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.startswith("api-reconcile")))
def test_event_bodies_validate_against_the_request_schema_exactly_when_well_formed(
    handler: ModuleType, name: str
) -> None:
    event = _event(name)
    body = event.get("body") or ""
    try:
        text = base64.b64decode(body, validate=True) if event["isBase64Encoded"] else body
        document = json.loads(text)
    except ValueError:
        document = None
    validator = _schema("ReconcileRequest")
    shape_ok = document is not None and validator.is_valid(document)
    # 400 and 413 are refusals of the shape (a 413 body may be well-formed JSON with padding);
    # every other answer had a body of the documented shape
    assert shape_ok == (EXPECTED[name][0] not in {400, 413}), name


def _openapi_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema: ``nullable: true`` becomes ``anyOf null``."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    converted = {k: _openapi_to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


_COMPONENTS = {"schemas": _openapi_to_json_schema(OPENAPI["components"]["schemas"])}


def _schema_of(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    root = {**_openapi_to_json_schema(schema), "components": _COMPONENTS}
    return jsonschema.Draft202012Validator(root)


def _schema(name: str) -> jsonschema.protocols.Validator:
    return _schema_of({"$ref": f"#/components/schemas/{name}"})


def _response_schema(event: dict[str, Any], status: int) -> jsonschema.protocols.Validator:
    """The documented schema of the answer ``status`` to ``event``'s route (Error for a route
    that does not exist)."""
    method, path = event["requestContext"]["http"]["method"].lower(), event["rawPath"]
    for template, item in OPENAPI["paths"].items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method in item:
            response = item[method]["responses"][str(status)]
            if "$ref" in response:
                response = OPENAPI["components"]["responses"][response["$ref"].split("/")[-1]]
            return _schema_of(copy.deepcopy(response["content"]["application/json"]["schema"]))
    return _schema("Error")


# -- hand-made events and echoed input ----------------------------------------------------------
def _without_request_context(event: dict[str, Any]) -> None:
    del event["requestContext"]


def _null_raw_path(event: dict[str, Any]) -> None:
    event["rawPath"] = None


def _headers_list(event: dict[str, Any]) -> None:
    event["headers"] = ["accept: application/json"]


def _headers_text(event: dict[str, Any]) -> None:
    event["headers"] = "accept: application/json"


def _null_http(event: dict[str, Any]) -> None:
    event["requestContext"]["http"] = None


def _method_number(event: dict[str, Any]) -> None:
    event["requestContext"]["http"]["method"] = 5


def _query_list(event: dict[str, Any]) -> None:
    event["queryStringParameters"] = ["a=1"]


@pytest.mark.parametrize("name", ["api-sources", "api-reconcile-dry-run"])
@pytest.mark.parametrize(
    "mutate",
    [_without_request_context, _null_raw_path, _headers_list, _headers_text, _null_http,
     _method_number, _query_list],
)
def test_a_hand_made_event_of_the_wrong_shape_is_a_400(
    handler: ModuleType, ops: App, name: str, mutate: Any
) -> None:
    event = _event(name)
    mutate(event)

    status, headers, body = _invoke(handler, event)

    assert status == 400 and headers["Content-Type"] == "application/json"
    assert body["error"]["type"] == "malformed_request" and body["error"]["message"]
    _schema("Error").validate(body)
    assert ops.state.reconciles.list_reconciles("demo", 5) == []


def test_an_event_that_is_not_an_object_is_a_400(handler: ModuleType) -> None:
    response = handler.lambda_handler([], FakeLambdaContext())
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["type"] == "malformed_request"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_long_path_is_not_echoed_whole(handler: ModuleType, ops: App, method: str) -> None:
    event = _event("api-source-unknown")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/sources/" + "x" * 100_000
    event["requestContext"]["http"]["method"] = method

    status, _, body = _invoke(handler, event)

    assert status == (404 if method == "GET" else 405)
    assert body["error"]["message"].count("x") <= 100
    assert len(body["error"]["message"]) < 200


def test_a_get_of_a_source_id_the_route_refuses_is_404(handler: ModuleType, ops: App) -> None:
    event = _event("api-source-unknown")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/sources/a\u0000b"

    status, _, body = _invoke(handler, event)

    assert status == 404 and body["error"]["type"] == "source_not_found"
