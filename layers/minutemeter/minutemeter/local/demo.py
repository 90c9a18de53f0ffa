"""``make demo``: the main job on the embedded default, end to end on this machine.

Starts DynamoDB Local and a sample exporter on 127.0.0.1 (8 accounts, 2 h of history, one counter
reset, one account that appears late), runs a drift check against NTP servers on 127.0.0.1,
then invokes the collector Lambda handler the way EventBridge Scheduler does, cycle after cycle
(one delivery twice, as at-least-once delivery may), prints what was billed next to what the
exporter's counters say, and reconciles a window after the exporter corrects a counter.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections import defaultdict
from contextlib import redirect_stdout
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO
from types import ModuleType, SimpleNamespace
from typing import Any

from minutemeter.adapters.system import SystemClock
from minutemeter.bootstrap import App, bootstrap
from minutemeter.cli import main as cli
from minutemeter.domain.model import LedgerEntry
from minutemeter.local import prometheus_demo
from minutemeter.local.ddb import LOCAL_CREDENTIALS, REPO_ROOT, DynamoDBLocal
from minutemeter.local.demo_billing import statements_and_delivery
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.local.ntp_responder import NtpResponder
from minutemeter.local.truth import expected_usage
from minutemeter.ports import LedgerFilter

HANDLER = REPO_ROOT / "functions" / "collector" / "app.py"


def say(text: str) -> None:
    print(text, flush=True)


def _load_handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("collector_app", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _context() -> Any:
    return SimpleNamespace(
        function_name="minutemeter-collector",
        memory_limit_in_mb=512,
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:collector",
        aws_request_id="demo",
        get_remaining_time_in_millis=lambda: 300_000,
    )


def main() -> int:
    clock = SystemClock()
    now = clock.now()
    origin = now.replace(second=0, microsecond=0) - timedelta(hours=2)
    accounts = account_ids(8, seed=2026)
    counters = SyntheticCounters(
        accounts,
        origin,
        resets={accounts[2]: origin + timedelta(minutes=47, seconds=20)},
        appear={accounts[7]: 200},
        live_clock=clock.now,
    )
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    say("minutemeter demo: starting DynamoDB Local and a sample exporter on 127.0.0.1")
    with DynamoDBLocal() as ddb, SampleExporter(counters, node_id="node-a", env="demo") as exp:
        os.environ.update(LOCAL_CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "minutemeter")
        app = bootstrap()
        start = origin + timedelta(minutes=1)
        say(f"  DynamoDB Local {ddb.endpoint}, exporter {exp.url}")
        _run_cli(app, "tables", "create")
        _run_cli(app, "sources", "put", "demo", "--url", exp.url, "--node-id", "node-a",
                 "--env", "demo", "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "--lag", "60", "--max-window", "1800")
        for account in accounts[:2]:
            _run_cli(app, "profiles", "put", account, "--included-bytes", "150000000",
                     "--price-per-byte", "0.0000000025", "--pricing-version", "gold-2026")

        _drift_check(app)
        handler = _load_handler()
        say("\nscheduled collector runs (EventBridge Scheduler -> collector Lambda handler):")
        cycle = 0
        while True:
            cycle += 1
            scheduled = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
            event = {"source_id": "demo", "scheduled_time": scheduled}
            deliveries = 2 if cycle == 2 else 1  # at-least-once: cycle 2 arrives twice
            for delivery in range(deliveries):
                with redirect_stdout(StringIO()):  # the handler's EMF metrics (for CloudWatch)
                    job = handler.lambda_handler(event, _context())
                tag = " (delivered again: continues from the new watermark)" if delivery else ""
                say(f"  cycle {cycle}: {job['status']:7} window {job['window_since'][11:16]}"
                    f"-{job['window_until'][11:16]} written {job['written_minutes']:4} "
                    f"replayed {job['replayed_minutes']:4} samples {job['processed_samples']:5} "
                    f"resets {job['counter_resets']}{tag}")
            if job["caught_up"] or cycle > 10:
                break

        state = app.state.sync.get_state("demo")
        mark = state.last_completed_until
        assert mark is not None
        entries = list(app.ledger.export(LedgerFilter(source_id="demo")))
        truth = expected_usage(counters.history(mark), start=start, until=mark)
        billed: dict[tuple[str, str], int] = defaultdict(int)
        for entry in entries:
            billed[(entry.usage.account_id, entry.usage.minute.strftime("%Y-%m-%dT%H:%M:00Z"))] \
                += entry.usage.bytes
        _summary(entries, accounts)
        matches = dict(billed) == truth
        say(f"\nledger: {len(entries)} account-minutes up to {mark:%H:%M} UTC; "
            f"every minute equals the exporter's counter increases: {'yes' if matches else 'NO'}")
        _reconcile(app, exp, accounts[0], mark)
        prometheus_matches = prometheus_demo.run(app, say, clock.now())  # None: not installed
        say("\nminutemeter status --table")
        _run_cli(app, "status", "--table", show=True)
        everything = list(app.ledger.export(LedgerFilter()))  # every source: a scan (a demo)
        accounts_billed = sorted({e.usage.account_id for e in everything})
        delivered = statements_and_delivery(app, everything, accounts_billed, say)
        return 0 if matches and delivered and prometheus_matches is not False else 1


def _drift_check(app: App) -> None:
    """The drift check against two NTP servers of our own on 127.0.0.1 (the demo stays off the
    network; deployed, it asks time.aws.com and the pool). Its verdict arms the clock guard."""
    with NtpResponder() as tss, NtpResponder() as ntp:
        code, report = _cli_json(app, "drift-check", "--tss", tss.address, "--ntp", ntp.address,
                                 "--record")
    verdict = report["verdict"]
    say(f"\ndrift check (minutemeter drift-check --record, servers on 127.0.0.1): exit {code}, "
        f"{verdict['status']}, offset {verdict['offset_ms']:.3f} ms "
        f"+- {verdict['error_bound_ms']:.3f} ms from {verdict['valid_sources']} sources; "
        "the collectors' clock guard now has a fresh verdict")


def _reconcile(app: App, exporter: SampleExporter, account: str, mark: datetime) -> None:
    """The exporter corrects one counter after the fact; a reconcile dry run finds the minute,
    a confirm writes a correcting entry, and a second dry run finds nothing."""
    since = (mark - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = mark.strftime("%Y-%m-%dT%H:%M:%SZ")
    changed_at = (mark - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")

    def corrected(number: int, query: Any, document: dict[str, Any]) -> tuple[int, bytes]:
        for snapshot in document["snapshots"]:
            if snapshot["taken_at"] >= changed_at:
                for sample in snapshot["samples"]:
                    if sample["account_id"] == account:
                        sample["total_bytes"] += 4096
        return 200, json.dumps(document).encode()

    window = ["--since", since, "--until", until]
    code, clean = _cli_json(app, "reconcile", "demo", *window, "--dry-run")
    say(f"\nreconcile --dry-run {since[11:16]}-{until[11:16]}: exit {code}, "
        f"{clean['difference_count']} differences")
    exporter.fault = corrected
    code, dry = _cli_json(app, "reconcile", "demo", *window, "--dry-run")
    shown = ", ".join(f"{d['account_id'][:8]} {d['minute'][11:16]} {d['difference_bytes']:+d} B"
                      for d in dry["differences"])
    say(f"the exporter corrects a counter; reconcile --dry-run: exit {code}, {shown}")
    code, done = _cli_json(app, "reconcile", "demo", *window)
    say(f"reconcile (confirm): exit {code}, {done['corrections_written']} correcting entry "
        "written, quota moved with it")
    code, again = _cli_json(app, "reconcile", "demo", *window, "--dry-run")
    say(f"reconcile --dry-run again: exit {code}, {again['difference_count']} differences")
    exporter.fault = None


def _cli_json(app: App, *argv: str) -> tuple[int, dict[str, Any]]:
    buffer = StringIO()
    with redirect_stdout(buffer):
        code = cli(list(argv), app=app)
    return code, json.loads(buffer.getvalue())


def _run_cli(app: App, *argv: str, show: bool = False) -> None:
    buffer = StringIO()
    with redirect_stdout(buffer):
        code = cli(list(argv), app=app)
    if code != 0:
        raise SystemExit(f"minutemeter {' '.join(argv)} failed with exit {code}")
    if show:
        print(buffer.getvalue(), end="")


def _summary(entries: list[LedgerEntry], accounts: list[str]) -> None:
    rows: dict[str, list[Any]] = {}
    for entry in entries:
        row = rows.setdefault(entry.usage.account_id, [0, 0, 0, 0, Decimal(0), ""])
        row[0] += 1
        row[1] += entry.usage.bytes
        row[2] += entry.included_bytes
        row[3] += entry.billable_bytes
        row[4] += entry.amount
        row[5] = entry.profile.pricing_rule_version
    say("\nbilled per account (amounts are Decimal, never floats):")
    say(f"  {'account':36}  {'minutes':>7}  {'bytes':>13}  {'included':>11}  "
        f"{'billable':>13}  {'amount':>14}  pricing")
    for account in accounts:
        if account in rows:
            m, b, i, bl, amount, version = rows[account]
            say(f"  {account:36}  {m:>7}  {b:>13}  {i:>11}  {bl:>13}  {amount:>14}  {version}")


if __name__ == "__main__":
    sys.exit(main())

