"""Which minutes a run may bill: the window at ``now`` and its minute-aligned chunks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.domain.model import SourceConfig, SyncState, Window
from minutemeter.domain.window import plan_window, split_window

START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def source(*, lag: int = 60, max_window: int = 3600) -> SourceConfig:
    return SourceConfig(
        source_id="src-a",
        url="http://exporter.test",
        start=START,
        lag_seconds=lag,
        max_window_seconds=max_window,
    )


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


# --- plan_window --------------------------------------------------------------------------------


def test_first_run_starts_at_the_configured_start() -> None:
    # GIVEN a source that has never completed a window
    state = SyncState(source_id="src-a")

    # WHEN it runs 10 minutes and 30 seconds after its start with a 60 s lag
    window = plan_window(source(), state, now=at(10.5))

    # THEN the window starts at source.start and ends at floor(now - lag)
    assert window == Window(since=START, until=at(9))
    assert not window.empty


def test_later_runs_start_at_the_watermark() -> None:
    state = SyncState(source_id="src-a", last_completed_until=at(5))

    window = plan_window(source(), state, now=at(20))

    assert window == Window(since=at(5), until=at(19))


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (at(10) + timedelta(seconds=59, microseconds=999_999), at(9)),
        (at(11), at(10)),  # now - lag lands exactly on 10:10:00: minute 10:09 is complete
        (at(11) - timedelta(microseconds=1), at(9)),
    ],
)
def test_until_is_now_minus_lag_floored_to_the_minute(now: datetime, until: datetime) -> None:
    window = plan_window(source(lag=60), SyncState(source_id="src-a"), now=now)

    assert window.until == until


def test_zero_lag_bills_up_to_the_current_minute_start() -> None:
    window = plan_window(source(lag=0), SyncState(source_id="src-a"), now=at(3.25))

    assert window == Window(since=START, until=at(3))


def test_until_is_capped_at_since_plus_max_window() -> None:
    # GIVEN a source far behind (two days) and a 15-minute max window
    state = SyncState(source_id="src-a", last_completed_until=at(30))

    window = plan_window(source(max_window=900), state, now=at(2 * 24 * 60))

    # THEN only the next 15 minutes after the watermark are planned
    assert window == Window(since=at(30), until=at(45))


@pytest.mark.parametrize("now_minutes", [0, 0.5, 1, 1.99])
def test_window_is_empty_until_a_whole_minute_has_passed_the_lag(now_minutes: float) -> None:
    window = plan_window(source(lag=60), SyncState(source_id="src-a"), now=at(now_minutes))

    assert window.empty
    assert window.since >= window.until


def test_window_is_empty_when_the_clock_is_behind_the_watermark() -> None:
    state = SyncState(source_id="src-a", last_completed_until=at(30))

    window = plan_window(source(), state, now=at(10))

    assert window.empty
    assert list(split_window(window, timedelta(minutes=5))) == []


def test_exactly_one_minute_once_it_is_complete() -> None:
    window = plan_window(source(lag=60), SyncState(source_id="src-a"), now=at(2))

    assert window == Window(since=START, until=at(1))
    assert not window.empty


# --- split_window -------------------------------------------------------------------------------


def test_split_into_whole_chunks() -> None:
    chunks = list(split_window(Window(at(0), at(15)), timedelta(minutes=5)))

    assert chunks == [
        Window(at(0), at(5)),
        Window(at(5), at(10)),
        Window(at(10), at(15)),
    ]


def test_split_keeps_a_last_partial_chunk() -> None:
    chunks = list(split_window(Window(at(0), at(12)), timedelta(minutes=5)))

    assert chunks == [Window(at(0), at(5)), Window(at(5), at(10)), Window(at(10), at(12))]


def test_split_chunk_larger_than_window_gives_the_window() -> None:
    window = Window(at(0), at(3))

    assert list(split_window(window, timedelta(hours=1))) == [window]


def test_split_of_empty_window_yields_nothing() -> None:
    assert list(split_window(Window(at(5), at(5)), timedelta(minutes=1))) == []


def test_chunks_are_contiguous_and_cover_the_window() -> None:
    window = Window(at(0), at(61))

    chunks = list(split_window(window, timedelta(minutes=7)))

    assert chunks[0].since == window.since
    assert chunks[-1].until == window.until
    assert all(a.until == b.since for a, b in itertools.pairwise(chunks))
    assert all(c.until - c.since <= timedelta(minutes=7) for c in chunks)
    assert len(chunks) == 9


@pytest.mark.parametrize(
    "chunk",
    [
        timedelta(0),
        timedelta(seconds=30),
        timedelta(seconds=90),
        timedelta(minutes=1, microseconds=1),
        timedelta(minutes=-5),
    ],
)
def test_split_rejects_chunks_that_are_not_whole_minutes(chunk: timedelta) -> None:
    with pytest.raises(ValueError, match="whole number of minutes"):
        list(split_window(Window(at(0), at(10)), chunk))
