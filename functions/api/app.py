"""Operations API Lambda behind a Function URL with ``AuthType: AWS_IAM`` (docs/openapi.yaml).

Routes: ``POST /reconcile``, ``GET /sources``, ``GET /sources/{id}``, ``GET /status``,
``GET /healthz``. Each parses the request, calls one service function and maps its result or
its typed error to a response; errors are ``{"error": {"type", "message"}}`` with the status
from ``ERRORS`` (by exception type, the most specific class wins). Anything else is a 500
with a generic message; the exception is logged, never returned. An event that is not the
shape of a Function URL event (payload 2.0) is a 400 before any route runs. Caller input that an
error message repeats (a path, a source id) is cut to ``MAX_ECHO`` characters.

Statuses of ``POST /reconcile``: 200 with the reconcile result (its ``status`` says ok,
differences, corrected, partial or error); 400 a body that is not the documented shape
(including times that are not RFC 3339); 401 no IAM principal in the request context; 404
unknown source; 409 the source's lease stayed held (a collector or another reconcile);
413 a body over ``MAX_BODY_BYTES``; 422 a well-formed window that cannot be reconciled (not
whole minutes, ``since >= until``, over 31 days, before the source's start, beyond its
watermark); 503 DynamoDB failed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from minutemeter.adapters.system import LambdaBudget
from minutemeter.bootstrap import App, warm_app
from minutemeter.domain.errors import (
    InputError,
    LeaseHeldError,
    MinutemeterError,
    SourceDisabledError,
    SourceNotFoundError,
    StoreError,
)
from minutemeter.domain.registry import MAX_ECHO, SourceUnreadableError
from minutemeter.domain.text import shorten
from minutemeter.domain.timeutil import month_of, parse_month
from minutemeter.domain.validation import is_account_id
from minutemeter.json_values import to_json_text
from minutemeter.service.operations import (
    MalformedRequestError,
    check_health,
    reconcile_request_from_json,
    source_document,
    source_documents,
    status_document,
)
from minutemeter.service.reconcile import ReconcileRequest, reconcile
from minutemeter.service.sources import check_source_id
from minutemeter.service.statements import account_statement

MAX_BODY_BYTES = 16 * 1024
MAX_MESSAGE = 1000  # characters of an error message, whatever it repeats
RECENT = 10  # jobs and reconciles shown by GET /sources/{id}


def _body_text(document: Any) -> str:
    """A response body: compact JSON, times RFC 3339 to the second, Decimals as exact text."""
    return to_json_text(document, times="second")


logger = Logger()
resolver = LambdaFunctionUrlResolver(serializer=_body_text)
_app: App | None = None  # wired by the first invocation: bootstrap.warm_app


class PayloadTooLargeError(InputError):
    """The request body is over ``MAX_BODY_BYTES`` (decoded)."""


class AccountNotFoundError(MinutemeterError):
    """An account id that is not a UUID, or has neither a billing profile nor usage."""


class InvalidMonthError(InputError):
    """``month`` is not ``YYYY-MM``."""


class UnauthenticatedError(MinutemeterError):
    """No IAM principal in the request context (the URL is not AWS_IAM, or a hand-made event)."""


# exception type -> (HTTP status, error type); looked up along the exception's MRO
ERRORS: dict[type[Exception], tuple[int, str]] = {
    MalformedRequestError: (400, "malformed_request"),
    UnauthenticatedError: (401, "unauthenticated"),
    SourceNotFoundError: (404, "source_not_found"),
    AccountNotFoundError: (404, "account_not_found"),
    InvalidMonthError: (422, "invalid_month"),
    LeaseHeldError: (409, "source_busy"),
    SourceDisabledError: (409, "source_disabled"),
    PayloadTooLargeError: (413, "payload_too_large"),
    InputError: (422, "invalid_window"),
    StoreError: (503, "store_unavailable"),
    SourceUnreadableError: (500, "internal_error"),  # the stored record: `sources put` fixes it
}


# -- parsing (pure) -----------------------------------------------------------------------------
def decode_json_body(body: object, is_base64: object) -> object:
    """The JSON value of a Function URL body (base64 when ``is_base64``); strict JSON only:
    no NaN/Infinity, no duplicate keys. Raises :class:`PayloadTooLargeError` or
    :class:`MalformedRequestError`."""
    if body is None or body == "":
        raise MalformedRequestError("a JSON body is required")
    if not isinstance(body, str):
        raise MalformedRequestError("the body must be a string")
    if is_base64 is True:
        if len(body) > 4 * (MAX_BODY_BYTES // 3 + 1):  # refuse before decoding
            raise PayloadTooLargeError(f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedRequestError("the body is not valid base64") from exc
    else:
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant,
                          object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedRequestError("the body is not valid UTF-8 JSON") from exc


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key")
    return document


def parse_reconcile_request(body: object, is_base64: object, requested_by: str) -> ReconcileRequest:
    """``POST /reconcile``'s body as a request; raises the typed errors of ``ERRORS``."""
    return reconcile_request_from_json(decode_json_body(body, is_base64),
                                       requested_by=requested_by)


