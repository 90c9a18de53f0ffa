"""Inputs that must never bill more than the counters moved (issue 9), end to end: a real HTTP
exporter on 127.0.0.1 and the real DynamoDB adapters on moto and DynamoDB Local.

GIVEN an exporter that lists an account twice in a snapshot, or a source pointed at another
node or env, or an exporter that sends nothing but bad samples,
WHEN the collector runs,
THEN the ledger equals the spec's oracle (shared/spec/exporter-api.md, "Usage semantics").
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minutemeter.adapters.exporter_http import HttpExporter
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.domain.errors import InputError
from minutemeter.domain.model import JobStatus, ResetPolicy, SourceConfig, SourceKind
from minutemeter.local.exporter import (
    SampleExporter,
    StaticHistory,
    SyntheticCounters,
    account_ids,
    rfc3339,
)
from minutemeter.local.truth import expected_usage
from minutemeter.ports import CounterReader
from minutemeter.service.collect import collect_source
from minutemeter.service.reconcile import ReconcileRequest, reconcile
from minutemeter.service.sources import SourceChanges, put_source
from tests.support.backends import Backend
from tests.support.clock import FakeClock
from tests.support.harness import deps_for, exported, ledger_usage, run_until_caught_up

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
START = T0 + timedelta(minutes=1)
ACCOUNTS = account_ids(3, seed=9)
History = list[tuple[datetime, dict[str, int]]]


def _raw(at: datetime, samples: list[tuple[str, object]]) -> dict[str, object]:
    return {"taken_at": rfc3339(at),
            "samples": [{"account_id": a, "total_bytes": v} for a, v in samples]}


def _static(history: History, extra: dict[datetime, list[tuple[str, object]]] | None = None,
            ) -> StaticHistory:
    """``history`` as the exporter serves it; ``extra`` samples are listed *first* in their
    snapshot (a second copy of an account goes before the real one)."""
    extra = extra or {}
    return StaticHistory([(at, _raw(at, extra.get(at, []) + list(values.items())))
                          for at, values in history])


def _merge(*parts: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    total: Counter[tuple[str, str]] = Counter()
    for part in parts:
        total.update(part)
    return {k: v for k, v in total.items() if v}


def test_an_account_listed_twice_is_unreadable_whichever_copy_comes_first(
    any_backend: Backend,
) -> None:
    # GIVEN a snapshot at about 10:10:15 that lists ACCOUNTS[0] twice, a wrong counter first
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=30))
    history = counters.history(T0 + timedelta(minutes=30))
    doubled = history[41][0]  # 10:10:15 and a few ms
    wrong: dict[datetime, list[tuple[str, object]]] = {doubled: [(ACCOUNTS[0], 10**15)]}
    with SampleExporter(_static(history, wrong)) as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START))
        deps = deps_for(any_backend, FakeClock(T0 + timedelta(minutes=30)))
        jobs = run_until_caught_up(deps, "s1")
        mark = any_backend.state.sync.get_state("s1").last_completed_until
        assert mark is not None
        dry = reconcile(deps, ReconcileRequest("s1", START, mark, True, "test"))
    # THEN the account is billed as if that snapshot did not list it (its next readable sample
    # diffs against its last readable one): exactly its counter's increase, not 10**15
    unreadable = [(at, {a: v for a, v in values.items()
                        if not (at == doubled and a == ACCOUNTS[0])}) for at, values in history]
    truth = expected_usage(unreadable, start=START, until=mark)
    assert ledger_usage(exported(any_backend, "s1")) == truth
    assert truth == expected_usage(history, start=START, until=mark)  # no usage lost either
    assert JobStatus.PARTIAL in {job.status for job in jobs}
    records = any_backend.state.records.list_records("s1", "quarantine", 10)
    assert [r["reason"] for r in records] == ["account_duplicated_in_snapshot"] * 2
    assert dry.status == "ok"  # reconcile applies the same rule


@pytest.mark.parametrize("change", ["node_id", "env"])
def test_a_source_pointed_at_new_counters_starts_from_a_fresh_baseline(
    any_backend: Backend, change: str
) -> None:
    # GIVEN a source billed from node-a/prod for 20 minutes
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=60))
    history = counters.history(T0 + timedelta(minutes=60))
    switch = T0 + timedelta(minutes=20)
    # the other node's (or env's) counters: the same accounts, with a long history of their own
    other = [(at, {a: v + 7 * 10**12 for a, v in values.items()}) for at, values in history]
    served = [item for item in history if item[0] < switch] + [
        item for item in other if item[0] >= switch]
    with SampleExporter(_static(served), node_id="node-a", env="prod") as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START,
                                                          node_id="node-a", env="prod",
                                                          lag_seconds=0))
        run_until_caught_up(deps_for(any_backend, FakeClock(switch)), "s1")
        assert any_backend.state.sync.get_state("s1").last_completed_until == switch
        # WHEN the node is renamed (or moved to another env) and the operator says so
        if change == "node_id":
            exporter.node_id = "node-b"
        else:
            exporter.env = "staging"
        source = any_backend.state.sources.get_source("s1")
        any_backend.state.sources.put_source(replace(source, **{change: getattr(exporter, change)}))
        later = T0 + timedelta(minutes=45)
        jobs = run_until_caught_up(deps_for(any_backend, FakeClock(later)), "s1")
    # THEN the new counters start from a fresh baseline: nothing is diffed against node-a's
    truth = _merge(expected_usage(history, start=START, until=switch),
                   expected_usage(other, start=switch, until=later))
    assert ledger_usage(exported(any_backend, "s1")) == truth
    assert max(truth.values()) < 10**9
    state = any_backend.state.sync.get_state("s1")
    assert (state.node_id, state.env) == (exporter.node_id, exporter.env)
    assert state.baseline_taken_at is not None and state.baseline_taken_at >= switch
    assert any("fresh baseline" in note for job in jobs for note in job.notes)
    # and a reconcile of the old identity's minutes is refused, not diffed against new counters
    with pytest.raises(Exception, match="before the source's baseline"):
        reconcile(deps_for(any_backend, FakeClock(later)),
                  ReconcileRequest("s1", START, switch, True, "test"))


def test_a_node_renamed_back_does_not_diff_against_its_old_checkpoints(
    any_backend: Backend,
) -> None:
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=60))
    history = counters.history(T0 + timedelta(minutes=60))
    with SampleExporter(_static(history), node_id="node-a") as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START,
                                                          node_id="node-a", lag_seconds=0))
        marks = [T0 + timedelta(minutes=m) for m in (15, 30, 45)]
        for node, mark in zip(("node-a", "node-b", "node-a"), marks, strict=True):
            exporter.node_id = node
            source = any_backend.state.sources.get_source("s1")
            any_backend.state.sources.put_source(replace(source, node_id=node))
            run_until_caught_up(deps_for(any_backend, FakeClock(mark)), "s1")
    # three identities, three baselines: the usage between them is not billed, nothing doubles
    truth = _merge(expected_usage(history, start=START, until=marks[0]),
                   expected_usage(history, start=marks[0], until=marks[1]),
                   expected_usage(history, start=marks[1], until=marks[2]))
    assert ledger_usage(exported(any_backend, "s1")) == truth


def test_another_node_behind_the_same_url_is_refused_and_bills_nothing(
    any_backend: Backend,
) -> None:
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=40))
    with SampleExporter(counters, node_id="node-a") as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START, lag_seconds=0))
        run_until_caught_up(deps_for(any_backend, FakeClock(T0 + timedelta(minutes=20))), "s1")
        before = exported(any_backend, "s1")
        exporter.node_id = "node-z"  # the URL now reaches another node (no --node-id was set)
        job = collect_source(deps_for(any_backend, FakeClock(T0 + timedelta(minutes=40))), "s1")
    assert job.status is JobStatus.ERROR
    assert job.error is not None and "set the source's --node-id" in job.error
    assert exported(any_backend, "s1") == before
    assert any_backend.state.sync.get_state("s1").last_completed_until == T0 + timedelta(minutes=20)


def test_a_systematically_bad_exporter_costs_a_bounded_number_of_records(
    any_backend: Backend,
) -> None:
    # GIVEN an exporter whose every counter is a float: 40 accounts x 4 snapshots x 15 minutes
    accounts = account_ids(40, seed=11)
    at = [T0 + timedelta(seconds=15 * k) for k in range(4 * 16)]
    bad = StaticHistory([(t, _raw(t, [(a, 1.5) for a in accounts])) for t in at])
    with SampleExporter(bad, page_size=10) as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START, lag_seconds=0,
                                                          max_window_seconds=900))
        job = collect_source(deps_for(any_backend, FakeClock(T0 + timedelta(minutes=16))), "s1")
    # THEN every bad sample is counted, but at most 1000 are kept one by one, plus one summary
    assert job.status is JobStatus.PARTIAL
    assert job.quarantined_samples == 40 * 4 * 15
    records = any_backend.state.records.list_records("s1", "quarantine", 5000)
    assert len(records) == 1001
    summary = [r for r in records if r["reason"] == "quarantine_overflow"]
    assert len(summary) == 1 and '"total_bytes_not_integer":1400' in str(summary[0]["raw"])


def test_an_exporter_that_does_not_page_is_fetched_in_smaller_windows(
    any_backend: Backend,
) -> None:
    # GIVEN an exporter that sends a whole window in one body, and a body cap that 15 minutes
    # of it exceed but 3 minutes do not
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=40))
    with SampleExporter(counters, page_size=100_000) as exporter:
        any_backend.state.sources.put_source(SourceConfig("s1", exporter.url, START, lag_seconds=0,
                                                          max_window_seconds=1800))
        one_minute = len(exporter.respond(
            "/v1/usage/window", {"since": "2026-11-22T10:05:00Z", "until": "2026-11-22T10:06:00Z"},
            None)[1])
        deps = replace(deps_for(any_backend, FakeClock(T0 + timedelta(minutes=31))),
                       readers=_http_readers(max_body_bytes=4 * one_minute))
        # WHEN the collector runs
        job = collect_source(deps, "s1")
        # THEN it halves the window until the body fits, and bills exactly the counters
        assert job.status is JobStatus.OK, job.error
        assert any("fetching it in halves" in note for note in job.notes)
        mark = any_backend.state.sync.get_state("s1").last_completed_until
        assert mark == START + timedelta(minutes=30)
        truth = expected_usage(counters.history(mark), start=START, until=mark)
        assert ledger_usage(exported(any_backend, "s1")) == truth
        # and a cap that not even one minute fits fails plainly, moving nothing
        tiny = replace(deps, readers=_http_readers(max_body_bytes=one_minute // 2),
                       clock=FakeClock(T0 + timedelta(minutes=40)))
        failed = collect_source(tiny, "s1")
    assert failed.status is JobStatus.ERROR
    assert failed.error is not None and "lower the source's --max-window" in failed.error
    assert any_backend.state.sync.get_state("s1").last_completed_until == mark


def _http_readers(*, max_body_bytes: int) -> dict[SourceKind, CounterReader]:
    """The exporter kind read over HTTP with a body cap of ``max_body_bytes``."""
    return {SourceKind.EXPORTER: ExporterReader(HttpExporter(
        timeout_seconds=5, retries=0, max_body_bytes=max_body_bytes))}


class _RealBudget:
    """A Lambda-like budget on the real monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self._until = time.monotonic() + seconds

    def remaining_seconds(self) -> float | None:
        return self._until - time.monotonic()


