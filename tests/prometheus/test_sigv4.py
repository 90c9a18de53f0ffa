"""SigV4 for Amazon Managed Service for Prometheus, checked without AWS: a server on 127.0.0.1
recomputes each request's signature with botocore's own signer, from what it received and the
secret it knows, and answers 403 to a mismatch (as the service would)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from minutemeter.adapters.prometheus_auth import Authenticator, SigV4Signer
from minutemeter.adapters.prometheus_http import PrometheusHttp, PrometheusQueryError
from minutemeter.bootstrap import bootstrap
from minutemeter.domain.model import SourceAuth, SourceConfig, SourceKind, Window
from minutemeter.ports import CounterIdentity
from minutemeter.settings import Settings
from tests.prometheus.stub import Answer, Seen, StubPrometheus, json_answer, matrix
from tests.prometheus.support import prometheus_source

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
KEY, SECRET, TOKEN, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "tok", \
    "eu-west-1"
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)"
                   r"/(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), "
                   r"Signature=(?P<signature>[0-9a-f]{64})")


def verify(seen: Seen, host: str) -> str | None:
    """Why the request's signature is not the one botocore computes for it (None: valid)."""
    match = _AUTH.fullmatch(seen.headers.get("authorization", ""))
    if match is None:
        return "no SigV4 Authorization header"
    if (match["key"], match["region"], match["service"]) != (KEY, REGION, "aps"):
        return f"wrong scope {match['key']}/{match['region']}/{match['service']}"
    signed = match["signed"].split(";")
    request = AWSRequest(method=seen.method, url=f"http://{host}{seen.path}",
                         headers={name: seen.headers[name] for name in signed})
    request.context["timestamp"] = seen.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(KEY, SECRET, TOKEN), "aps", REGION)
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    if signer.signature(string_to_sign, request) != match["signature"]:
        return "signature mismatch"
    if seen.headers.get("x-amz-security-token") != TOKEN or "host" not in signed:
        return "token or host not signed"
    return None


def _client(secret: str, region: str | None = REGION) -> PrometheusHttp:
    def session() -> boto3.session.Session:
        return boto3.session.Session(aws_access_key_id=KEY, aws_secret_access_key=secret,
                                     aws_session_token=TOKEN, region_name=region)

    def no_token(source: SourceConfig) -> str | None:
        return None

    return PrometheusHttp(timeout_seconds=5, retries=0,
                          auth=Authenticator(no_token, SigV4Signer(session)))


def _signed_server() -> StubPrometheus:
    def respond(seen: Seen) -> Answer:
        problem = verify(seen, seen.headers["host"])
        if problem is not None:
            return json_answer(403, {"message": problem})
        return matrix([{"metric": {"bucket": "b"}, "values": [[1795341600, "5"]]}])

    return StubPrometheus(respond)


def _query(client: PrometheusHttp, url: str) -> tuple[str, list[object]]:
    source = prometheus_source("amp", url + "/workspaces/ws-1", T0, node_id="n1",
                               selector='bytes_total{bucket=~"a b|c&d"}', auth=SourceAuth.SIGV4)
    return client.query(source, 'bytes_total{bucket=~"a b|c&d"}[60000ms]', 1_795_341_659_999,
                        time_left=5.0, window=(T0, T0 + timedelta(minutes=1)))


def test_a_signed_query_passes_the_servers_own_check() -> None:
    with _signed_server() as stub:
        kind, result = _query(_client(SECRET), stub.url)
    assert kind == "matrix" and len(result) == 1
    assert stub.seen[0].path.startswith("/workspaces/ws-1/api/v1/query?")


def test_a_wrong_secret_is_refused_by_the_server() -> None:
    with _signed_server() as stub, pytest.raises(PrometheusQueryError) as raised:
        _query(_client("not-the-secret"), stub.url)
    assert raised.value.status == 403 and "signature mismatch" in str(raised.value)


def test_the_verifier_refuses_an_unsigned_request() -> None:
    assert verify(Seen("GET", "/api/v1/query?query=x", {"host": "h"}), "h") is not None


def test_the_wired_reader_signs_with_the_sessions_credentials_and_region() -> None:
    # GIVEN the app as bootstrap wires it, on a session with the stub's credentials and region
    session = boto3.session.Session(aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                                    aws_session_token=TOKEN, region_name=REGION)
    app = bootstrap(Settings(), session=session)

    def respond(seen: Seen) -> Answer:
        if verify(seen, seen.headers["host"]) is not None:
            return json_answer(403, {"message": "bad signature"})
        if "count_over_time" in seen.path:
            return json_answer(200, {"status": "success", "data": {
                "resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]}})
        return matrix([{"metric": {"bucket": "b"}, "values": [[T0.timestamp() + 1, "5"]]}])

    with StubPrometheus(respond) as stub:
        source = prometheus_source("amp", stub.url, T0, node_id="n1", selector="bytes_total",
                                   auth=SourceAuth.SIGV4)
        read = app.readers[SourceKind.PROMETHEUS].read(
            source, CounterIdentity(None, None), Window(T0, T0 + timedelta(minutes=1)),
            before_request=lambda: None, time_left=lambda: 10.0)
        batches = list(read)
    # THEN every request passed the server's check, and the sample came through
    assert len(stub.seen) == 2 and [len(b) for b in batches] == [1]
    assert read.node_id == "n1"
