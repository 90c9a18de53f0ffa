"""AWS and network failures as one line that names what to fix (the CLI's error boundary).

The adapters wrap botocore's exceptions in typed errors (``StoreError`` ``from`` the botocore
one); :func:`explain` looks through that chain, picks the botocore exception by type (never by
message text) and says what the operator should set, start or run.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ProxyConnectionError,
    SSOError,
    TokenRetrievalError,
)

from minutemeter.settings import Settings

CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
    "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "MissingAuthenticationToken",
})
PERMISSION_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def botocore_cause(exc: BaseException) -> BotoCoreError | ClientError | None:
    """The first botocore exception in ``exc``'s cause/context chain (itself included)."""
    for link in _chain(exc):
        if isinstance(link, (BotoCoreError, ClientError)):
            return link
    return None


def explain(exc: BotoCoreError | ClientError, settings: Settings | None = None) -> str:
    """One line: what failed and what to fix. ``settings`` names the tables in the hint."""
    if isinstance(exc, ClientError):
        return _client_error(exc, settings)
    if isinstance(exc, NoRegionError):
        return ("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in your "
                "AWS profile)")
    if isinstance(exc, NoCredentialsError):
        return ("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_PROFILE (aws configure, aws sso login); DynamoDB Local takes any pair")
    if isinstance(exc, PartialCredentialsError):
        return f"incomplete AWS credentials ({exc}): set both AWS_ACCESS_KEY_ID and " \
               "AWS_SECRET_ACCESS_KEY"
    if isinstance(exc, ProfileNotFound):
        return f"{exc}: check AWS_PROFILE and ~/.aws/config"
    if isinstance(exc, (SSOError, TokenRetrievalError)):
        return f"{exc}: run `aws sso login` for your profile"
    if isinstance(exc, CredentialRetrievalError):
        return f"{exc}: check the credential source of your AWS profile"
    if isinstance(exc, ProxyConnectionError):
        return f"cannot connect to the proxy {exc.kwargs.get('proxy_url', '?')}: check HTTPS_PROXY"
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return _unreachable(str(exc.kwargs.get("endpoint_url", "?")), "cannot connect to")
    if isinstance(exc, (ConnectionClosedError, HTTPClientError, ConnectionError)):
        url = exc.kwargs.get("endpoint_url")
        if url:
            return _unreachable(str(url), "no valid answer from")
        return f"AWS network error: {exc}: check the network and AWS_ENDPOINT_URL*"
    return f"AWS: {exc}"


def _client_error(exc: ClientError, settings: Settings | None) -> str:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "?")), str(error.get("Message", "")).rstrip(".")
    text = f"{exc.operation_name}: {code}: {message}"
    if code == "ResourceNotFoundException":
        tables = f" (now {settings.ledger_table}, {settings.state_table})" if settings else ""
        return (f"{text}: a table does not exist{tables}: run `minutemeter tables create` for a "
                "local DynamoDB, or name the deployed stack's tables with --stack NAME "
                "(MINUTEMETER_STACK) or MINUTEMETER_LEDGER_TABLE and MINUTEMETER_STATE_TABLE")
    if exc.operation_name == "DescribeStacks" and code in {"ValidationError",
                                                           "ValidationException"}:
        return f"{text}: check --stack (MINUTEMETER_STACK) and AWS_REGION"
    if code in CREDENTIAL_CODES:
        return (f"{text}: check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID; a session "
                "may have expired) and AWS_REGION")
    if code in PERMISSION_CODES:
        return (f"{text}: grant it to the IAM principal you run as "
                "(aws sts get-caller-identity), or use another AWS_PROFILE")
    return text


def _unreachable(url: str, what: str) -> str:
    host = urlsplit(url).hostname or ""
    if host in LOCAL_HOSTS:
        return (f"{what} {url}: start DynamoDB Local (or the local service) there, or fix "
                "AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL")
    return f"{what} {url}: check the network, AWS_REGION and any AWS_ENDPOINT_URL* variable"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__
