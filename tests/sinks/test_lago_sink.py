"""The Lago sink through the official ``lago-python-client`` against a local Lago on 127.0.0.1.

GIVEN a local Lago that behaves as Lago documents and implements it (422 ``value_already_exist``
on a known ``transaction_id``, all-or-nothing batches of at most 100, 5xx), WHEN the sink sends
events, THEN each answer maps to the documented ``SendStatus`` and Lago holds each event once.
"""

from __future__ import annotations

import logging

import pytest

from minutemeter.adapters.sinks.lago_sink import LAGO_PROPERTY, LagoSink
from minutemeter.domain.delivery import SendResult, SendStatus, SinkKind
from minutemeter.local.lago_server import LocalLago
from tests.sinks.support import (
    CLIENT_TIMEOUT,
    CUSTOMER,
    LAGO_KEY,
    METER,
    STALL_SECONDS,
    closed_port_url,
    event,
    sink_config,
)


def make_sink(url: str, key: str = LAGO_KEY, meter: str = METER) -> LagoSink:
    return LagoSink(sink_config(SinkKind.LAGO, url, meter), key,
                    timeout=CLIENT_TIMEOUT, connect_timeout=CLIENT_TIMEOUT)


def statuses(results: list[SendResult]) -> list[SendStatus]:
    return [r.status for r in results]


def test_one_event_is_accepted_and_mapped(lago_server: LocalLago) -> None:
    sent = event(1, 1500)

    results = make_sink(lago_server.url).send([sent])

    assert results == [SendResult("led-0001", SendStatus.ACCEPTED)]
    [stored] = lago_server.events
    assert (stored.transaction_id, stored.external_subscription_id, stored.code,
            stored.timestamp, stored.properties) == (
        "led-0001", CUSTOMER, METER, sent.timestamp.timestamp(), {LAGO_PROPERTY: 1500})
    assert lago_server.batches == []  # a single event uses POST /api/v1/events


def test_the_sink_has_no_dedup_window(lago_server: LocalLago) -> None:
    assert make_sink(lago_server.url).dedup_window is None


def test_a_batch_is_accepted_in_one_request(lago_server: LocalLago) -> None:
    results = make_sink(lago_server.url).send([event(n, 100) for n in range(5)])

    assert statuses(results) == [SendStatus.ACCEPTED] * 5
    assert lago_server.batches == [5]
    assert lago_server.sums(LAGO_PROPERTY) == {(CUSTOMER, METER): 500}


def test_a_known_transaction_id_is_a_duplicate(lago_server: LocalLago) -> None:
    sink = make_sink(lago_server.url)
    sink.send([event(1)])

    results = sink.send([event(1)])

    assert results == [SendResult("led-0001", SendStatus.DUPLICATE, "value_already_exist")]
    assert lago_server.count("led-0001") == 1


def test_a_batch_with_a_known_transaction_id_settles_it_and_resends_the_rest(
    lago_server: LocalLago,
) -> None:
    sink = make_sink(lago_server.url)
    sink.send([event(2)])

    results = sink.send([event(1), event(2), event(3)])

    assert results == [SendResult("led-0001", SendStatus.ACCEPTED),
                       SendResult("led-0002", SendStatus.DUPLICATE, "value_already_exist"),
                       SendResult("led-0003", SendStatus.ACCEPTED)]
    assert lago_server.batches == [3, 2]  # rolled back, then the two others again
    assert [lago_server.count(f"led-000{n}") for n in (1, 2, 3)] == [1, 1, 1]


def test_more_than_100_events_go_in_batches_of_100(lago_server: LocalLago) -> None:
    results = make_sink(lago_server.url).send([event(n, 1) for n in range(250)])

    assert statuses(results) == [SendStatus.ACCEPTED] * 250
    assert lago_server.batches == [100, 100, 50]
    assert len(lago_server.events) == 250


def test_a_batch_refused_as_a_whole_falls_back_to_single_sends() -> None:
    # A Lago configured with LAGO_EVENTS_BATCH_MAX_LENGTH=2 refuses the 3-event batch.
    with LocalLago(api_key=LAGO_KEY, max_batch=2) as server:
        results = make_sink(server.url).send([event(1), event(2), event(3)])

        assert statuses(results) == [SendStatus.ACCEPTED] * 3
        assert server.batches == [3]
        assert [server.count(f"led-000{n}") for n in (1, 2, 3)] == [1, 1, 1]


def test_an_invalid_event_is_rejected_with_its_codes(lago_server: LocalLago) -> None:
    results = make_sink(lago_server.url, meter="").send([event(1)])

    assert results == [SendResult("led-0001", SendStatus.REJECTED, "code:value_is_mandatory")]
    assert lago_server.events == []


def test_lookup_answers_true_false_and_none(lago_server: LocalLago) -> None:
    sink = make_sink(lago_server.url)
    sink.send([event(1)])

    assert sink.lookup(event(1)) is True
    assert sink.lookup(event(2)) is False
    assert make_sink(closed_port_url()).lookup(event(1)) is None


