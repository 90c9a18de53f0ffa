"""How requests to a Prometheus source are authenticated (``SourceConfig.auth``).

- ``none``: nothing.
- ``bearer``: ``Authorization: Bearer <token>``, the token read through the same
  :class:`~minutemeter.adapters.secrets.SecretTokenLookup` as the exporter's (Secrets Manager or
  SSM, cached five minutes); it is never logged.
- ``sigv4``: AWS Signature Version 4 for service ``aps`` (Amazon Managed Service for
  Prometheus), computed by botocore's own :class:`~botocore.auth.SigV4Auth` with the standard
  credential chain and region (``AWS_REGION``/``AWS_DEFAULT_REGION`` or the profile's) of the
  session it is given. Credentials are frozen per request, so rotated (refreshable) ones are
  picked up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from minutemeter.domain.errors import ConfigError
from minutemeter.domain.model import SourceAuth, SourceConfig

SIGV4_SERVICE = "aps"

TokenLookup = Callable[[SourceConfig], str | None]
SessionFactory = Callable[[], Any]  # a boto3 Session (credentials and region), made on first use


class SigV4Signer:
    """Signs a GET of a full URL for service ``aps`` with the credentials and region of the
    session ``session_factory`` makes (once, on first use)."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self._session_factory = session_factory
        self._session: Any = None
        self._lock = threading.Lock()

    def headers(self, url: str) -> dict[str, str]:
        """The headers (``Authorization``, ``X-Amz-Date``, ``X-Amz-Security-Token`` with a
        session token) that sign ``GET url``; ``url`` must be sent exactly as given.
        Raises :class:`ConfigError` without credentials or a region."""
        with self._lock:
            if self._session is None:
                self._session = self._session_factory()
            session = self._session
        credentials = session.get_credentials()
        if credentials is None:
            raise ConfigError("--auth sigv4: no AWS credentials found (the standard chain)")
        region = session.region_name
        if not region:
            raise ConfigError("--auth sigv4: no AWS region (set AWS_REGION)")
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(credentials.get_frozen_credentials(), SIGV4_SERVICE, region).add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}


class Authenticator:
    """The auth headers of one request to a source, by ``source.auth``."""

    def __init__(self, token_lookup: TokenLookup, signer: SigV4Signer | None) -> None:
        self._token_lookup = token_lookup
        self._signer = signer

    def headers(self, source: SourceConfig, url: str) -> Mapping[str, str]:
        """Headers for ``GET url`` (the full URL, query included) to ``source``."""
        if source.auth is SourceAuth.SIGV4:
            if self._signer is None:
                raise ConfigError(f"source {source.source_id!r} uses --auth sigv4, which is "
                                  "not wired here")
            return self._signer.headers(url)
        token = self._token_lookup(source)  # bearer; none has no token_secret
        return {"Authorization": f"Bearer {token}"} if token else {}
