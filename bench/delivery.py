"""The delivery bench: what exactly-once delivery to a billing system costs in DynamoDB units.

A ledger of ``--accounts`` x ``--minutes`` usage entries (as a catch-up plan writes them) is
delivered to the local Stripe (``minutemeter.local.stripe_server``) through the real
``StripeSink`` and the delivery records on DynamoDB Local, then delivered again (what a
duplicate stream batch or a backfill over delivered entries costs). Units are DynamoDB Local's
ConsumedCapacity for these PutItem/BatchGetItem calls (no transactions, so nothing to re-price).
Reported under ``delivery`` in ``bench/results.json``. ``python -m bench.delivery``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import timedelta
from typing import Any

from bench.run import ORIGIN, PROFILE, RESULTS, FixedClock, _stores
from minutemeter.adapters.sinks import StripeSink
from minutemeter.domain.delivery import SinkConfig, SinkKind, SinkValue
from minutemeter.domain.model import MinuteUsage, QuotaPlan
from minutemeter.domain.rating import plan_entries
from minutemeter.local.ddb import LOCAL_CREDENTIALS, DynamoDBLocal
from minutemeter.local.exporter import account_ids
from minutemeter.local.stripe_server import LocalStripe
from minutemeter.service.delivery import DeliveryDeps, deliver_entries

KEY = "delivery"
API_KEY = "sk_test_bench"


def _entries(accounts: list[str], minutes: int) -> list[Any]:
    entries = []
    for account in accounts:
        usages = tuple(
            MinuteUsage("node-a", account, ORIGIN + timedelta(minutes=m), 1000 + m, m * 1000,
                        m * 1000 + 1000 + m, ORIGIN + timedelta(minutes=m, seconds=1),
                        ORIGIN + timedelta(minutes=m, seconds=59), 4)
            for m in range(minutes))
        plan = QuotaPlan(str(uuid.uuid4()), "bench", account, ORIGIN.strftime("%Y-%m"), 0,
                         PROFILE, "bench", ORIGIN, usages)
        entries.extend(plan_entries(plan))
    return entries


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.update(LOCAL_CREDENTIALS)
    accounts = account_ids(args.accounts, seed=7)
    # value = all bytes: with PROFILE's included quota every entry would be 0 billable (not sent)
    entries = _entries(accounts, args.minutes)
    now = ORIGIN + timedelta(minutes=args.minutes + 1)
    with DynamoDBLocal() as ddb, LocalStripe(api_key=API_KEY, clock=lambda: now) as stripe:
        _settings, meter, _ledger, state = _stores(ddb.client())
        for number, account in enumerate(accounts):
            state.profiles.put_profile(account, PROFILE, customer=f"cus_{number}")
        config = SinkConfig("bench", SinkKind.STRIPE, stripe.url, "bench_bytes", SinkValue.BYTES,
                            api_key_env="UNUSED")
        sink = StripeSink(config, API_KEY)
        deps = DeliveryDeps(state.deliveries, state.profiles, FixedClock(now))
        result: dict[str, Any] = {"accounts": args.accounts, "entries": len(entries)}
        for phase in ("first", "again"):
            write, read = meter.total_write_units(), meter.total_read_units()
            started = time.perf_counter()
            report = deliver_entries(deps, sink, entries)
            seconds = time.perf_counter() - started
            result[phase] = {
                "delivered": report.delivered, "already_delivered": report.already_delivered,
                "seconds": round(seconds, 2),
                "write_units_per_entry": round((meter.total_write_units() - write)
                                               / len(entries), 3),
                "read_units_per_entry": round((meter.total_read_units() - read)
                                              / len(entries), 3),
            }
        sums = stripe.sums()
        result["stripe_sum_equals_ledger"] = (
            sum(sums.values()) == sum(e.usage.bytes for e in entries)
            and len(stripe.events) == len(entries))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--minutes", type=int, default=20)
    result = run(parser.parse_args(argv))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[KEY] = result
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    first, again = result["first"], result["again"]
    print(f"delivery to a local Stripe, {result['entries']} entries "
          f"({result['accounts']} accounts):")
    print(f"  first delivery: {first['delivered']} delivered in {first['seconds']} s, "
          f"{first['write_units_per_entry']} WU / {first['read_units_per_entry']} RU per entry")
    print(f"  again (all delivered): {again['already_delivered']} already delivered, "
          f"{again['write_units_per_entry']} WU / {again['read_units_per_entry']} RU per entry")
    print(f"  Stripe's sums equal the ledger, each entry once: "
          f"{'yes' if result['stripe_sum_equals_ledger'] else 'NO'}")
    return 0 if result["stripe_sum_equals_ledger"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