def test_500_is_unknown_and_lookup_tells_it_was_not_stored(lago_server: LocalLago) -> None:
    sink = make_sink(lago_server.url)
    lago_server.fail_next(1, 500)

    results = sink.send([event(1)])

    assert results == [SendResult("led-0001", SendStatus.UNKNOWN, "http_500")]
    assert sink.lookup(event(1)) is False


def test_a_500_on_a_batch_is_unknown_for_each_event(lago_server: LocalLago) -> None:
    lago_server.fail_next(1, 503)

    results = make_sink(lago_server.url).send([event(1), event(2)])

    assert results == [SendResult("led-0001", SendStatus.UNKNOWN, "http_503"),
                       SendResult("led-0002", SendStatus.UNKNOWN, "http_503")]
    assert lago_server.events == []


def test_accepted_then_stalled_is_unknown_then_lookup_and_resend_find_it(
    lago_server: LocalLago,
) -> None:
    sink = make_sink(lago_server.url)
    lago_server.stall_next(1, STALL_SECONDS)

    results = sink.send([event(1)])

    assert results == [SendResult("led-0001", SendStatus.UNKNOWN, "ReadTimeout")]
    assert lago_server.count("led-0001") == 1
    assert sink.lookup(event(1)) is True
    assert statuses(sink.send([event(1)])) == [SendStatus.DUPLICATE]
    assert lago_server.count("led-0001") == 1


def test_429_the_library_retries_then_the_sink_answers_retry(lago_server: LocalLago) -> None:
    # lago-python-client retries a 429 on events up to 3 times whatever the client's settings.
    lago_server.fail_next(4, 429, reset=0)

    results = make_sink(lago_server.url).send([event(1)])

    assert results == [SendResult("led-0001", SendStatus.RETRY, "rate_limit", 0.0)]
    assert lago_server.requests == 4
    assert lago_server.events == []


def test_one_429_is_absorbed_by_the_library_retry(lago_server: LocalLago) -> None:
    lago_server.fail_next(1, 429, reset=0)

    results = make_sink(lago_server.url).send([event(1), event(2)])

    assert statuses(results) == [SendStatus.ACCEPTED, SendStatus.ACCEPTED]
    assert lago_server.requests == 2
    assert len(lago_server.events) == 2


def test_a_refused_connection_is_retry() -> None:
    results = make_sink(closed_port_url()).send([event(1), event(2)])

    assert results == [SendResult("led-0001", SendStatus.RETRY, "ConnectError"),
                       SendResult("led-0002", SendStatus.RETRY, "ConnectError")]


def test_a_wrong_key_is_retry_and_stores_nothing(lago_server: LocalLago) -> None:
    results = make_sink(lago_server.url, key="lago_WRONG").send([event(1)])

    assert results == [SendResult("led-0001", SendStatus.RETRY, "http_401")]
    assert lago_server.events == []


def test_a_negative_correction_is_an_event_with_negative_bytes(lago_server: LocalLago) -> None:
    usage = event(1, 1000)
    correction = event(2, -300, at=usage.timestamp, kind="correction",
                       corrects="led-0001")

    results = make_sink(lago_server.url).send([usage, correction])

    assert statuses(results) == [SendStatus.ACCEPTED, SendStatus.ACCEPTED]
    assert [(e.transaction_id, e.properties) for e in lago_server.events] == [
        ("led-0001", {LAGO_PROPERTY: 1000}), ("led-0002", {LAGO_PROPERTY: -300})]
    assert lago_server.sums(LAGO_PROPERTY) == {(CUSTOMER, METER): 700}
    assert lago_server.report_lines(LAGO_PROPERTY) == [
        f"{CUSTOMER}  {METER}  events=2  sum(bytes)=700"]


def test_the_api_key_never_appears_in_results_or_logs(
    lago_server: LocalLago, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "lago_SECRET_wrong_9876543210"
    results = make_sink(lago_server.url).send([event(1), event(2)])
    results += make_sink(lago_server.url).send([event(2), event(3)])
    results += make_sink(lago_server.url, key=wrong).send([event(4)])
    lago_server.fail_next(1, 500)
    results += make_sink(lago_server.url).send([event(5)])
    lago_server.stall_next(1, STALL_SECONDS)
    results += make_sink(lago_server.url).send([event(6)])
    results += make_sink(closed_port_url()).send([event(7)])
    lago_server.fail_next(4, 429, reset=0)
    results += make_sink(lago_server.url).send([event(8)])

    assert statuses(results) == [
        SendStatus.ACCEPTED, SendStatus.ACCEPTED, SendStatus.DUPLICATE, SendStatus.ACCEPTED,
        SendStatus.RETRY, SendStatus.UNKNOWN, SendStatus.UNKNOWN, SendStatus.RETRY,
        SendStatus.RETRY]
    assert caplog.records, "nothing was logged: the check proves nothing"
    for secret in (LAGO_KEY, wrong, "SECRET"):
        assert secret not in caplog.text
        assert all(secret not in repr(r) for r in results)
