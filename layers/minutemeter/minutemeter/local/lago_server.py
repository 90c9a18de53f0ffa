"""A local Lago: usage events on 127.0.0.1, as Lago documents and answers them.

Used by the sink tests and ``make demo``; the official ``lago-python-client`` is pointed at it
(``Client(api_key=..., api_url=url)``). What it does, and where that comes from:

- ``POST /api/v1/events`` ``{"event": {transaction_id, external_subscription_id, code,
  timestamp, properties}}`` (https://getlago.com/docs/api-reference/events/usage).
- ``POST /api/v1/events/batch`` ``{"events": [...]}``, at most 100 events
  (https://getlago.com/docs/api-reference/events/batch); Lago's ``Events::CreateBatchService``
  (getlago/lago-api ``app/services/events/create_batch_service.rb``) inserts all or none: a
  ``transaction_id`` that already exists rolls the whole batch back and answers 422 with the
  errors keyed by the event's index, ``{"<i>": {"transaction_id": ["value_already_exist"]}}``;
  more than 100 events: 422 ``{"events": ["too_many_events"]}``.
- A known ``transaction_id`` (unique per organization and ``external_subscription_id``, Lago's
  ``index_unique_transaction_id``) on the single endpoint: 422 ``{"status": 422, "error":
  "Unprocessable Entity", "code": "validation_errors", "error_details": {"transaction_id":
  ["value_already_exist"]}}`` (``app/controllers/concerns/api_errors.rb``).
- ``GET /api/v1/events/{transaction_id}``: the event, or 404 ``{"status": 404, "error": "Not
  Found", "code": "event_not_found"}``.
- A wrong or missing ``Authorization: Bearer`` key: 401 ``{"status": 401, "error":
  "Unauthorized"}``.

Knobs for tests: :meth:`LocalLago.fail_next` (5xx, or 429 with ``x-ratelimit-reset``),
:meth:`LocalLago.stall_next` (store, then hold the answer). What it received:
:attr:`LocalLago.events`, :attr:`LocalLago.batches` and :meth:`LocalLago.sums`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from minutemeter.adapters.system import SystemClock
from minutemeter.local.local_api import Answer, LocalApiServer

EVENTS_PATH = "/api/v1/events"
BATCH_PATH = "/api/v1/events/batch"
MAX_BATCH = 100



@dataclass(frozen=True)
class LagoEvent:
    """One event the server stored."""

    lago_id: str
    transaction_id: str
    external_subscription_id: str
    code: str
    timestamp: float
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Fault:
    remaining: int
    status: int
    reset: int | None = None


def _validation(details: dict[str, Any]) -> Answer:
    return 422, {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                 "error_details": details}, {}


class LocalLago(LocalApiServer):
    """The HTTP server. ``start()`` binds 127.0.0.1 on a free port in a daemon thread."""

    def __init__(
        self,
        *,
        api_key: str = "lago_local_key",
        max_batch: int = MAX_BATCH,
        clock: Callable[[], datetime] | None = None,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.max_batch = max_batch
        self._clock = clock or SystemClock().now
        self.events: list[LagoEvent] = []
        self.batches: list[int] = []  # the size of each batch request, answered or not
        self._faults: list[_Fault] = []
        super().__init__(port)

    # -- knobs -------------------------------------------------------------------------------
    def fail_next(self, count: int, status: int, *, reset: int | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` and store nothing (429 carries
        ``x-ratelimit-reset: reset`` seconds when given, as Lago's rate limiter does)."""
        with self._lock:
            self._faults.append(_Fault(count, status, reset))

    def sums(self, field_name: str) -> dict[tuple[str, str], float]:
        """SUM(properties[field_name]) per (external subscription id, code): ``sum_agg``."""
        out: dict[tuple[str, str], float] = {}
        with self._lock:
            for event in self.events:
                key = (event.external_subscription_id, event.code)
                out[key] = out.get(key, 0) + float(event.properties.get(field_name, 0))
        return out

    def report_lines(self, field_name: str) -> list[str]:
        """What the demo prints: each (subscription, code) with its event count and sum."""
        with self._lock:
            events = list(self.events)
        counts: dict[tuple[str, str], int] = {}
        for stored in events:
            key = (stored.external_subscription_id, stored.code)
            counts[key] = counts.get(key, 0) + 1
        return [f"{subscription}  {code}  events={counts[(subscription, code)]}  "
                f"sum({field_name})={total:g}"
                for (subscription, code), total in sorted(self.sums(field_name).items())]

    def count(self, transaction_id: str) -> int:
        with self._lock:
            return sum(1 for e in self.events if e.transaction_id == transaction_id)

    # -- the API -----------------------------------------------------------------------------
    def parse_body(self, raw: bytes) -> Any:
        """A JSON body; None when it is not JSON (answered 400 by ``respond``)."""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def respond(self, method: str, path: str, body: Any, auth: str | None) -> Answer:
        """The answer to one request (the HTTP handler only transports it)."""
        with self._lock:
            self.requests += 1
            if method == "POST" and path == BATCH_PATH and isinstance(body, dict):
                events = body.get("events")
                self.batches.append(len(events) if isinstance(events, list) else 0)
            fault = next((f for f in self._faults if f.remaining > 0), None)
            if fault is not None:
                fault.remaining -= 1
        if auth is None or auth != f"Bearer {self.api_key}":
            return 401, {"status": 401, "error": "Unauthorized"}, {}
        if fault is not None:
            if fault.status == 429:
                headers = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0"}
                if fault.reset is not None:
                    headers["x-ratelimit-reset"] = str(fault.reset)
                return 429, {"status": 429, "error": "Too Many Requests"}, headers
            return fault.status, {"status": fault.status, "error": "Internal Server Error"}, {}
        if method == "POST" and path == EVENTS_PATH:
            event = body.get("event") if isinstance(body, dict) else None
            if not isinstance(event, dict):
                return 400, {"status": 400, "error": "BadRequest: param is missing or the "
                             "value is empty: event"}, {}
            return self._create_one(event)
        if method == "POST" and path == BATCH_PATH:
            events = body.get("events") if isinstance(body, dict) else None
            return self._create_batch(events if isinstance(events, list) else [])
        if method == "GET" and path.startswith(EVENTS_PATH + "/"):
            return self._show(unquote(path[len(EVENTS_PATH) + 1:]))
        return 404, {"status": 404, "error": "Not Found", "code": "route_not_found"}, {}

    def _build(self, params: dict[str, Any]) -> tuple[LagoEvent | None, dict[str, list[str]]]:
        errors: dict[str, list[str]] = {}
        for name in ("transaction_id", "code"):
            if not params.get(name):
                errors[name] = ["value_is_mandatory"]
        raw_time = params.get("timestamp")
        try:
            timestamp = float(raw_time) if raw_time is not None else self._clock().timestamp()
        except (TypeError, ValueError):
            errors["timestamp"] = ["invalid_format"]
            timestamp = 0.0
        if errors:
            return None, errors
        properties = params.get("properties") or {}
        return LagoEvent(
            lago_id=f"lago-{self.requests}-{params['transaction_id']}",
            transaction_id=str(params["transaction_id"]),
            external_subscription_id=str(params.get("external_subscription_id") or ""),
            code=str(params["code"]),
            timestamp=timestamp,
            properties=dict(properties),
        ), {}

    def _exists(self, event: LagoEvent, pending: list[LagoEvent]) -> bool:
        key = (event.external_subscription_id, event.transaction_id)
        return any((e.external_subscription_id, e.transaction_id) == key
                   for e in [*self.events, *pending])

    def _create_one(self, params: dict[str, Any]) -> Answer:
        event, errors = self._build(params)
        if event is None:
            return _validation(dict(errors))
        with self._lock:
            if self._exists(event, []):
                return _validation({"transaction_id": ["value_already_exist"]})
            self.events.append(event)
        return 200, {"event": _serialize(event)}, {}

    def _create_batch(self, items: list[Any]) -> Answer:
        if not items:
            return _validation({"events": ["no_events"]})
        if len(items) > self.max_batch:
            return _validation({"events": ["too_many_events"]})
        built: list[LagoEvent] = []
        errors: dict[str, Any] = {}
        for index, params in enumerate(items):
            event, event_errors = self._build(params if isinstance(params, dict) else {})
            if event is None:
                errors[str(index)] = event_errors
            else:
                built.append(event)
        if errors:
            return _validation(errors)
        with self._lock:
            pending: list[LagoEvent] = []
            for index, event in enumerate(built):
                if self._exists(event, pending):
                    errors[str(index)] = {"transaction_id": ["value_already_exist"]}
                pending.append(event)
            if errors:
                return _validation(errors)  # rolled back: none of the batch is stored
            self.events.extend(built)
        return 200, {"events": [_serialize(e) for e in built]}, {}

    def _show(self, transaction_id: str) -> Answer:
        with self._lock:
            found = next((e for e in self.events if e.transaction_id == transaction_id), None)
        if found is None:
            return 404, {"status": 404, "error": "Not Found", "code": "event_not_found"}, {}
        return 200, {"event": _serialize(found)}, {}


def _serialize(event: LagoEvent) -> dict[str, Any]:
    moment = datetime.fromtimestamp(event.timestamp, UTC)
    return {
        "lago_id": event.lago_id,
        "transaction_id": event.transaction_id,
        "lago_customer_id": None,
        "code": event.code,
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "precise_total_amount_cents": None,
        "properties": event.properties,
        "lago_subscription_id": None,
        "external_subscription_id": event.external_subscription_id,
        "created_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
