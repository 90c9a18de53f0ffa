"""Exporter bearer tokens from Secrets Manager or SSM Parameter Store, through Powertools
Parameters (``SecretsProvider``, ``SSMProvider``).

A source's ``token_secret`` is a reference, never the token: a Secrets Manager ARN
(``arn:<partition>:secretsmanager:...``) or an SSM parameter (``arn:<partition>:ssm:...:parameter/
name`` or ``ssm:/name``). Each provider caches a value for ``max_age_seconds`` (300 s: a rotated
token is picked up within five minutes) per lookup object, i.e. per container; a failed read is
not cached. Tokens are never logged (Powertools Parameters logs no values) and error messages do
not repeat a malformed reference either, in case someone pasted the token itself. A binary
secret (``SecretBinary``) is refused: the token must be a string.

The max age is passed explicitly, so ``POWERTOOLS_PARAMETERS_MAX_AGE`` does not change it. The
cache's expiry is Powertools' own, on the wall clock (``datetime.now()`` in its ``base`` module):
not the injected :class:`~minutemeter.ports.Clock`, which is why tests move that clock there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
from aws_lambda_powertools.utilities.parameters.base import BaseProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from minutemeter.domain.errors import ConfigError, ExporterError, MinutemeterError
from minutemeter.domain.model import SourceConfig
from minutemeter.domain.references import REFERENCE_HELP, classify_reference

ClientFactory = Callable[[str], Any]
DEFAULT_MAX_AGE_SECONDS = 300


def parameter_name(reference: str) -> str:
    """What GetParameter is asked for: the ARN of ``arn:...:parameter/x``, ``/x`` of ``ssm:/x``."""
    service, name = classify_reference(reference)
    if service != "ssm":
        raise ConfigError(REFERENCE_HELP)
    return name


class SecretTokenLookup:
    """Resolves tokens through Powertools providers, one per service, each made on first use
    with a client from ``client_factory`` (``"secretsmanager"`` or ``"ssm"``)."""

    def __init__(self, client_factory: ClientFactory,
                 max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS) -> None:
        self._client_factory = client_factory
        self._max_age = int(max_age_seconds)
        self._providers: dict[str, BaseProvider] = {}
        self._lock = threading.Lock()

    def __call__(self, source: SourceConfig) -> str | None:
        """The source's token, or None when it has no ``token_secret``. Raises
        :class:`ConfigError` (a malformed reference, a binary secret) or :class:`ExporterError`
        (the service refused or failed; the message names the reference, never the token)."""
        reference = source.token_secret
        if not reference:
            return None
        return self.read(reference, what="exporter token", error=ExporterError)

    def read(self, reference: str, *, what: str,
             error: type[MinutemeterError] = ExporterError) -> str:
        """The string ``reference`` names (a Secrets Manager ARN or an SSM reference); a read
        that fails raises ``error`` naming ``what`` and the reference, never the value."""
        service, name = classify_reference(reference)
        with self._lock:  # providers and their caches are not thread-safe
            provider = self._provider(service)
            try:
                if isinstance(provider, SSMProvider):
                    value = provider.get(name, max_age=self._max_age, decrypt=True)
                else:
                    value = provider.get(name, max_age=self._max_age)
            except GetParameterError as exc:
                raise error(f"cannot read the {what} {reference}: {exc}") from exc
        if isinstance(value, bytes):
            raise ConfigError(f"secret {reference} holds binary data; store the {what} as a "
                              "string")
        return str(value)

    def _provider(self, service: str) -> BaseProvider:
        provider = self._providers.get(service)
        if provider is None:
            client = self._client_factory(service)
            provider = (SecretsProvider(boto3_client=client) if service == "secretsmanager"
                        else SSMProvider(boto3_client=client))
            self._providers[service] = provider
        return provider
