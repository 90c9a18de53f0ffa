"""The CLI's client for the deployed operations API (a Function URL with ``AuthType: AWS_IAM``).

Requests are signed with botocore's ``SigV4Auth`` for service ``lambda``: the region comes from
the URL (``https://<id>.lambda-url.<region>.on.aws``) or else the session, the credentials from
the session (the default chain: environment, profile, SSO, instance role). The body's SHA-256
goes in ``X-Amz-Content-SHA256`` and is signed, as Function URLs require for a POST. The
caller needs ``lambda:InvokeFunctionUrl`` (and, for URLs created since October 2025,
``lambda:InvokeFunction``) on the function.

A 2xx answer returns ``(status, document)``; any other raises a :class:`RemoteError` subclass
chosen by status (the API's own ``{"error": {"type", "message"}}`` is kept on it). A
:class:`RemoteInputError` is an :class:`InputError`, so the CLI treats it like a bad flag.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from minutemeter.domain.errors import InputError, MinutemeterError

SERVICE = "lambda"
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 330.0  # longer than the function's timeout (template: 300 s)
USER_AGENT = "minutemeter-remote/0.1"
_URL_REGION = re.compile(r"\.lambda-url\.([a-z0-9-]+)\.on\.aws$", re.ASCII)

Document = dict[str, Any]
Progress = Callable[[int, int], None]


class RemoteError(MinutemeterError):
    """The API did not answer with a 2xx. ``status`` is None when no HTTP answer came."""

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None,
                 document: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.document = document


class RemoteInputError(RemoteError, InputError):
    """400, 413 or 422: the request was refused as invalid."""


class RemoteAuthError(RemoteError):
    """401 or 403: not signed, wrong credentials, or no invoke permission on the URL."""


class RemoteNotFoundError(RemoteError):
    """404: unknown source, or a URL that is not the operations API."""


class RemoteBusyError(RemoteError):
    """409: the source's lease stayed held (a collector or another reconcile is running)."""


class RemoteServerError(RemoteError):
    """5xx (including 503 from a failing store), or 429 throttling: worth retrying later."""


class RemoteTransportError(RemoteError):
    """No usable answer: connection failure, timeout, or a body that is not JSON."""


_BY_STATUS: dict[int, type[RemoteError]] = {
    400: RemoteInputError, 413: RemoteInputError, 422: RemoteInputError,
    401: RemoteAuthError, 403: RemoteAuthError,
    404: RemoteNotFoundError, 409: RemoteBusyError, 429: RemoteServerError,
}


def region_of(url: str, session: boto3.session.Session | None = None) -> str:
    """The signing region: from a Function URL host, else the session's; raises RemoteError."""
    host = urlsplit(url).hostname or ""
    match = _URL_REGION.search(host)
    if match:
        return match.group(1)
    region = (session or boto3.session.Session()).region_name
    if not region:
        raise RemoteError(f"no AWS region for {url}: set AWS_REGION (or use the Function URL)")
    return region


Signing = Credentials | ReadOnlyCredentials


def signed_request(
    method: str, url: str, body: bytes, credentials: Signing, region: str
) -> AWSRequest:
    """An ``AWSRequest`` signed with SigV4 for service ``lambda`` (payload hash included)."""
    headers = {
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
        "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(),
    }
    if body:
        headers["Content-Type"] = "application/json"
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return request


