"""A local Stripe: Billing Meter Events on 127.0.0.1, as Stripe documents and answers them.

Used by the sink tests and ``make demo``; the official ``stripe`` library is pointed at it
(``StripeClient(..., base_addresses={"api": url})``). What it does, and where that comes from:

- ``POST /v1/billing/meter_events``, form-encoded: ``event_name``, ``payload[stripe_customer_id]``,
  ``payload[value]`` (a whole number, negative allowed), ``identifier``, ``timestamp``
  (https://docs.stripe.com/api/billing/meter-event/create,
  https://docs.stripe.com/billing/subscriptions/usage-based/recording-usage-api).
- ``timestamp`` within the past 35 days and at most 5 minutes ahead, else 400 (the code
  ``timestamp_out_of_range`` is this server's: Stripe documents the window, not its code).
- ``identifier`` unique within a rolling 24 hours: a second event with the same identifier
  inside that window is refused with 400 ``invalid_request_error`` and the message "An event
  already exists with identifier <id>." (no ``code``; the answer Stripe gives, as observed in
  https://github.com/langfuse/langfuse/pull/16292). After 24 hours the same identifier is
  accepted again, and counted again: that is why the delivery service keeps records.
- A wrong or missing ``Authorization: Bearer`` key: 401 (the message never echoes the key).
- Errors as Stripe shapes them: ``{"error": {"type", "code", "message", "param"}}``.

Knobs for tests: :meth:`LocalStripe.fail_next` (429 with ``Retry-After``, or 500, for the next N
requests), :meth:`LocalStripe.stall_next` (store the event, then hold the answer longer than the
client waits), :meth:`LocalStripe.advance` (move the server's clock). What it received:
:attr:`LocalStripe.events` and :meth:`LocalStripe.sums` per (customer, meter).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from minutemeter.adapters.system import SystemClock
from minutemeter.local.local_api import Answer, LocalApiServer

METER_EVENTS_PATH = "/v1/billing/meter_events"
DEDUP_WINDOW = timedelta(hours=24)
MAX_PAST = timedelta(days=35)
MAX_FUTURE = timedelta(minutes=5)



@dataclass(frozen=True)
class MeterEvent:
    """One meter event the server accepted (``created`` on the server's clock)."""

    identifier: str
    event_name: str
    customer: str
    value: int
    timestamp: int
    created: datetime


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: float | None = None


def _error(status: int, kind: str, message: str, code: str | None = None,
           param: str | None = None, headers: dict[str, str] | None = None) -> Answer:
    body: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        body["code"] = code
    if param is not None:
        body["param"] = param
    return status, {"error": body}, headers or {}


class LocalStripe(LocalApiServer):
    """The HTTP server. ``start()`` binds 127.0.0.1 on a free port in a daemon thread.

    ``customers`` / ``meters``, when given, are the only customer ids and event names that
    exist (anything else: 400, as Stripe refuses an unknown customer or meter); ``clock`` is
    the server's wall clock (default: the system's), moved on by :meth:`advance`."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_local",
        customers: Collection[str] | None = None,
        meters: Collection[str] | None = None,
        clock: Callable[[], datetime] | None = None,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.customers = set(customers) if customers is not None else None
        self.meters = set(meters) if meters is not None else None
        self._clock = clock or SystemClock().now
        self._offset = timedelta(0)
        self.events: list[MeterEvent] = []
        self._seen: dict[str, datetime] = {}
        self._faults: list[_Fault] = []
        super().__init__(port)

    # -- knobs -------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The server's clock: ``clock()`` plus everything :meth:`advance` added."""
        return self._clock() + self._offset

    def advance(self, delta: timedelta) -> None:
        """Move the server's clock on by ``delta`` (e.g. past the 24-hour dedup window)."""
        with self._lock:
            self._offset += delta

    def fail_next(self, count: int, status: int, *, retry_after: float | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (429: rate limited, with
        ``Retry-After`` when given; 5xx: an API error) and store nothing."""
        with self._lock:
            self._faults.append(_Fault(count, status, retry_after))

    def sums(self) -> dict[tuple[str, str], int]:
        """The sum of the accepted values per (customer, event name): a ``sum`` meter."""
        out: dict[tuple[str, str], int] = {}
        with self._lock:
            for event in self.events:
                key = (event.customer, event.event_name)
                out[key] = out.get(key, 0) + event.value
        return out

    def report_lines(self) -> list[str]:
        """What the demo prints: each (customer, meter) with its event count and sum."""
        with self._lock:
            events = list(self.events)
        counts: dict[tuple[str, str], int] = {}
        for stored in events:
            key = (stored.customer, stored.event_name)
            counts[key] = counts.get(key, 0) + 1
        return [f"{customer}  {meter}  events={counts[(customer, meter)]}  sum={total}"
                for (customer, meter), total in sorted(self.sums().items())]

    def count(self, identifier: str) -> int:
        """How many times an event with ``identifier`` was accepted."""
        with self._lock:
            return sum(1 for e in self.events if e.identifier == identifier)

    # -- the API -----------------------------------------------------------------------------
    def parse_body(self, raw: bytes) -> dict[str, str]:
        """A form-encoded body (the last value of a repeated field)."""
        return {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}

    def answer_headers(self) -> dict[str, str]:
        return {"Request-Id": f"req_local_{self.requests}"}

    def respond(self, method: str, path: str, form: Any, auth: str | None) -> Answer:
        """The answer to one request (the HTTP handler only transports it)."""
        with self._lock:
            self.requests += 1
            fault = next((f for f in self._faults if f.remaining > 0), None)
            if fault is not None:
                fault.remaining -= 1
        if auth != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided.")
        if fault is not None:
            if fault.status == 429:
                headers = {} if fault.retry_after is None else {
                    "Retry-After": f"{fault.retry_after:g}"}
                return _error(429, "invalid_request_error", "Request rate limit exceeded.",
                              code="rate_limit", headers=headers)
            return _error(fault.status, "api_error", "An unknown error occurred.")
        if method != "POST" or path != METER_EVENTS_PATH:
            return _error(404, "invalid_request_error", f"Unrecognized request URL ({path}).")
        return self._create(form)

    def _create(self, form: dict[str, str]) -> Answer:
        name = form.get("event_name", "")
        customer = form.get("payload[stripe_customer_id]", "")
        identifier = form.get("identifier", "")
        if not name:
            return _error(400, "invalid_request_error", "Missing required param: event_name.",
                          code="parameter_missing", param="event_name")
        if self.meters is not None and name not in self.meters:
            return _error(400, "invalid_request_error",
                          f"No active meter found with event name {name}.")
        if not customer:
            return _error(400, "invalid_request_error", "Missing stripe_customer_id.",
                          code="parameter_missing", param="payload[stripe_customer_id]")
        if self.customers is not None and customer not in self.customers:
            return _error(400, "invalid_request_error", f"No such customer: '{customer}'",
                          code="resource_missing", param="payload[stripe_customer_id]")
        try:
            value = int(form.get("payload[value]", ""))
        except ValueError:
            return _error(400, "invalid_request_error", "The value must be a whole number.",
                          code="parameter_invalid_integer", param="payload[value]")
        now = self.now()
        try:
            timestamp = int(form["timestamp"]) if "timestamp" in form else int(now.timestamp())
        except ValueError:
            return _error(400, "invalid_request_error", "Invalid timestamp.",
                          code="parameter_invalid_integer", param="timestamp")
        moment = datetime.fromtimestamp(timestamp, UTC)
        if moment < now - MAX_PAST or moment > now + MAX_FUTURE:
            return _error(400, "invalid_request_error",
                          "Timestamp must be within the past 35 calendar days and at most "
                          "5 minutes in the future.",
                          code="timestamp_out_of_range", param="timestamp")
        with self._lock:
            identifier = identifier or f"local_{len(self.events)}"
            seen = self._seen.get(identifier)
            if seen is not None and now - seen < DEDUP_WINDOW:
                return _error(400, "invalid_request_error",
                              f"An event already exists with identifier {identifier}.")
            self._seen[identifier] = now
            self.events.append(MeterEvent(identifier, name, customer, value, timestamp, now))
        return 200, {
            "object": "billing.meter_event",
            "created": int(now.timestamp()),
            "event_name": name,
            "identifier": identifier,
            "livemode": False,
            "payload": {"stripe_customer_id": customer, "value": str(value)},
            "timestamp": timestamp,
        }, {}
