"""Billing from a real Prometheus loaded with a known history (promtool blocks on 127.0.0.1).

GIVEN two nodes' counters as Prometheus stores them (restarts under a new series, a scrape gap,
a bucket that appears late, one that disappears and returns, fractional/NaN/Inf/huge values,
samples on minute boundaries), WHEN the collector runs until it stops, THEN every
account-minute of the ledger equals an oracle computed from the generated samples alone, the
odd values are quarantined with their reasons, and the window after the newest sample is not
billed yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.domain.model import JobStatus
from minutemeter.local.exporter import account_ids
from minutemeter.local.prometheus import LocalPrometheus, load_history
from minutemeter.local.prometheus_history import NodeHistory, build_node, openmetrics
from minutemeter.local.prometheus_node import METRIC
from minutemeter.ports import LedgerFilter
from minutemeter.service.reconcile import ReconcileRequest, reconcile
from tests.prometheus.history import oracle
from tests.prometheus.support import collect_until_stuck, prometheus_deps, prometheus_source
from tests.support.backends import Backend
from tests.support.clock import FakeClock

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp()) * 1000
START = T0 + timedelta(minutes=2)
ACCOUNTS = account_ids(5, seed=12)
ODD = {100: (ACCOUNTS[0], "1.5"), 200: (ACCOUNTS[1], "NaN"),
       300: (ACCOUNTS[2], "18014398509481984"), 350: (ACCOUNTS[0], "+Inf")}


@dataclass(frozen=True)
class Loaded:
    url: str
    nodes: dict[str, NodeHistory]


@pytest.fixture(scope="module")
def loaded(prometheus_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    n1 = build_node("n1", ACCOUNTS[:4], start_ms=T0_MS, scrapes=480, interval_ms=15_000,
                    offset_ms=123, seed=1, restart_at=160, gap=range(240, 252),
                    late={ACCOUNTS[3]: 120}, absent={ACCOUNTS[2]: range(280, 320)},
                    odd_values=ODD)
    n2 = build_node("n2", ACCOUNTS[1:], start_ms=T0_MS, scrapes=720, interval_ms=10_000,
                    offset_ms=0, seed=2, restart_at=500)
    data = tmp_path_factory.mktemp("prom") / "data"
    load_history(openmetrics([n1, n2]), data)
    with LocalPrometheus(data) as prometheus:
        yield Loaded(prometheus.url, {"n1": n1, "n2": n2})


def _ledger(backend: Backend, source_id: str) -> dict[tuple[str, int], int]:
    usage: dict[tuple[str, int], int] = {}
    for entry in backend.ledger.export(LedgerFilter(source_id=source_id)):
        key = (entry.usage.account_id, int(entry.usage.minute.timestamp()) * 1000)
        assert key not in usage, f"minute billed twice: {key}"
        usage[key] = entry.usage.bytes
    return usage


@pytest.fixture
def backend(concurrent_backend: Backend) -> Backend:
    """The fakes and DynamoDB Local (the commit runs threads: not moto)."""
    return concurrent_backend


def test_history_of_two_nodes_bills_what_the_oracle_says(loaded: Loaded,
                                                         backend: Backend) -> None:
    # GIVEN one source per node: n1 learns its node from the `node` label, n2 has it fixed
    sources = [
        prometheus_source("p-n1", loaded.url, START, node_label="node",
                          selector=f'{METRIC}_total{{node="n1"}}'),
        prometheus_source("p-n2", loaded.url, START, node_id="n2",
                          selector=f'{METRIC}_total{{node="n2"}}'),
    ]
    for source in sources:
        backend.state.sources.put_source(source)
    deps = prometheus_deps(backend, FakeClock(T0 + timedelta(hours=3)))
    for source in sources:
        # WHEN the collector runs until it stops moving
        jobs = collect_until_stuck(deps, source.source_id)
        # THEN it stopped at the last minute boundary Prometheus has a sample after
        node = source.source_id[2:]
        last_ms = loaded.nodes[node].scrapes[-1][0]
        mark = backend.state.sync.get_state(source.source_id).last_completed_until
        assert mark is not None
        chunk_ends = [START + timedelta(minutes=15 * k) for k in range(20)]
        assert mark == max(end for end in chunk_ends if end.timestamp() * 1000 <= last_ms)
        assert jobs[-1].status is JobStatus.OK and not jobs[-1].caught_up
        assert "not ingested up to" in " ".join(jobs[-1].notes)
        assert backend.state.sync.get_state(source.source_id).node_id == node
        # and every account-minute is the oracle's, none twice
        truth = oracle(loaded.nodes[node], start_ms=int(START.timestamp()) * 1000,
                       until_ms=int(mark.timestamp()) * 1000)
        assert _ledger(backend, source.source_id) == truth
        assert sum(truth.values()) > 0 and len({a for a, _ in truth}) >= 3
    # the odd values of n1 were quarantined with their reasons, and n1's restart was a reset
    reasons = {r["reason"] for r in backend.state.records.list_records("p-n1", "quarantine", 50)}
    assert reasons == {"value_not_integral", "value_nan", "value_above_2_53", "value_infinite"}
    resets = backend.state.records.list_records("p-n1", "reset", 50)
    assert {r["account_id"] for r in resets} == set(ACCOUNTS[:4])


def test_a_selector_spanning_two_nodes_fails_and_moves_nothing(loaded: Loaded,
                                                               backend: Backend) -> None:
    # GIVEN a source whose selector matches both nodes' series, the node taken from `node`
    backend.state.sources.put_source(prometheus_source(
        "p-both", loaded.url, START, node_label="node", selector=f"{METRIC}_total"))
    deps = prometheus_deps(backend, FakeClock(T0 + timedelta(hours=3)))
    # WHEN it runs
    jobs = collect_until_stuck(deps, "p-both")
    # THEN the run fails on the identity (one node per source), and nothing moved
    assert jobs[-1].status is JobStatus.ERROR and jobs[-1].error_type == "SourceProtocolError"
    assert "node_id" in (jobs[-1].error or "")
    assert backend.state.sync.get_state("p-both").last_completed_until is None
    assert _ledger(backend, "p-both") == {}


def test_a_selector_prometheus_refuses_is_a_typed_error(loaded: Loaded, backend: Backend) -> None:
    # GIVEN a selector our syntax check lets through but Prometheus refuses (only empty matchers)
    backend.state.sources.put_source(prometheus_source(
        "p-bad", loaded.url, START, node_id="n1", selector='{bucket=~".*"}'))
    deps = prometheus_deps(backend, FakeClock(T0 + timedelta(hours=3)))
    jobs = collect_until_stuck(deps, "p-bad")
    # THEN the run fails with Prometheus' bad_data, and nothing moved
    assert jobs[-1].status is JobStatus.ERROR
    assert jobs[-1].error_type == "PrometheusQueryError" and "bad_data" in (jobs[-1].error or "")
    assert backend.state.sync.get_state("p-bad").last_completed_until is None


def test_two_overlapping_series_of_one_account_are_refused(loaded: Loaded,
                                                           backend: Backend) -> None:
    # GIVEN a node-fixed source over both nodes: an account of n1 and n2 has two series at once
    backend.state.sources.put_source(prometheus_source(
        "p-dup", loaded.url, START, node_id="x", selector=f"{METRIC}_total"))
    deps = prometheus_deps(backend, FakeClock(T0 + timedelta(hours=3)))
    jobs = collect_until_stuck(deps, "p-dup")
    # THEN the run fails naming the conflict, and nothing moved
    assert jobs[-1].status is JobStatus.ERROR and "overlapping times" in (jobs[-1].error or "")
    assert backend.state.sync.get_state("p-dup").last_completed_until is None
    assert _ledger(backend, "p-dup") == {}



def test_reconcile_of_a_billed_window_finds_no_difference(loaded: Loaded,
                                                          backend: Backend) -> None:
    # GIVEN n2 billed from Prometheus
    source = prometheus_source("p-n2", loaded.url, START, node_id="n2",
                               selector=f'{METRIC}_total{{node="n2"}}')
    backend.state.sources.put_source(source)
    deps = prometheus_deps(backend, FakeClock(T0 + timedelta(hours=3)))
    collect_until_stuck(deps, "p-n2")
    mark = backend.state.sync.get_state("p-n2").last_completed_until
    assert mark is not None
    # WHEN a dry-run reconcile reads a billed hour again, across n2's restart
    request = ReconcileRequest("p-n2", START + timedelta(minutes=60), START + timedelta(minutes=90),
                               True, "test")
    result = reconcile(deps, request)
    # THEN the ledger and Prometheus agree
    assert (result.status, result.differences, result.error) == ("ok", [], None)
    assert result.chunks_done == result.chunks_total > 0
