"""The factory of source readers: every kind has one, each built once and only when used, a
given reader replaces the default for its kind, and a kind without a reader is a plain error."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from minutemeter.adapters.exporter_http import HttpExporter
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.bootstrap import LazyReaders, bootstrap, reader_builders
from minutemeter.domain.errors import ConfigError
from minutemeter.domain.exporter_errors import SourceKindError
from minutemeter.domain.model import RawSnapshot, SourceConfig, SourceKind, SyncState, Window
from minutemeter.domain.validation import SampleRules
from minutemeter.ports import CounterIdentity, CounterReader, WindowRead
from minutemeter.service.fetch import WindowFetch, expected_identity, reader_for
from minutemeter.settings import Settings

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
SOURCE = SourceConfig(source_id="s1", url="http://127.0.0.1:9", start=T0)


def _no_token(source: SourceConfig) -> str | None:
    return None


class StubRead:
    """A read of one batch with one unreadable snapshot, naming node-z / qa."""

    node_id: str | None = "node-z"
    env: str | None = "qa"
    pages = 1

    def __iter__(self) -> Iterator[Sequence[RawSnapshot]]:
        yield (RawSnapshot(taken_at="garbage", samples=({"account_id": "x"},)),)


class StubReader:
    """A reader of any kind that records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[CounterIdentity] = []

    def read(self, source: SourceConfig, expected: CounterIdentity, window: Window, *,
             before_request: Callable[[], None],
             time_left: Callable[[], float | None]) -> WindowRead:
        self.asked.append(expected)
        return StubRead()


def test_every_source_kind_has_a_reader() -> None:
    builders = reader_builders(Settings(), _no_token)

    assert set(builders) == set(SourceKind)


def test_the_exporter_kind_is_read_over_http() -> None:
    reader = reader_builders(Settings(), _no_token)[SourceKind.EXPORTER]()

    assert isinstance(reader, ExporterReader)
    assert isinstance(reader._pages, HttpExporter)


def test_readers_are_built_on_first_use_and_then_kept() -> None:
    built: list[StubReader] = []

    def build() -> CounterReader:
        built.append(StubReader())
        return built[-1]

    readers = LazyReaders({SourceKind.EXPORTER: build})
    assert built == [] and list(readers) == [SourceKind.EXPORTER] and len(readers) == 1

    first, again = readers[SourceKind.EXPORTER], readers[SourceKind.EXPORTER]

    assert first is again is built[0] and len(built) == 1


def test_a_given_reader_replaces_the_default_for_its_kind() -> None:
    given = StubReader()
    app = bootstrap(Settings(), readers={SourceKind.EXPORTER: given},
                    session=boto3.session.Session(region_name="us-east-1"))

    assert app.readers[SourceKind.EXPORTER] is given
    assert app.billing_deps.readers[SourceKind.EXPORTER] is given


def test_bootstrap_wires_the_factory_by_default() -> None:
    app = bootstrap(Settings(), session=boto3.session.Session(region_name="us-east-1"))

    assert set(app.readers) == set(SourceKind)
    assert isinstance(app.readers[SourceKind.EXPORTER], ExporterReader)


def test_a_kind_without_a_reader_is_a_config_error_naming_it() -> None:
    with pytest.raises(SourceKindError) as caught:
        reader_for({}, SOURCE)

    assert isinstance(caught.value, ConfigError)
    assert (caught.value.source_id, caught.value.kind) == ("s1", SourceKind.EXPORTER)
    assert str(caught.value) == (
        "source 's1' is of kind 'exporter', which no reader here can read (kinds read: none); "
        "wire its adapter in bootstrap, or register the source with a kind that is"
    )


def test_the_reader_is_picked_by_the_sources_kind() -> None:
    reader = StubReader()

    assert reader_for({SourceKind.EXPORTER: reader}, SOURCE) is reader


def test_a_fetch_asks_the_reader_for_the_expected_identity_and_validates_its_batches() -> None:
    # GIVEN a source whose configuration names the node, and whose baseline named the env
    source = SourceConfig(source_id="s1", url="http://127.0.0.1:9", start=T0, node_id="node-z")
    state = SyncState(source_id="s1", node_id="node-old", env="qa")
    reader = StubReader()
    window = Window(T0, T0 + timedelta(minutes=15))
    rules = SampleRules(window=window, now=T0 + timedelta(hours=1), tolerance=timedelta(0),
                        max_counter=2**63)

    # WHEN the window is fetched
    fetch = WindowFetch({SourceKind.EXPORTER: reader}, source, state, window, rules)
    batches = list(fetch)

    # THEN the configured node wins, the env comes from the baseline, and the samples of the
    # kind's batches are validated by the service (an unreadable time is quarantined)
    assert reader.asked == [CounterIdentity(node_id="node-z", env="qa")]
    assert expected_identity(source, state) == reader.asked[0]
    assert batches == [[]]
    assert fetch.validated.quarantined_count == 1
    assert (fetch.node_id, fetch.env, fetch.pages) == ("node-z", "qa", 1)


def test_a_fetch_of_a_kind_without_a_reader_fails_before_any_request() -> None:
    window = Window(T0, T0 + timedelta(minutes=15))
    rules = SampleRules(window=window, now=T0, tolerance=timedelta(0), max_counter=1)

    with pytest.raises(SourceKindError):
        WindowFetch({}, SOURCE, SyncState(source_id="s1"), window, rules)
