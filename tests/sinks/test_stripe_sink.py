"""The Stripe sink through the official ``stripe`` library against a local Stripe on 127.0.0.1.

GIVEN a local Stripe that behaves as Stripe documents (identifier dedup in a rolling 24 h, the
timestamp window, 400/429/500 answers), WHEN the sink sends meter events, THEN each answer maps
to the documented ``SendStatus`` and the server holds each event as often as it says.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from minutemeter.adapters.sinks.stripe_sink import StripeSink
from minutemeter.domain.delivery import SendResult, SendStatus, SinkKind
from minutemeter.local.stripe_server import LocalStripe
from tests.sinks.support import (
    CLIENT_TIMEOUT,
    CUSTOMER,
    METER,
    NOW,
    STALL_SECONDS,
    STRIPE_KEY,
    closed_port_url,
    event,
    sink_config,
)


def make_sink(url: str, key: str = STRIPE_KEY) -> StripeSink:
    return StripeSink(sink_config(SinkKind.STRIPE, url), key,
                      timeout=CLIENT_TIMEOUT, connect_timeout=CLIENT_TIMEOUT)


def statuses(results: list[SendResult]) -> list[SendStatus]:
    return [r.status for r in results]


def test_events_are_accepted_and_mapped(stripe_server: LocalStripe) -> None:
    first, second = event(1, 1500), event(2, 2500)

    results = make_sink(stripe_server.url).send([first, second])

    assert results == [SendResult("led-0001", SendStatus.ACCEPTED),
                       SendResult("led-0002", SendStatus.ACCEPTED)]
    stored = stripe_server.events
    assert [(e.identifier, e.event_name, e.customer, e.value, e.timestamp) for e in stored] == [
        ("led-0001", METER, CUSTOMER, 1500, int(first.timestamp.timestamp())),
        ("led-0002", METER, CUSTOMER, 2500, int(second.timestamp.timestamp())),
    ]
    assert stripe_server.sums() == {(CUSTOMER, METER): 4000}


def test_the_sink_declares_stripes_window_and_cannot_look_up(stripe_server: LocalStripe) -> None:
    sink = make_sink(stripe_server.url)

    assert sink.dedup_window == timedelta(hours=24)
    assert sink.lookup(event(1)) is None


def test_a_resend_inside_24_hours_is_a_duplicate_and_counted_once(
    stripe_server: LocalStripe,
) -> None:
    sink = make_sink(stripe_server.url)
    sink.send([event(1)])
    stripe_server.advance(timedelta(hours=23, minutes=59, seconds=59))

    results = sink.send([event(1)])

    assert results == [SendResult("led-0001", SendStatus.DUPLICATE, "identifier_exists")]
    assert stripe_server.count("led-0001") == 1


def test_a_resend_after_24_hours_is_accepted_again_and_counted_twice(
    stripe_server: LocalStripe,
) -> None:
    # Why the delivery service records every delivery: Stripe forgets the identifier.
    sink = make_sink(stripe_server.url)
    sink.send([event(1, 1000)])
    stripe_server.advance(timedelta(hours=24))

    results = sink.send([event(1, 1000)])

    assert statuses(results) == [SendStatus.ACCEPTED]
    assert stripe_server.count("led-0001") == 2
    assert stripe_server.sums() == {(CUSTOMER, METER): 2000}


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (-timedelta(days=35), SendStatus.ACCEPTED),
        (-timedelta(days=35, seconds=1), SendStatus.REJECTED),
        (timedelta(minutes=5), SendStatus.ACCEPTED),
        (timedelta(minutes=5, seconds=1), SendStatus.REJECTED),
    ],
)
def test_the_timestamp_window_35_days_back_5_minutes_ahead(
    stripe_server: LocalStripe, offset: timedelta, expected: SendStatus
) -> None:
    results = make_sink(stripe_server.url).send([event(1, at=NOW + offset)])

    assert statuses(results) == [expected]
    if expected is SendStatus.REJECTED:
        assert results[0].detail == "timestamp_out_of_range:timestamp"
        assert stripe_server.events == []
    else:
        assert stripe_server.count("led-0001") == 1


def test_an_unknown_customer_is_rejected_with_its_code(stripe_server: LocalStripe) -> None:
    results = make_sink(stripe_server.url).send([event(1, customer="cus_nobody")])

    assert results == [SendResult("led-0001", SendStatus.REJECTED,
                                  "resource_missing:payload[stripe_customer_id]")]
    assert stripe_server.events == []


def test_429_is_retry_with_retry_after_and_the_rest_is_not_sent(
    stripe_server: LocalStripe,
) -> None:
    stripe_server.fail_next(1, 429, retry_after=7)

    results = make_sink(stripe_server.url).send([event(1), event(2), event(3)])

    assert results == [
        SendResult("led-0001", SendStatus.RETRY, "rate_limit", 7.0),
        SendResult("led-0002", SendStatus.RETRY, "not_sent", 7.0),
        SendResult("led-0003", SendStatus.RETRY, "not_sent", 7.0),
    ]
    assert stripe_server.requests == 1  # the library did not retry: our caller decides
    assert stripe_server.events == []


def test_429_without_retry_after_has_no_retry_after(stripe_server: LocalStripe) -> None:
    stripe_server.fail_next(1, 429)

    results = make_sink(stripe_server.url).send([event(1)])

    assert results == [SendResult("led-0001", SendStatus.RETRY, "rate_limit", None)]


def test_500_is_unknown_without_a_library_retry(stripe_server: LocalStripe) -> None:
    stripe_server.fail_next(1, 500)

    results = make_sink(stripe_server.url).send([event(1), event(2)])

    assert results == [SendResult("led-0001", SendStatus.UNKNOWN, "http_500"),
                       SendResult("led-0002", SendStatus.ACCEPTED)]
    assert stripe_server.requests == 2
    assert stripe_server.count("led-0001") == 0


def test_accepted_then_stalled_is_unknown_and_a_resend_in_the_window_is_a_duplicate(
    stripe_server: LocalStripe,
) -> None:
    sink = make_sink(stripe_server.url)
    stripe_server.stall_next(1, STALL_SECONDS)

    first = sink.send([event(1), event(2)])

    assert first == [SendResult("led-0001", SendStatus.UNKNOWN, "read_timeout"),
                     SendResult("led-0002", SendStatus.RETRY, "not_sent")]
    assert stripe_server.count("led-0001") == 1  # the server took it before stalling

    again = sink.send([event(1), event(2)])

    assert statuses(again) == [SendStatus.DUPLICATE, SendStatus.ACCEPTED]
    assert stripe_server.count("led-0001") == 1
    assert stripe_server.count("led-0002") == 1


def test_a_refused_connection_is_retry_for_every_event() -> None:
    results = make_sink(closed_port_url()).send([event(1), event(2)])

    assert results == [SendResult("led-0001", SendStatus.RETRY, "connection_refused"),
                       SendResult("led-0002", SendStatus.RETRY, "not_sent")]


def test_a_wrong_key_is_retry_and_stores_nothing(stripe_server: LocalStripe) -> None:
    results = make_sink(stripe_server.url, key="sk_test_WRONG_key").send([event(1)])

    assert results == [SendResult("led-0001", SendStatus.RETRY, "http_401:invalid_request_error")]
    assert stripe_server.events == []


def test_a_negative_correction_is_a_compensating_event(stripe_server: LocalStripe) -> None:
    usage = event(1, 1000)
    correction = event(2, -300, at=usage.timestamp, kind="correction", corrects="led-0001")

    results = make_sink(stripe_server.url).send([usage, correction])

    assert statuses(results) == [SendStatus.ACCEPTED, SendStatus.ACCEPTED]
    assert [(e.identifier, e.value) for e in stripe_server.events] == [
        ("led-0001", 1000), ("led-0002", -300)]
    assert stripe_server.sums() == {(CUSTOMER, METER): 700}
    assert stripe_server.report_lines() == [f"{CUSTOMER}  {METER}  events=2  sum=700"]


def test_the_api_key_never_appears_in_results_or_logs(
    stripe_server: LocalStripe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk_test_SECRET_wrong_9876543210"
    results = make_sink(stripe_server.url).send([event(1)])
    results += make_sink(stripe_server.url, key=wrong).send([event(2)])
    stripe_server.fail_next(1, 429, retry_after=1)
    results += make_sink(stripe_server.url).send([event(3)])
    stripe_server.fail_next(1, 500)
    results += make_sink(stripe_server.url).send([event(4)])
    stripe_server.stall_next(1, STALL_SECONDS)
    results += make_sink(stripe_server.url).send([event(5)])
    results += make_sink(stripe_server.url).send([event(1)])
    results += make_sink(closed_port_url()).send([event(6)])

    assert statuses(results) == [
        SendStatus.ACCEPTED, SendStatus.RETRY, SendStatus.RETRY, SendStatus.UNKNOWN,
        SendStatus.UNKNOWN, SendStatus.DUPLICATE, SendStatus.RETRY]
    assert caplog.records, "the library and the sink logged nothing: the check proves nothing"
    for secret in (STRIPE_KEY, wrong, "SECRET"):
        assert secret not in caplog.text
        assert all(secret not in repr(r) for r in results)
