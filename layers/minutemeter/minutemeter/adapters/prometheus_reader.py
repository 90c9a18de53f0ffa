"""The reader of kind ``prometheus``: raw samples of a series selector, from the HTTP API.

:class:`PrometheusReader` is the :class:`minutemeter.ports.CounterReader` of
``SourceKind.PROMETHEUS``. For a window ``[since, until)`` it

1. checks that Prometheus has ingested the selector up to ``until`` (a sample at or after
   ``until``; :meth:`PrometheusWindowRead._check_ready`), else raises
   :class:`~minutemeter.domain.exporter_errors.WindowNotReadyError` (the collector bills up to
   the window before and stops, the window is billed by a later run); the node of a
   ``--node-label`` source is learned (or enforced) from that answer too;
2. reads the window in slices of at most ``query_minutes`` minutes, one instant query
   ``selector[<slice>ms]`` evaluated at the slice's last millisecond per slice, which answers
   every raw sample with its own timestamp (never ``query_range``, whose steps resample, nor
   ``rate``/``increase``, which extrapolate). Samples outside the slice are dropped, so the
   result is the same whether the range is closed (Prometheus 2) or left-open (3).

Each slice is a batch (a "page"): its series become snapshots
(:mod:`minutemeter.adapters.prometheus_samples`), all of one node and env (``IdentityCheck``:
the configured ``--node-id``, or the ``--node-label`` value learned once, then enforced; the
env is ``--env`` or ``prometheus``). A slice whose answer is over the client's body cap raises
``BodyTooLargeError``: the collector halves its chunk, down to one minute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from minutemeter.adapters.prometheus_http import PrometheusHttp
from minutemeter.adapters.prometheus_samples import Series, node_of, parse_matrix, snapshots
from minutemeter.domain.errors import SourceProtocolError
from minutemeter.domain.exporter_errors import WindowNotReadyError
from minutemeter.domain.model import RawSnapshot, SourceConfig, Window
from minutemeter.domain.protocol import IdentityCheck, check_page_count
from minutemeter.ports import CounterIdentity, CounterReader, WindowRead

DEFAULT_ENV = "prometheus"
QUERY_MINUTES = 5  # one query reads at most this much of the window
# How far past ``until`` the readiness check counts samples (one number per node comes back);
# past it (a longer scrape gap) it asks for the newest sample at the server's now instead.
READY_HORIZON = timedelta(minutes=15)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


class PrometheusReader:
    """:class:`minutemeter.ports.CounterReader` over instant queries of ``client``."""

    def __init__(self, client: PrometheusHttp, *, query_minutes: int = QUERY_MINUTES,
                 ready_horizon: timedelta = READY_HORIZON) -> None:
        if query_minutes < 1 or ready_horizon < timedelta(seconds=1):
            raise ValueError("query_minutes must be >= 1 and ready_horizon >= 1 s")
        self.client = client
        self.slice = timedelta(minutes=query_minutes)
        self.horizon_ms = int(ready_horizon.total_seconds() * 1000)

    def read(
        self,
        source: SourceConfig,
        expected: CounterIdentity,
        window: Window,
        *,
        before_request: Callable[[], None],
        time_left: Callable[[], float | None],
    ) -> PrometheusWindowRead:
        return PrometheusWindowRead(self, source, expected, window,
                                    before_request=before_request, time_left=time_left)


class PrometheusWindowRead:
    """One window of one Prometheus source, slice by slice (see the module)."""

    def __init__(
        self,
        reader: PrometheusReader,
        source: SourceConfig,
        expected: CounterIdentity,
        window: Window,
        *,
        before_request: Callable[[], None],
        time_left: Callable[[], float | None],
    ) -> None:
        if source.selector is None or source.account_label is None:
            raise SourceProtocolError(
                f"source {source.source_id!r} of kind prometheus has no --selector or "
                "--account-label", field="selector")
        self._reader = reader
        self._source = source
        self._selector = source.selector.strip()
        self._account_label = source.account_label
        self._window = window
        self._before_request = before_request
        self._time_left = time_left
        self._identity = IdentityCheck(expected_node=expected.node_id,
                                       expected_env=expected.env)
        self._env = source.env or DEFAULT_ENV
        self._fixed_node = source.node_id or source.source_id
        self._pages = 0

    @property
    def node_id(self) -> str | None:
        return self._identity.node_id

    @property
    def env(self) -> str | None:
        return self._identity.env

    @property
    def pages(self) -> int:
        return self._pages

    def __iter__(self) -> Iterator[Sequence[RawSnapshot]]:
        if self._window.empty:
            return
        self._before_request()
        self._check_ready()
        start = self._window.since
        while start < self._window.until:
            end = min(start + self._reader.slice, self._window.until)
            check_page_count(self._pages)
            self._before_request()
            batch = self._slice(start, end)
            self._pages += 1
            if batch:
                yield batch  # this frame keeps no reference to the batch it yields
            del batch
            start = end

    def _slice(self, since: datetime, until: datetime) -> tuple[RawSnapshot, ...]:
        since_ms, until_ms = _ms(since), _ms(until)
        kind, result = self._query(f"{self._selector}[{until_ms - since_ms}ms]", until_ms - 1,
                                   (since, until))
        series = parse_matrix(kind, result, what=f"prometheus source {self._source.source_id!r}")
        for one in series:
            if any(since_ms <= ms < until_ms for ms, _ in one.points):
                self._identity.check(self._node(one), self._env)
        return snapshots(series, account_label=self._account_label, since_ms=since_ms,
                         until_ms=until_ms)

    def _check_ready(self) -> None:
        """Raise :class:`WindowNotReadyError` unless a sample of the selector at or after the
        window's end exists: first in the :data:`READY_HORIZON` after it (one small answer: a
        count per node), else at the server's now (the newest sample within Prometheus'
        lookback, 5 minutes by default). A node that stopped reporting for good therefore holds
        its source back until it is disabled: its last samples may still be on their way."""
        until = self._window.until
        until_ms = _ms(until)
        horizon = self._reader.horizon_ms
        by = f" by ({self._source.node_label})" if self._source.node_label else ""
        kind, result = self._query(
            f"count{by} (count_over_time({self._selector}[{horizon - 1}ms]))",
            until_ms + horizon - 1, (until, until + timedelta(milliseconds=horizon)))
        newest: Decimal | None = None
        if not result:
            kind, result = self._query(f"max{by} (timestamp({self._selector}))", None,
                                       (until, until))
            stamps = [_vector_value(item) for item in result]
            newest = max(stamps) if stamps else None
            if newest is None or newest * 1000 < until_ms:
                seen = (None if newest is None
                        else datetime.fromtimestamp(float(newest), tz=UTC))
                raise WindowNotReadyError(self._source.source_id, until, seen)
        if kind != "vector":
            raise SourceProtocolError(f"prometheus: an aggregation answered {kind[:20]!r}, not "
                                      "a vector", field="resultType")
        for item in result:
            labels = item.get("metric") if isinstance(item, dict) else None
            if not isinstance(labels, dict):
                raise SourceProtocolError("prometheus: a vector element without labels",
                                          field="metric")
            self._identity.check(self._node(Series(labels, ())), self._env)

    def _node(self, series: Series) -> str:
        return node_of(series.labels, self._source.node_label, self._fixed_node,
                       series.describe)

    def _query(self, promql: str, at_ms: int | None,
               window: tuple[datetime, datetime]) -> tuple[str, list[object]]:
        return self._reader.client.query(self._source, promql, at_ms,
                                          time_left=self._time_left(), window=window)


def _vector_value(item: object) -> Decimal:
    """The value of an instant vector element ``{"metric", "value": [t, "v"]}``."""
    value = item.get("value") if isinstance(item, dict) else None
    if not isinstance(value, list) or len(value) != 2:
        raise SourceProtocolError("prometheus: a vector element without a value", field="value")
    try:
        return Decimal(str(value[1]))
    except ArithmeticError as exc:
        raise SourceProtocolError("prometheus: a vector value is not a number",
                                  field="value") from exc


def _implements_the_ports(
    reader: PrometheusReader, read: PrometheusWindowRead
) -> tuple[CounterReader, WindowRead]:
    """Never called: mypy checks here that the adapter fits the ports."""
    return reader, read