def event_shape_problem(event: object) -> str | None:
    """Why ``event`` is not a Function URL event (payload 2.0) the resolver can route, or None.

    What the resolver reads must be there with its type: ``requestContext.http.method`` and
    ``rawPath`` strings, ``headers`` and ``queryStringParameters`` objects of strings (or
    absent), ``cookies`` a list of strings (or absent)."""
    if not isinstance(event, dict):
        return "the event must be a JSON object"
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    if not isinstance(http, dict):
        return "the event has no requestContext.http object"
    if not isinstance(http.get("method"), str):
        return "requestContext.http.method must be a string"
    if not isinstance(event.get("rawPath"), str):
        return "rawPath must be a string"
    for name in ("headers", "queryStringParameters"):
        value = event.get(name)
        if value is not None and not _strings_by_string(value):
            return f"{name} must be an object of strings"
    cookies = event.get("cookies")
    if cookies is not None and not (
        isinstance(cookies, list) and all(isinstance(c, str) for c in cookies)
    ):
        return "cookies must be a list of strings"
    return None


def _strings_by_string(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def principal_of(event: object) -> str | None:
    """Who signed the request: ``requestContext.authorizer.iam`` userArn, else callerId, else
    accountId (what Lambda puts there for an AWS_IAM URL); None when there is none."""
    iam: object = event
    for key in ("requestContext", "authorizer", "iam"):
        iam = iam.get(key) if isinstance(iam, dict) else None
    if not isinstance(iam, dict):
        return None
    for key in ("userArn", "callerId", "accountId"):
        value = iam.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


# -- routes -------------------------------------------------------------------------------------
@resolver.post("/reconcile")
def post_reconcile() -> Response[Any]:
    event = resolver.current_event
    principal = principal_of(event.raw_event)
    if principal is None:
        raise UnauthenticatedError("no IAM principal in the request context")
    request = parse_reconcile_request(event.body, event.raw_event.get("isBase64Encoded"),
                                      principal)
    logger.append_keys(source_id=request.source_id, requested_by=principal)
    result = reconcile(warm_app(globals()).billing_deps, request,
                       budget=LambdaBudget(resolver.lambda_context))
    document = result.to_json()
    logger.info("reconcile finished", extra={
        k: document[k] for k in ("reconcile_id", "since", "until", "dry_run", "status",
                                 "difference_count", "corrections_written")})
    return _json(HTTPStatus.OK, document)


@resolver.get("/sources")
def get_sources() -> Response[Any]:
    app = warm_app(globals())
    return _json(HTTPStatus.OK, {"sources": source_documents(app.state, app.clock.now())})


@resolver.get("/sources/<source_id>")
def get_source(source_id: str) -> Response[Any]:
    try:
        check_source_id(source_id)
    except InputError:
        raise SourceNotFoundError(shorten(source_id, MAX_ECHO)) from None  # never registrable
    app = warm_app(globals())
    source = app.state.sources.get_source(source_id)
    return _json(HTTPStatus.OK, source_document(app.state, source, app.clock.now(),
                                                jobs=RECENT, reconciles=RECENT))


@resolver.get("/status")
def get_status() -> Response[Any]:
    app = warm_app(globals())
    return _json(HTTPStatus.OK, status_document(app.state, app.clock.now()))


@resolver.get("/accounts/<account_id>/usage")
def get_account_usage(account_id: str) -> Response[Any]:
    """The account's statement for ``?month=YYYY-MM`` (default: the current UTC month)."""
    app = warm_app(globals())
    if not is_account_id(account_id):
        raise AccountNotFoundError(f"no such account {shorten(account_id, MAX_ECHO)!r}")
    month_text = resolver.current_event.get_query_string_value("month")
    try:
        month = parse_month(month_text) if month_text else month_of(app.clock.now())
    except InputError as exc:
        raise InvalidMonthError(str(exc)) from None
    account = account_id.lower()
    statement = account_statement(app.ledger, app.state.sources, account, month)
    if statement.totals.entries == 0 and statement.totals.corrections == 0 and not (
        app.state.profiles.get_profiles([account])
    ):  # no usage that month and no billing profile: not an account we know
        raise AccountNotFoundError(f"no account {account} (no billing profile, no usage in "
                                   f"{month})")
    return _json(HTTPStatus.OK, statement.to_json())


@resolver.get("/healthz")
def get_healthz() -> Response[Any]:
    app = warm_app(globals())
    report = check_health(app.state, app.ledger, app.settings, app.clock.now())
    if not report.ok:
        logger.warning("unhealthy", extra={"failing": report.document["failing"]})
    status = HTTPStatus.OK if report.ok else HTTPStatus.SERVICE_UNAVAILABLE
    return _json(status, report.document)


# -- errors -------------------------------------------------------------------------------------
def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=document,
                    headers={"Cache-Control": "no-store", **(headers or {})})