def call(
    method: str,
    base_url: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    *,
    session: boto3.session.Session | None = None,
    credentials: Credentials | None = None,
    accept: Iterable[int] = (),
    timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
) -> tuple[int, Document]:
    """Send one signed request to ``base_url`` + ``path``; ``(status, JSON document)``.

    Statuses in ``accept`` (besides 2xx) are answers, not errors (``/healthz``'s 503).
    """
    url = base_url.rstrip("/") + path
    session = session or boto3.session.Session()
    signing: Signing
    if credentials is None:
        found = session.get_credentials()
        if found is None:
            raise RemoteAuthError("no AWS credentials found (the default chain is empty)")
        signing = found.get_frozen_credentials()  # one consistent set for this request
    else:
        signing = credentials
    data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
    signed = signed_request(method, url, data, signing, region_of(base_url, session))
    try:
        response = requests.request(method, url, data=data or None, timeout=timeout,
                                    headers=dict(signed.headers.items()), allow_redirects=False)
    except requests.ConnectionError as exc:  # refused, unresolvable, connect timeout: one line
        raise RemoteTransportError(
            f"{method} {url} failed: cannot connect ({type(exc).__name__}); check the URL "
            "(--url, or the stack's ApiFunctionUrl output) and the network") from exc
    except requests.RequestException as exc:
        raise RemoteTransportError(f"{method} {url} failed: {exc}") from exc
    try:
        document = response.json()
    except ValueError:
        document = None
    status = response.status_code
    if 200 <= status < 300 or status in set(accept):
        if not isinstance(document, dict):
            raise RemoteTransportError(f"{method} {url}: {status} without a JSON object",
                                       status=status)
        return status, document
    raise _error(method, url, status, document)


def _error(method: str, url: str, status: int, document: object) -> RemoteError:
    error_type, message = None, None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):  # the API's own error document
            error_type, message = error.get("type"), error.get("message")
        elif isinstance(document.get("Message"), str):  # Lambda's: {"Message": "Forbidden"}
            message = document["Message"]
    cls = _BY_STATUS.get(status, RemoteServerError if status >= 500 else RemoteError)
    text = f"{method} {url}: {status}" + (f" {error_type}" if error_type else "")
    return cls(f"{text}: {message or 'no error message'}", status=status,
               error_type=str(error_type) if error_type else None, document=document)


# -- the routes ---------------------------------------------------------------------------------
def call_reconcile(
    url: str, request_dict: Mapping[str, Any], *, session: boto3.session.Session | None = None,
    credentials: Credentials | None = None,
) -> tuple[int, Document]:
    """``POST /reconcile`` with ``{source_id, since, until, dry_run}``: the reconcile result."""
    return call("POST", url, "/reconcile", request_dict, session=session,
                credentials=credentials)


def reconcile_until_done(
    url: str, request_dict: Mapping[str, Any], *, session: boto3.session.Session | None = None,
    credentials: Credentials | None = None, progress: Progress | None = None,
    max_calls: int = 100,
) -> Document:
    """:func:`call_reconcile`, called again while a confirmed reconcile ends ``partial`` and
    moves on (it resumes server-side). A dry run is called once: it has no resume point.
    ``progress(done, total)`` gets the chunks of the latest call."""
    document: Document = {}
    completed: object = None
    for _ in range(max_calls):
        _, document = call_reconcile(url, request_dict, session=session, credentials=credentials)
        if progress is not None:
            progress(int(document.get("chunks_done", 0)), int(document.get("chunks_total", 0)))
        moved = document.get("completed_until") != completed
        completed = document.get("completed_until")
        if document.get("status") != "partial" or request_dict.get("dry_run") or not moved:
            break
    return document


def call_sources(
    url: str, source_id: str | None = None, *, session: boto3.session.Session | None = None,
    credentials: Credentials | None = None,
) -> tuple[int, Document]:
    """``GET /sources`` or ``GET /sources/{id}``."""
    path = "/sources" if source_id is None else f"/sources/{quote(source_id, safe='')}"
    return call("GET", url, path, session=session, credentials=credentials)


def call_status(
    url: str, *, session: boto3.session.Session | None = None,
    credentials: Credentials | None = None,
) -> tuple[int, Document]:
    """``GET /status``."""
    return call("GET", url, "/status", session=session, credentials=credentials)


def call_health(
    url: str, *, session: boto3.session.Session | None = None,
    credentials: Credentials | None = None,
) -> tuple[int, Document]:
    """``GET /healthz``: ``(200, ...)`` healthy or ``(503, ...)`` with the failing checks."""
    return call("GET", url, "/healthz", session=session, credentials=credentials, accept=(503,))
