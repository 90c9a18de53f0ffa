"""Exporter bearer tokens from Secrets Manager or SSM Parameter Store, read once per container.

A source's ``token_secret`` is a reference, never the token: a Secrets Manager ARN
(``arn:aws:secretsmanager:...``) or an SSM parameter (``arn:aws:ssm:...:parameter/name`` or
``ssm:/name``). Tokens are never logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from minutemeter.domain.errors import ConfigError, ExporterError
from minutemeter.domain.model import SourceConfig

ClientFactory = Callable[[str], Any]


class SecretTokenLookup:
    """Resolves and caches tokens; clients are created on first use."""

    def __init__(self, client_factory: ClientFactory) -> None:
        self._client_factory = client_factory
        self._clients: dict[str, Any] = {}
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, source: SourceConfig) -> str | None:
        reference = source.token_secret
        if not reference:
            return None
        with self._lock:
            if reference not in self._cache:
                self._cache[reference] = self._resolve(reference)
            return self._cache[reference]

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._client_factory(service)
        return self._clients[service]

    def _resolve(self, reference: str) -> str:
        try:
            if reference.startswith("arn:aws:secretsmanager:"):
                secret = self._client("secretsmanager").get_secret_value(SecretId=reference)
                return str(secret["SecretString"])
            name = parameter_name(reference)
            parameter = self._client("ssm").get_parameter(Name=name, WithDecryption=True)
            return str(parameter["Parameter"]["Value"])
        except (ClientError, BotoCoreError) as exc:
            raise ExporterError(f"cannot read the exporter token {reference}: {exc}") from exc


def parameter_name(reference: str) -> str:
    """The SSM parameter name of ``arn:aws:ssm:...:parameter/x`` or ``ssm:/x``."""
    if reference.startswith("ssm:"):
        return reference[len("ssm:"):]
    if reference.startswith("arn:aws:ssm:") and ":parameter/" in reference:
        return "/" + reference.split(":parameter/", 1)[1]
    raise ConfigError(
        f"token secret must be a Secrets Manager ARN, an SSM parameter ARN or ssm:/name: "
        f"{reference!r}"
    )