def error_response(status: int, error_type: str, message: str,
                   headers: dict[str, str] | None = None) -> Response[Any]:
    return _json(status, error_document(error_type, message), headers)


def error_document(error_type: str, message: str) -> dict[str, Any]:
    """The error body; the message cut to ``MAX_MESSAGE`` characters."""
    return {"error": {"type": error_type, "message": shorten(message, MAX_MESSAGE)}}


def handle_known(exc: MinutemeterError) -> Response[Any]:
    for cls in type(exc).__mro__:
        if cls in ERRORS:
            status, error_type = ERRORS[cls]
            log = logger.warning if status >= 500 else logger.info
            log("request refused", extra={"status": status, "error_type": error_type})
            return error_response(status, error_type, str(exc))
    return handle_unexpected(exc)


def handle_unexpected(exc: Exception) -> Response[Any]:
    logger.exception("request failed", exc_info=exc)
    request_id = getattr(resolver.lambda_context, "aws_request_id", "unknown")
    return error_response(500, "internal_error",
                          f"internal error; see the function's logs (request id {request_id})")


# registered by call: the decorator form is untyped for mypy
resolver.exception_handler(MinutemeterError)(handle_known)
resolver.exception_handler(Exception)(handle_unexpected)

_ROUTES = {"/reconcile": "POST", "/sources": "GET", "/status": "GET", "/healthz": "GET"}
_SOURCE_PATH = re.compile(r"/sources/[^/]+")
_USAGE_PATH = re.compile(r"/accounts/[^/]+/usage")


@resolver.not_found
def handle_not_found(exc: Exception) -> Response[Any]:
    path = resolver.current_event.path
    allowed = _ROUTES.get(path) or (
        "GET" if _SOURCE_PATH.fullmatch(path) or _USAGE_PATH.fullmatch(path) else None)
    if allowed and resolver.current_event.http_method.upper() == allowed:
        # a GET of an id that the route's pattern refuses (a control character)
        if _USAGE_PATH.fullmatch(path):
            return error_response(404, "account_not_found", "no such account")
        return error_response(404, "source_not_found", "no such source")
    if allowed:
        return error_response(405, "method_not_allowed",
                              f"{shorten(path, MAX_ECHO)} takes {allowed}",
                              headers={"Allow": allowed})
    return error_response(404, "route_not_found", "no such route (see docs/openapi.yaml)")


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The Function URL entry point: a hand-made event of the wrong shape is a 400 here (the
    resolver would fail on it with a KeyError or TypeError)."""
    problem = event_shape_problem(event)
    if problem is not None:
        logger.info("request refused", extra={"status": 400, "error_type": "malformed_request",
                                               "reason": problem})
        return {
            "statusCode": 400,
            "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
            "body": _body_text(error_document("malformed_request", problem)),
            "isBase64Encoded": False,
        }
    return _resolve(event, context)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.LAMBDA_FUNCTION_URL,
                              log_event=False, clear_state=True)
def _resolve(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolver.resolve(event, context)