class _Trickle(BaseHTTPRequestHandler):
    """A 200 whose body arrives one byte every second, for ever (until the client hangs up)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(120):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(1.0)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_trickling_exporter_cannot_hold_a_run_past_its_budget(any_backend: Backend) -> None:
    # GIVEN an exporter that trickles its body, and a run with 8 s of budget and a 4 s deadline
    # margin (a fetch may use half of it; the rest is kept for committing and recording)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        any_backend.state.sources.put_source(SourceConfig("s1", f"http://{host!s}:{port}", START,
                                                          lag_seconds=0))
        deps = deps_for(any_backend, FakeClock(T0 + timedelta(minutes=20)),
                        deadline_margin_seconds=4)
        started = time.monotonic()
        # WHEN the collector runs
        job = collect_source(deps, "s1", budget=_RealBudget(8.0))
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    # THEN the fetch stops at its deadline, the run fails cleanly and the failure is recorded
    assert job.status is JobStatus.ERROR and job.error_type == "DeadlineError"
    assert elapsed < 8.0
    state = any_backend.state.sync.get_state("s1")
    assert state.last_error is not None and "deadline" in state.last_error
    assert state.last_completed_until is None


def test_a_billed_source_keeps_its_reset_policy(any_backend: Backend) -> None:
    # GIVEN a source that has billed with the default reset policy
    stores = (any_backend.state.sources, any_backend.state.sync)
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=20))
    with SampleExporter(counters) as exporter:
        put_source(*stores, "s1", SourceChanges(url=exporter.url, start=START, lag_seconds=0),
                   T0)
        # a policy may change while nothing was billed
        put_source(*stores, "s1", SourceChanges(reset_policy=ResetPolicy.FROM_ZERO), T0)
        put_source(*stores, "s1", SourceChanges(reset_policy=ResetPolicy.SKIP), T0)
        run_until_caught_up(deps_for(any_backend, FakeClock(T0 + timedelta(minutes=20))), "s1")
    # WHEN the operator changes it afterwards, THEN that is refused with what to do instead
    with pytest.raises(InputError, match="Register a new source id"):
        put_source(*stores, "s1", SourceChanges(reset_policy=ResetPolicy.FROM_ZERO), T0)
    assert any_backend.state.sources.get_source("s1").reset_policy is ResetPolicy.SKIP
    # and other options still change
    assert put_source(*stores, "s1", SourceChanges(lag_seconds=30), T0).lag_seconds == 30


def test_a_billed_source_keeps_its_kind(any_backend: Backend) -> None:
    # GIVEN a source registered as an exporter source (the default), not billed yet
    stores = (any_backend.state.sources, any_backend.state.sync)
    counters = SyntheticCounters(ACCOUNTS, T0, end=T0 + timedelta(minutes=20))
    with SampleExporter(counters) as exporter:
        put_source(*stores, "s1", SourceChanges(url=exporter.url, start=START, lag_seconds=0),
                   T0)
        # the kind may be set again while nothing was billed
        assert put_source(*stores, "s1", SourceChanges(kind=SourceKind.EXPORTER),
                          T0).kind is SourceKind.EXPORTER
        run_until_caught_up(deps_for(any_backend, FakeClock(T0 + timedelta(minutes=20))), "s1")
    # WHEN the operator gives it another kind once it has billed
    other = SourceChanges(kind=SourceKind.PROMETHEUS, selector="b_total", account_label="b")
    with pytest.raises(InputError) as caught:
        put_source(*stores, "s1", other, T0)
    # THEN that is refused, saying what to do instead, and nothing changes
    assert str(caught.value) == (
        "source 's1' has billed up to 2026-11-22T10:20:00Z as --kind exporter; another kind "
        "reads other counters, which must not be diffed against the ones already billed. "
        "Register a new source id with --kind prometheus --start 2026-11-22T10:20:00Z (it "
        "starts from a fresh baseline), then disable this one"
    )
    assert any_backend.state.sources.get_source("s1").kind is SourceKind.EXPORTER
    # and setting the kind it has is no change
    assert put_source(*stores, "s1", SourceChanges(kind=SourceKind.EXPORTER, lag_seconds=30),
                      T0).lag_seconds == 30


def test_a_source_of_a_kind_without_a_reader_fails_its_runs_and_moves_nothing(
    any_backend: Backend,
) -> None:
    # GIVEN an exporter source, and a collector wired with no reader for that kind
    any_backend.state.sources.put_source(SourceConfig("s1", "http://127.0.0.1:9", START,
                                                      lag_seconds=0))
    deps = replace(deps_for(any_backend, FakeClock(T0 + timedelta(minutes=20))), readers={})

    # WHEN it runs
    job = collect_source(deps, "s1")

    # THEN the run fails plainly, recorded like any failure, and nothing moves
    assert job.status is JobStatus.ERROR and job.error_type == "SourceKindError"
    assert job.error is not None and "of kind 'exporter', which no reader here can read" in (
        job.error)
    state = any_backend.state.sync.get_state("s1")
    assert state.last_completed_until is None and state.consecutive_failures == 1
    assert exported(any_backend, "s1") == []
