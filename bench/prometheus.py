"""The Prometheus catch-up bench: the exporter's catch-up workload, read from a real Prometheus.

The same accounts, minutes and 15 s scrape interval as ``bench.run``'s catch-up, written into
TSDB blocks with ``promtool`` and served by Debian's ``prometheus`` on 127.0.0.1; one collector
run bills the whole window into DynamoDB Local. Reported next to the exporter's figures under
``prometheus_catch_up`` in ``bench/results.json``: seconds, samples per second (the Prometheus
queries included), and write units per billed account-minute (billed as DynamoDB bills them, as
``bench.run`` counts them). Skipped, saying why, when Prometheus is not installed.
``python -m bench.prometheus --accounts 50 --minutes 60 --repeat 3``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from minutemeter.adapters.prometheus_auth import Authenticator
from minutemeter.adapters.prometheus_http import PrometheusHttp
from minutemeter.adapters.prometheus_reader import PrometheusReader
from minutemeter.domain.model import JobStatus, ResetPolicy, SourceConfig, SourceKind
from minutemeter.local.ddb import DynamoDBLocal
from minutemeter.local.exporter import account_ids
from minutemeter.local.prometheus import LocalPrometheus, load_history, prometheus_missing
from minutemeter.local.prometheus_history import build_node, openmetrics
from minutemeter.local.prometheus_node import METRIC
from minutemeter.service.collect import collect_source
from minutemeter.service.deps import BillingDeps
from minutemeter.settings import Settings

RESULTS = Path(__file__).with_name("results.json")
KEY = "prometheus_catch_up"


def _no_token(source: SourceConfig) -> str | None:
    return None


def catch_up_once(raw_client: Any, url: str, minutes: int, concurrency: int) -> dict[str, Any]:
    """One collector run over ``minutes`` minutes of the Prometheus source."""
    from bench.run import ORIGIN, BilledTransactions, FixedClock, _stores

    client = BilledTransactions(raw_client)
    settings, meter, ledger, state = _stores(client)
    settings = replace(settings, commit_concurrency=concurrency)
    state.sources.put_source(SourceConfig(
        "bench-prom", url, ORIGIN, lag_seconds=0, max_window_seconds=minutes * 60,
        kind=SourceKind.PROMETHEUS, selector=f'{METRIC}_total{{node="bench"}}',
        account_label="bucket", node_label="node", reset_policy=ResetPolicy.FROM_ZERO))
    reader = PrometheusReader(PrometheusHttp(timeout_seconds=30, retries=0,
                                             auth=Authenticator(_no_token, None)))
    deps = BillingDeps.from_stores(settings, FixedClock(ORIGIN + timedelta(minutes=minutes)),
                                   {SourceKind.PROMETHEUS: reader}, ledger, state)
    before = meter.total_write_units()
    started = time.perf_counter()
    job = collect_source(deps, "bench-prom")
    seconds = time.perf_counter() - started
    if job.status is not JobStatus.OK:
        raise RuntimeError(f"prometheus bench run failed: {job.error}")
    reported = meter.total_write_units() - before
    return {"seconds": seconds, "write_units": reported - client.reported + client.billed,
            "written_minutes": job.written_minutes, "processed_samples": job.processed_samples,
            "pages": job.pages}


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    """Measure, merge into ``bench/results.json`` and print; None when skipped."""
    from bench.run import ORIGIN

    missing = prometheus_missing()
    if missing is not None:
        print(f"prometheus catch-up: skipped, {missing}", file=sys.stderr)
        return None
    origin_ms = int(ORIGIN.timestamp()) * 1000
    history = build_node("bench", account_ids(args.accounts), start_ms=origin_ms,
                         scrapes=(args.minutes + 2) * 4, interval_ms=15_000, offset_ms=0,
                         seed=5, restart_at=args.minutes * 2)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as work:
        load_history(openmetrics([history]), Path(work) / "data")
        with LocalPrometheus(Path(work) / "data") as prometheus, DynamoDBLocal() as ddb:
            client = ddb.client()
            catch_up_once(client, prometheus.url, 5, args.concurrency)  # warm-up
            for i in range(args.repeat):
                runs.append(catch_up_once(client, prometheus.url, args.minutes,
                                          args.concurrency))
                print(f"  prometheus round {i + 1}/{args.repeat}: "
                      f"{runs[-1]['seconds']:.2f} s", file=sys.stderr)

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    minutes_billed = median("written_minutes")
    section = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "workload": {"accounts": args.accounts, "minutes": args.minutes,
                     "scrape_interval_s": 15, "repeat": args.repeat,
                     "commit_concurrency": args.concurrency, "restarts": 1},
        "seconds_median": median("seconds"),
        "seconds_all": [round(r["seconds"], 3) for r in runs],
        "billed_account_minutes": minutes_billed,
        "queries": median("pages"),
        "samples_per_second": median("processed_samples") / median("seconds"),
        "write_units_per_account_minute": median("write_units") / minutes_billed,
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[KEY] = section
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    exporter = results.get("collector", {})
    print(f"\nprometheus catch-up ({args.accounts} accounts x {args.minutes} min, 15 s scrapes)")
    print(f"{'':32}{'prometheus':>14}{'exporter':>14}")
    for name, key, unit in (("time (median)", "seconds_median", "s"),
                            ("samples / second", "samples_per_second", ""),
                            ("write units / account-minute", "write_units_per_account_minute",
                             "")):
        theirs = exporter.get(key)
        shown = "-" if theirs is None else f"{theirs:.3f}{unit}"
        print(f"{name:32}{section[key]:>13.3f}{unit}{shown:>14}")
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=Settings().commit_concurrency)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
