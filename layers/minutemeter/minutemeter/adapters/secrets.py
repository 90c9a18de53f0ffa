"""Exporter bearer tokens from Secrets Manager or SSM Parameter Store.

A source's ``token_secret`` is a reference, never the token: a Secrets Manager ARN
(``arn:<partition>:secretsmanager:...``) or an SSM parameter (``arn:<partition>:ssm:...:parameter/
name`` or ``ssm:/name``). Tokens are cached per container for ``max_age_seconds`` (so a rotated
token is picked up) and never logged; error messages do not repeat a malformed reference either,
in case someone pasted the token itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from minutemeter.domain.errors import ConfigError, ExporterError
from minutemeter.domain.model import SourceConfig
from minutemeter.domain.references import REFERENCE_HELP, classify_reference

ClientFactory = Callable[[str], Any]

def parameter_name(reference: str) -> str:
    """What GetParameter is asked for: the ARN of ``arn:...:parameter/x``, ``/x`` of ``ssm:/x``."""
    service, name = classify_reference(reference)
    if service != "ssm":
        raise ConfigError(REFERENCE_HELP)
    return name


class SecretTokenLookup:
    """Resolves and caches tokens; clients are created on first use."""

    def __init__(self, client_factory: ClientFactory, max_age_seconds: float = 300.0) -> None:
        self._client_factory = client_factory
        self._max_age = max_age_seconds
        self._clients: dict[str, Any] = {}
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, source: SourceConfig) -> str | None:
        reference = source.token_secret
        if not reference:
            return None
        with self._lock:
            cached = self._cache.get(reference)
            if cached is None or time.monotonic() - cached[1] > self._max_age:
                cached = (self._resolve(reference), time.monotonic())
                self._cache[reference] = cached
            return cached[0]

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._client_factory(service)
        return self._clients[service]

    def _resolve(self, reference: str) -> str:
        service, name = classify_reference(reference)
        try:
            if service == "secretsmanager":
                secret = self._client("secretsmanager").get_secret_value(SecretId=name)
                if "SecretString" not in secret:
                    raise ConfigError(
                        f"secret {reference} holds binary data; store the token as a string"
                    )
                return str(secret["SecretString"])
            parameter = self._client("ssm").get_parameter(Name=name, WithDecryption=True)
            return str(parameter["Parameter"]["Value"])
        except (ClientError, BotoCoreError) as exc:
            raise ExporterError(f"cannot read the exporter token {reference}: {exc}") from exc
