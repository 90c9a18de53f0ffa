"""The CLI's client for the deployed API (minutemeter.remote), against a real HTTP server on
127.0.0.1 that records what arrives: SigV4 for service ``lambda`` with the payload hash, session
tokens, the region, and a typed error for every non-2xx answer."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from minutemeter.domain.errors import InputError
from minutemeter.local.ddb import free_port
from minutemeter.remote import (
    RemoteAuthError,
    RemoteBusyError,
    RemoteError,
    RemoteInputError,
    RemoteNotFoundError,
    RemoteServerError,
    RemoteTransportError,
    call_health,
    call_reconcile,
    call_sources,
    call_status,
    reconcile_until_done,
    region_of,
)

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                          "FwoGZXIvYXdzEXAMPLESESSIONTOKEN")
REQUEST = {"source_id": "demo", "since": "2026-11-22T10:10:00Z",
           "until": "2026-11-22T10:40:00Z", "dry_run": True}
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    """Answers every request with the next of ``answers`` (or 200 ``{}``) and keeps it."""

    answers: list[tuple[int, bytes]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)

    def start(self) -> ThreadingHTTPServer:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append(Recorded(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length)))
                status, body = recorder.answers.pop(0) if recorder.answers else (200, b"{}")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        return server


@pytest.fixture
def server() -> Iterator[tuple[RecordingServer, str]]:
    recorder = RecordingServer()
    http = recorder.start()
    host, port = http.server_address[:2]
    yield recorder, f"http://{host!s}:{port}/"
    http.shutdown()
    http.server_close()


SESSION = boto3.session.Session(region_name="eu-west-1")


def _verify(recorded: Recorded, url: str, credentials: Credentials, region: str) -> None:
    """Recompute the signature from what arrived on the wire, as Lambda does."""
    match = AUTHORIZATION.fullmatch(recorded.headers["authorization"])
    assert match is not None, recorded.headers["authorization"]
    signed = match["signed"].split(";")
    request = AWSRequest(method=recorded.method, url=url.rstrip("/") + recorded.path,
                         data=recorded.body,
                         headers={k: v for k, v in recorded.headers.items() if k in signed})
    request.context["timestamp"] = recorded.headers["x-amz-date"]
    auth = SigV4Auth(credentials, "lambda", region)
    string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    assert auth.signature(string_to_sign, request) == match["signature"]


def test_a_reconcile_is_signed_for_lambda_with_token_and_payload_hash(
    server: tuple[RecordingServer, str],
) -> None:
    recorder, url = server
    recorder.answers.append((200, b'{"status": "ok"}'))

    status, document = call_reconcile(url, REQUEST, session=SESSION, credentials=CREDENTIALS)

    assert (status, document) == (200, {"status": "ok"})
    (sent,) = recorder.requests
    assert (sent.method, sent.path) == ("POST", "/reconcile")
    assert json.loads(sent.body) == REQUEST
    headers = sent.headers
    match = AUTHORIZATION.fullmatch(headers["authorization"])
    assert match is not None
    assert (match["key"], match["region"], match["service"]) == ("AKIDEXAMPLE", "eu-west-1",
                                                                 "lambda")
    assert re.fullmatch(r"\d{8}T\d{6}Z", headers["x-amz-date"])
    assert headers["x-amz-date"].startswith(match["date"])
    assert headers["x-amz-security-token"] == CREDENTIALS.token
    assert headers["x-amz-content-sha256"] == hashlib.sha256(sent.body).hexdigest()
    assert headers["content-type"] == "application/json"
    assert {"host", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256",
            "content-type"} <= set(match["signed"].split(";"))
    _verify(sent, url, CREDENTIALS, "eu-west-1")


def test_without_a_session_token_no_token_header_is_sent(
    server: tuple[RecordingServer, str],
) -> None:
    recorder, url = server
    plain = Credentials("AKIDPLAIN", "secret")

    call_status(url, session=SESSION, credentials=plain)

    (sent,) = recorder.requests
    assert (sent.method, sent.path, sent.body) == ("GET", "/status", b"")
    assert "x-amz-security-token" not in sent.headers
    assert "x-amz-security-token" not in sent.headers["authorization"]
    assert sent.headers["x-amz-content-sha256"] == hashlib.sha256(b"").hexdigest()
    assert "content-type" not in sent.headers
    _verify(sent, url, plain, "eu-west-1")


def test_credentials_come_from_the_default_chain(
    server: tuple[RecordingServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, url = server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-from-env")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")

    call_sources(url, "node-a.1")
    call_sources(url)

    first, second = recorder.requests
    assert (first.path, second.path) == ("/sources/node-a.1", "/sources")
    match = AUTHORIZATION.fullmatch(first.headers["authorization"])
    assert match is not None
    assert (match["key"], match["region"]) == ("AKIDFROMENV", "ap-southeast-2")
    assert first.headers["x-amz-security-token"] == "token-from-env"
    _verify(first, url, Credentials("AKIDFROMENV", "secret-from-env", "token-from-env"),
            "ap-southeast-2")


def test_the_region_comes_from_a_function_url_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.ap-southeast-2.on.aws/"
    assert region_of(url, SESSION) == "ap-southeast-2"
    assert region_of("http://127.0.0.1:9000", SESSION) == "eu-west-1"
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with pytest.raises(RemoteError, match="no AWS region"):
        region_of("http://127.0.0.1:9000", boto3.session.Session())


def _error(status: int, error_type: str | None = None, message: str = "why") -> bytes:
    if error_type is None:
        return json.dumps({"Message": message}).encode()
    return json.dumps({"error": {"type": error_type, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "error_class", "error_type"),
    [
        (400, _error(400, "malformed_request"), RemoteInputError, "malformed_request"),
        (413, _error(413, "payload_too_large"), RemoteInputError, "payload_too_large"),
        (422, _error(422, "invalid_window"), RemoteInputError, "invalid_window"),
        (401, _error(401, "unauthenticated"), RemoteAuthError, "unauthenticated"),
        (403, _error(403, None, "Forbidden"), RemoteAuthError, None),
        (404, _error(404, "source_not_found"), RemoteNotFoundError, "source_not_found"),
        (409, _error(409, "source_busy"), RemoteBusyError, "source_busy"),
        (429, _error(429, None, "Rate Exceeded."), RemoteServerError, None),
        (500, _error(500, "internal_error"), RemoteServerError, "internal_error"),
        (502, b"<html>Bad Gateway</html>", RemoteServerError, None),
        (503, _error(503, "store_unavailable"), RemoteServerError, "store_unavailable"),
        (418, b"{}", RemoteError, None),
        (200, b"not json", RemoteTransportError, None),
        (200, b"[1, 2]", RemoteTransportError, None),
    ],
)
def test_every_non_2xx_answer_is_a_typed_error(
    server: tuple[RecordingServer, str], status: int, body: bytes,
    error_class: type[RemoteError], error_type: str | None,
) -> None:
    recorder, url = server
    recorder.answers.append((status, body))

    with pytest.raises(error_class) as caught:
        call_reconcile(url, REQUEST, session=SESSION, credentials=CREDENTIALS)

    error = caught.value
    assert type(error) is error_class
    assert error.status == status and error.error_type == error_type
    assert isinstance(error, InputError) == (status in {400, 413, 422})  # the CLI's exit 2
    if body.startswith(b"{"):
        assert error.document == json.loads(body)
        assert ("why" in str(error)) or status in {403, 429, 418}


def test_no_answer_at_all_is_a_transport_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteTransportError, match="failed") as caught:
        call_status(url, session=SESSION, credentials=CREDENTIALS)
    assert caught.value.status is None


def test_an_unhealthy_answer_is_a_document_not_an_error(
    server: tuple[RecordingServer, str],
) -> None:
    recorder, url = server
    recorder.answers.append((503, b'{"ok": false, "failing": ["clock_verdict"]}'))

    status, document = call_health(url, session=SESSION, credentials=CREDENTIALS)

    assert (status, document["failing"]) == (503, ["clock_verdict"])
    assert recorder.requests[0].path == "/healthz"


def _partial(done: int, total: int, completed: str | None, status: str = "partial") -> bytes:
    return json.dumps({"status": status, "chunks_done": done, "chunks_total": total,
                       "completed_until": completed}).encode()


def test_a_confirm_is_called_again_while_it_ends_partial_and_moves(
    server: tuple[RecordingServer, str],
) -> None:
    recorder, url = server
    recorder.answers += [(200, _partial(2, 5, "2026-11-22T12:00:00Z")),
                         (200, _partial(2, 3, "2026-11-22T14:00:00Z")),
                         (200, _partial(1, 1, "2026-11-22T15:00:00Z", "corrected"))]
    seen: list[tuple[int, int]] = []

    final = reconcile_until_done(url, {**REQUEST, "dry_run": False}, session=SESSION,
                                 credentials=CREDENTIALS,
                                 progress=lambda done, total: seen.append((done, total)))

    assert final["status"] == "corrected" and len(recorder.requests) == 3
    assert seen == [(2, 5), (2, 3), (1, 1)]


@pytest.mark.parametrize(
    ("dry_run", "answers", "calls"),
    [
        (True, [_partial(2, 5, "2026-11-22T12:00:00Z")], 1),  # a dry run has no resume point
        (False, [_partial(0, 5, None)], 1),  # nothing done: stop
        (False, [_partial(1, 5, "2026-11-22T11:00:00Z"),
                 _partial(0, 4, "2026-11-22T11:00:00Z")], 2),  # no progress: stop
    ],
)
def test_a_partial_that_cannot_resume_is_returned(
    server: tuple[RecordingServer, str], dry_run: bool, answers: list[bytes], calls: int,
) -> None:
    recorder, url = server
    recorder.answers += [(200, a) for a in answers]
    final = reconcile_until_done(url, {**REQUEST, "dry_run": dry_run}, session=SESSION,
                                 credentials=CREDENTIALS)
    assert final["status"] == "partial" and len(recorder.requests) == calls
