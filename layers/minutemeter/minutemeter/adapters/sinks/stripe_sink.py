"""The Stripe sink: Billing Meter Events through the official ``stripe`` library (v16).

One ``POST /v1/billing/meter_events`` per event
(https://docs.stripe.com/api/billing/meter-event/create):

=====================================  ==================================================
``identifier``                         the ledger id (unique within a rolling 24 hours)
``event_name``                         ``SinkConfig.meter``
``payload[stripe_customer_id]``        ``DeliveryEvent.customer`` (profile ``--customer``)
``payload[value]``                     the value, a whole number as a string (signed)
``timestamp``                          the entry's minute, epoch seconds
=====================================  ==================================================

The meter must aggregate with ``sum`` and keep the default payload keys (``stripe_customer_id``,
``value``).

**Negative corrections** are sent as what they are: a compensating meter event with a negative
``value`` and the correction's own ledger id as ``identifier``. Stripe documents that the value
"only accepts whole number values" and that "if the overall cycle usage is negative, Stripe
reports the invoice line item usage quantity as 0"
(https://docs.stripe.com/billing/subscriptions/usage-based/recording-usage-api), and that
incorrectly recorded usage can be fixed "by recording negative quantities"
(https://docs.stripe.com/billing/subscriptions/usage-based/meters/configure). A meter event
adjustment (``POST /v1/billing/meter_event_adjustments``, ``type=cancel``) is not used: it
cancels a whole event, only within 24 hours of Stripe receiving it
(https://docs.stripe.com/api/billing/meter-event-adjustment/create), while a correction is a
delta that usually comes later than that.

**Answers** (``SendStatus``):

- 200: ACCEPTED.
- 400 ``invalid_request_error`` "An event already exists with identifier ...": DUPLICATE (Stripe
  refuses a known identifier within its window rather than dropping it silently; it gives no
  error code for it, so the message is matched, as every public client does; observed in
  https://github.com/langfuse/langfuse/pull/16292). The identifier is the ledger id, so Stripe
  holding it means the entry was delivered.
- any other 400/402/422 (timestamp outside 35 days back / 5 minutes ahead, unknown customer or
  meter, bad value): REJECTED, ``detail`` = the error code (or type) and param.
- 429 (the endpoint allows 1,000 calls per second and one concurrent call per customer and
  meter; "monitor for 429 status codes", recording-usage-api above): RETRY, ``retry_after`` from
  ``Retry-After`` when present; the rest of the batch is not sent (RETRY, ``not_sent``).
- 401/403/404/409: RETRY (the request was refused before anything was recorded: a wrong key or
  URL is fixed by the operator, then the entry is sent again).
- refused connection or connect timeout: RETRY (nothing reached Stripe); the rest is not sent.
- read timeout, a connection broken after sending, 5xx: UNKNOWN (Stripe may have recorded it).

**Retries.** The library's own retries are off (``max_network_retries=0``, the default made
explicit): the delivery service decides, from the records it keeps, whether an unknown outcome
may be resent inside the 24-hour window. The HTTP client is the library's ``RequestsClient``
with ``(connect_timeout, timeout)`` seconds. The library's random ``Idempotency-Key`` on each
POST is left as it is: Stripe replays the first answer to a key "including 500 errors"
(https://docs.stripe.com/api/idempotent_requests), so a key derived from the ledger id would
turn one 500 into 24 hours of 500s; the ``identifier`` is what dedups.

The API key lives only inside the ``StripeClient``; no ``detail``, log line or exception text
written here contains it (Stripe's own messages are never copied: a 401 message quotes part of
the key).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import requests
import stripe
from stripe.params.billing import MeterEventCreateParams
from urllib3.exceptions import NewConnectionError

from minutemeter.domain.delivery import (
    DeliveryEvent,
    SendResult,
    SendStatus,
    SinkConfig,
    SinkKind,
)

logger = logging.getLogger(__name__)

DEDUP_WINDOW = timedelta(hours=24)
DUPLICATE_MESSAGE = "An event already exists with identifier"
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 3.05
_REFUSED_STATUSES = frozenset({401, 403, 404, 409})


class StripeSink:
    """:class:`minutemeter.ports.Sink` for Stripe Billing Meter Events."""

    def __init__(
        self,
        config: SinkConfig,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        max_retries: int = 0,
    ) -> None:
        if config.kind is not SinkKind.STRIPE:
            raise ValueError(f"sink {config.name} is not a Stripe sink")
        self.config = config
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": config.url},
            max_network_retries=max_retries,
            http_client=stripe.RequestsClient(timeout=(connect_timeout, timeout)),
        )

    @property
    def dedup_window(self) -> timedelta | None:
        return DEDUP_WINDOW

    def send(self, events: Sequence[DeliveryEvent]) -> list[SendResult]:
        """One request per event, in order. After a RETRY answer (429, 401/403/404/409) or a
        transport failure (refused, timed out) the remaining events are not sent: RETRY,
        ``not_sent``, with the same ``retry_after``."""
        results: list[SendResult] = []
        halted: SendResult | None = None
        for event in events:
            if halted is not None:
                results.append(SendResult(event.ledger_id, SendStatus.RETRY, "not_sent",
                                          halted.retry_after))
                continue
            result, halt = self._send_one(event)
            results.append(result)
            if halt:
                halted = result
        return results

    def lookup(self, event: DeliveryEvent) -> bool | None:
        """Stripe cannot be asked about one meter event: always None."""
        return None

    def _send_one(self, event: DeliveryEvent) -> tuple[SendResult, bool]:
        params: MeterEventCreateParams = {
            "event_name": self.config.meter,
            "identifier": event.ledger_id,
            "payload": {"stripe_customer_id": event.customer, "value": str(event.value)},
            "timestamp": int(event.timestamp.timestamp()),
        }
        try:
            self._client.v1.billing.meter_events.create(params)
        except stripe.APIConnectionError as error:
            result = _connection_result(event.ledger_id, error)
            logger.warning("stripe sink %s: %s for %s", self.config.name, result.detail,
                           event.ledger_id)
            return result, True
        except stripe.StripeError as error:
            result = _answer_result(event.ledger_id, error)
            if result.status is not SendStatus.DUPLICATE:
                logger.warning("stripe sink %s: HTTP %s %s for %s", self.config.name,
                               error.http_status, result.detail, event.ledger_id)
            return result, result.status is SendStatus.RETRY
        return SendResult(event.ledger_id, SendStatus.ACCEPTED), False


def _answer_result(ledger_id: str, error: stripe.StripeError) -> SendResult:
    """What an HTTP answer with an error means (never copies Stripe's message)."""
    status = error.http_status or 0
    raw = error.json_body.get("error") if isinstance(error.json_body, dict) else None
    body: dict[str, object] = raw if isinstance(raw, dict) else {}
    kind = str(body.get("type") or "api_error")
    code = error.code or (str(body["code"]) if body.get("code") else None)
    param = str(body["param"]) if body.get("param") else None
    if status == 429 or isinstance(error, stripe.RateLimitError):
        return SendResult(ledger_id, SendStatus.RETRY, "rate_limit",
                          _retry_after((error.headers or {}).get("Retry-After")))
    if status >= 500 or status < 400:
        return SendResult(ledger_id, SendStatus.UNKNOWN, f"http_{status}")
    if status in _REFUSED_STATUSES:
        return SendResult(ledger_id, SendStatus.RETRY, f"http_{status}:{code or kind}")
    if status == 400 and DUPLICATE_MESSAGE in (error.user_message or ""):
        return SendResult(ledger_id, SendStatus.DUPLICATE, "identifier_exists")
    detail = code or kind
    text = f"{detail}:{param}" if param else detail
    return SendResult(ledger_id, SendStatus.REJECTED, text[:200])


def _connection_result(ledger_id: str, error: stripe.APIConnectionError) -> SendResult:
    """RETRY when the request certainly never reached Stripe, else UNKNOWN."""
    cause = error.__cause__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return SendResult(ledger_id, SendStatus.RETRY, "connect_timeout")
    if isinstance(cause, requests.exceptions.ReadTimeout):
        return SendResult(ledger_id, SendStatus.UNKNOWN, "read_timeout")
    if isinstance(cause, requests.exceptions.ConnectionError) and _never_connected(cause):
        return SendResult(ledger_id, SendStatus.RETRY, "connection_refused")
    return SendResult(ledger_id, SendStatus.UNKNOWN, type(cause or error).__name__)


def _never_connected(error: BaseException) -> bool:
    """Whether a ``requests`` connection error happened while connecting (nothing was sent):
    urllib3 wraps that as ``NewConnectionError`` (refused, unreachable, DNS)."""
    pending: list[BaseException] = [error]
    visited: set[int] = set()
    while pending:
        item = pending.pop()
        if id(item) in visited:
            continue
        visited.add(id(item))
        if isinstance(item, NewConnectionError | ConnectionRefusedError):
            return True
        pending.extend(arg for arg in item.args if isinstance(arg, BaseException))
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
    return False


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds form only), or None."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None
