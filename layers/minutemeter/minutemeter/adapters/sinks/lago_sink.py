"""The Lago sink: usage events through the official ``lago-python-client`` (1.x).

Each event (https://getlago.com/docs/api-reference/events/usage):

==============================  =======================================================
``transaction_id``              the ledger id (Lago keeps it unique, for ever)
``external_subscription_id``    ``DeliveryEvent.customer`` (profile ``--customer``)
``code``                        ``SinkConfig.meter``: the billable metric's code
``timestamp``                   the entry's minute, epoch seconds
``properties``                  ``{"bytes": value}`` (:data:`LAGO_PROPERTY`)
==============================  =======================================================

The billable metric must be ``aggregation_type: sum_agg`` with ``field_name: "bytes"``
(https://getlago.com/docs/guide/billable-metrics/aggregation-types/sum), charged in arrears (not
pay in advance).

**Negative corrections** are events like any other, with a negative ``bytes``: ``sum_agg`` adds
them up, and Lago floors a period's total at 0 (``BillableMetrics::Aggregations::BaseService``
in getlago/lago-api). A pay-in-advance charge would not refund them, hence "in arrears".

**Batches.** Several events go to ``POST /api/v1/events/batch`` in chunks of at most
:data:`MAX_BATCH` = 100 (https://getlago.com/docs/api-reference/events/batch). Lago inserts a
batch all or nothing (``Events::CreateBatchService``): a ``transaction_id`` it already has rolls
the whole batch back and answers 422 with the errors keyed by index, ``{"3": {"transaction_id":
["value_already_exist"]}}``. Those events are DUPLICATE, events with other errors REJECTED, and
the rest (not stored) are sent again as a smaller batch. When the 422 cannot be read per index,
every event of the chunk is sent on its own. A single event uses ``POST /api/v1/events``.

**Answers** (``SendStatus``): 2xx ACCEPTED; 422 ``transaction_id: value_already_exist``
DUPLICATE (delivered: the ledger id is the transaction id); other 4xx REJECTED with the error
codes; 401/403/404 RETRY (refused before anything was stored: a wrong key or URL); 429 RETRY
with ``retry_after`` from ``x-ratelimit-reset``; a refused connection, a connect or pool
timeout RETRY; a read/write timeout, a broken connection after sending, 5xx UNKNOWN (ask
:meth:`LagoSink.lookup`).

**Retries and timeouts.** The client takes ``max_retries=0, retry_on_rate_limit=False``, but
lago-python-client 1.55 applies them only to reads: ``events.create`` and
``events.batch_create`` always use the library's default rate-limit retry (up to 3 retries of a
429, waiting ``x-ratelimit-reset`` or 1, 2, 4 s, at most 20 s each). That retry is safe (a 429
stores nothing); it only costs time. ``timeout`` applies to single creates and to lookups;
``events.batch_create`` accepts no timeout, so a batch uses httpx's default of 5 s.

``dedup_window`` is None: Lago refuses a known ``transaction_id`` whenever it comes (with its
ClickHouse event store it answers 200 instead and collapses the copy, same transaction id and
timestamp, in the ``ReplacingMergeTree`` ``events_enriched``). With
Lago's ClickHouse event store, ``GET /api/v1/events/{transaction_id}`` sees an event only once
it is ingested, so a False from :meth:`LagoSink.lookup` moments after a send is not final.

The API key lives only inside the Lago client; no ``detail``, log line or exception text
written here contains it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from urllib.parse import quote

import httpx
import pydantic.v1
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError, LagoRateLimitError
from lago_python_client.models.event import BatchEvent, Event

from minutemeter.domain.delivery import (
    DeliveryEvent,
    SendResult,
    SendStatus,
    SinkConfig,
    SinkKind,
)

logger = logging.getLogger(__name__)

LAGO_PROPERTY = "bytes"
"""The event property the billable metric sums (``field_name``)."""
MAX_BATCH = 100
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 3.05
ALREADY_EXISTS = "value_already_exist"
_REFUSED_STATUSES = frozenset({401, 403, 404})
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class LagoSink:
    """:class:`minutemeter.ports.Sink` for Lago events."""

    def __init__(
        self,
        config: SinkConfig,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        max_batch: int = MAX_BATCH,
        field_name: str = LAGO_PROPERTY,
    ) -> None:
        if config.kind is not SinkKind.LAGO:
            raise ValueError(f"sink {config.name} is not a Lago sink")
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be 1..{MAX_BATCH}")
        self.config = config
        self.max_batch = max_batch
        self.field_name = field_name
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._client = Client(
            api_key=api_key, api_url=config.url, max_retries=0, retry_on_rate_limit=False
        )

    @property
    def dedup_window(self) -> timedelta | None:
        return None

    def send(self, events: Sequence[DeliveryEvent]) -> list[SendResult]:
        """Chunks of at most ``max_batch``; one result per event, in order."""
        results: list[SendResult] = []
        for start in range(0, len(events), self.max_batch):
            results.extend(self._send_chunk(list(events[start:start + self.max_batch])))
        return results

    def lookup(self, event: DeliveryEvent) -> bool | None:
        """``GET /api/v1/events/{transaction_id}``: True (found), False (404), None (no
        answer)."""
        try:
            # The library types ``find``'s self as a protocol its EventClient does not declare.
            self._client.events.find(  # type: ignore[misc]
                quote(event.ledger_id, safe=""), timeout=self._timeout
            )
        except LagoApiError as error:
            if error.status_code == 404:
                return False
            logger.warning("lago sink %s: lookup HTTP %s", self.config.name, error.status_code)
            return None
        except (httpx.HTTPError, pydantic.v1.ValidationError) as error:
            logger.warning("lago sink %s: lookup %s", self.config.name, type(error).__name__)
            return None
        return True

    # -- sending -----------------------------------------------------------------------------
    def _event(self, event: DeliveryEvent) -> Event:
        return Event(
            transaction_id=event.ledger_id,
            external_subscription_id=event.customer,
            code=self.config.meter,
            timestamp=int(event.timestamp.timestamp()),
            precise_total_amount_cents=None,
            properties={self.field_name: event.value},
        )

    def _send_chunk(self, chunk: list[DeliveryEvent]) -> list[SendResult]:
        if len(chunk) == 1:
            return [self._send_one(chunk[0])]
        try:
            self._client.events.batch_create(BatchEvent(events=[self._event(e) for e in chunk]))
        except LagoApiError as error:
            per_index = _indexed_errors(error) if error.status_code == 422 else None
            if per_index is None:
                if error.status_code == 422:  # not readable per event: ask one by one
                    return [self._send_one(event) for event in chunk]
                return [self._failure(event.ledger_id, error) for event in chunk]
            return self._after_rollback(chunk, per_index)
        except (httpx.HTTPError, pydantic.v1.ValidationError) as error:
            return [self._transport(event.ledger_id, error) for event in chunk]
        return [SendResult(event.ledger_id, SendStatus.ACCEPTED) for event in chunk]

    def _after_rollback(
        self, chunk: list[DeliveryEvent], per_index: Mapping[int, Mapping[str, object]]
    ) -> list[SendResult]:
        """The batch was rolled back: settle the events Lago named, resend the others."""
        results: dict[int, SendResult] = {}
        rest: list[int] = []
        for index, event in enumerate(chunk):
            errors = per_index.get(index)
            if errors is None:
                rest.append(index)
            elif _codes(errors.get("transaction_id")) == [ALREADY_EXISTS]:
                results[index] = SendResult(event.ledger_id, SendStatus.DUPLICATE, ALREADY_EXISTS)
            else:
                results[index] = SendResult(event.ledger_id, SendStatus.REJECTED,
                                            _error_codes(errors))
        if len(rest) == len(chunk):  # no index matched an event: one by one
            return [self._send_one(event) for event in chunk]
        for index, result in zip(rest, self._send_chunk([chunk[i] for i in rest]), strict=True):
            results[index] = result
        return [results[index] for index in range(len(chunk))]

    def _send_one(self, event: DeliveryEvent) -> SendResult:
        try:
            self._client.events.create(self._event(event), timeout=self._timeout)
        except LagoApiError as error:
            return self._failure(event.ledger_id, error)
        except (httpx.HTTPError, pydantic.v1.ValidationError) as error:
            return self._transport(event.ledger_id, error)
        return SendResult(event.ledger_id, SendStatus.ACCEPTED)

    def _failure(self, ledger_id: str, error: LagoApiError) -> SendResult:
        result = _answer_result(ledger_id, error)
        if result.status is not SendStatus.DUPLICATE:
            logger.warning("lago sink %s: HTTP %s %s for %s", self.config.name,
                           error.status_code, result.detail, ledger_id)
        return result

    def _transport(self, ledger_id: str, error: Exception) -> SendResult:
        if isinstance(error, _NEVER_SENT):
            result = SendResult(ledger_id, SendStatus.RETRY, type(error).__name__)
        else:
            result = SendResult(ledger_id, SendStatus.UNKNOWN, type(error).__name__)
        logger.warning("lago sink %s: %s for %s", self.config.name, result.detail, ledger_id)
        return result


def _answer_result(ledger_id: str, error: LagoApiError) -> SendResult:
    """What an HTTP answer with an error means (Lago's own text is never copied)."""
    status = int(error.status_code)
    if isinstance(error, LagoRateLimitError) or status == 429:
        reset = error.reset if isinstance(error, LagoRateLimitError) else None
        return SendResult(ledger_id, SendStatus.RETRY, "rate_limit",
                          float(reset) if reset is not None and reset >= 0 else None)
    if status >= 500 or status < 400:
        return SendResult(ledger_id, SendStatus.UNKNOWN, f"http_{status}")
    if status in _REFUSED_STATUSES:
        return SendResult(ledger_id, SendStatus.RETRY, f"http_{status}")
    details = _details(error)
    if status == 422 and _codes(details.get("transaction_id")) == [ALREADY_EXISTS]:
        return SendResult(ledger_id, SendStatus.DUPLICATE, ALREADY_EXISTS)
    return SendResult(ledger_id, SendStatus.REJECTED, _error_codes(details) or f"http_{status}")


def _details(error: LagoApiError) -> dict[str, object]:
    body = error.response
    details = body.get("error_details") if isinstance(body, Mapping) else None
    return dict(details) if isinstance(details, Mapping) else {}


def _indexed_errors(error: LagoApiError) -> dict[int, Mapping[str, object]] | None:
    """A batch 422's errors by event index, or None when they are not keyed by index."""
    details = _details(error)
    out: dict[int, Mapping[str, object]] = {}
    for key, value in details.items():
        if not str(key).isdigit() or not isinstance(value, Mapping):
            return None
        out[int(key)] = value
    return out or None


def _codes(value: object) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)] if value is not None else []


def _error_codes(details: Mapping[str, object]) -> str:
    """``field:code`` pairs, e.g. ``timestamp:invalid_format``; clipped."""
    pairs = [f"{name}:{code}" for name, value in details.items() for code in _codes(value)]
    return ",".join(pairs)[:200]
