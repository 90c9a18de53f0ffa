"""The sink registry (``sinks put``, ``sinks list``): what a registered sink must be.

A sink names where its API key is, never the key: a Secrets Manager secret ARN (what the
deployed SinkFunction may read: template parameter ``SinkApiKeySecretArns``) or the name of an
environment variable (for the CLI and local runs), exactly one of them.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from minutemeter.domain.delivery import SinkConfig
from minutemeter.domain.errors import InputError
from minutemeter.domain.text import shorten
from minutemeter.ports import DeliveryStore

_SINK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
MAX_METER_CHARS = 100
MAX_URL_CHARS = 2000
ECHO = 40  # characters of a bad value repeated in a message (it may be a pasted key)


def check_sink(sink: SinkConfig) -> SinkConfig:
    """``sink`` if it can be registered, else :class:`InputError` saying what to fix."""
    if _SINK_NAME.fullmatch(sink.name) is None:
        raise InputError(f"sink name must be 1-64 of A-Z a-z 0-9 _ . - starting alphanumeric, "
                         f"got {shorten(sink.name, ECHO)!r}")
    parts = urlsplit(sink.url)
    if (len(sink.url) > MAX_URL_CHARS or parts.scheme not in {"http", "https"}
            or not parts.hostname or any(c.isspace() for c in sink.url)):
        raise InputError(f"--url must be an http(s) URL with a host, got "
                         f"{shorten(sink.url, ECHO)!r}")
    if not sink.meter.strip() or len(sink.meter) > MAX_METER_CHARS:
        raise InputError(f"--meter must be 1-{MAX_METER_CHARS} characters")
    if (sink.api_key_secret is None) == (sink.api_key_env is None):
        raise InputError("give exactly one of --api-key-secret and --api-key-env")
    if sink.api_key_secret is not None and _SECRET_ARN.fullmatch(sink.api_key_secret) is None:
        raise InputError("--api-key-secret must be a Secrets Manager secret ARN "
                         "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME), not the key")
    if sink.api_key_env is not None and _ENV_NAME.fullmatch(sink.api_key_env) is None:
        raise InputError("--api-key-env must be an environment variable's name, not the key")
    return sink


def put_sink(store: DeliveryStore, sink: SinkConfig) -> SinkConfig:
    """Register (or replace) ``sink`` after :func:`check_sink`."""
    store.put_sink(check_sink(sink))
    return sink


def sink_document(sink: SinkConfig) -> dict[str, object]:
    """A sink as JSON: where its key is, never a key."""
    return {"name": sink.name, "kind": sink.kind.value, "url": sink.url, "meter": sink.meter,
            "value": sink.value.value, "api_key_secret": sink.api_key_secret,
            "api_key_env": sink.api_key_env}


_CUSTOMER = re.compile(r"[\x21-\x7e]{1,255}", re.ASCII)


def check_customer(customer: str | None) -> str | None:
    """A billing customer id (``profiles put --customer``): 1-255 printable ASCII characters
    without spaces (Stripe ``cus_...``, a Lago external subscription id); None stays None."""
    if customer is not None and _CUSTOMER.fullmatch(customer) is None:
        raise InputError("--customer must be 1-255 printable characters without spaces, got "
                         f"{shorten(customer, ECHO)!r}")
    return customer
