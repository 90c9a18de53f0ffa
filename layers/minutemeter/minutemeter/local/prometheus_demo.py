"""The Prometheus part of ``make demo``: a source of kind ``prometheus`` beside the exporter's.

When Debian's ``prometheus`` (and ``promtool``) is installed, two hours of a simulated node's
per-bucket byte counters (a restart under a new pod label, a bucket that appears late, one
fractional sample) are written into TSDB blocks, a real Prometheus serves them on 127.0.0.1,
and the CLI registers and collects the source until Prometheus has no newer sample; the ledger
is compared minute by minute with the counters' increases. When it is not installed, the demo
says so and goes on without it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from contextlib import redirect_stdout
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

from minutemeter.bootstrap import App
from minutemeter.cli import main as cli
from minutemeter.local.exporter import account_ids
from minutemeter.local.prometheus import LocalPrometheus, load_history, prometheus_missing
from minutemeter.local.prometheus_history import build_node, expected_minutes, openmetrics
from minutemeter.local.prometheus_node import METRIC
from minutemeter.ports import LedgerFilter

SOURCE_ID = "demo-prom"


def _cli(app: App, *argv: str) -> tuple[int, Any]:
    buffer = StringIO()
    with redirect_stdout(buffer):
        code = cli(list(argv), app=app)
    text = buffer.getvalue()
    return code, json.loads(text) if text.strip() else None


def run(app: App, say: Callable[[str], None], now: datetime) -> bool | None:
    """The Prometheus source's part of the demo; ``None`` when Prometheus is not installed,
    else whether every billed minute equals the counters' increases. A run with the
    fractional sample quarantined is ``partial`` (exit 3), as for an exporter."""
    missing = prometheus_missing()
    if missing is not None:
        say(f"\nPrometheus source: not shown, {missing}.")
        return None
    origin = now.replace(second=0, microsecond=0) - timedelta(hours=2)
    origin_ms = int(origin.timestamp()) * 1000
    buckets = account_ids(4, seed=2027)
    history = build_node("node-p", buckets, start_ms=origin_ms, scrapes=478, interval_ms=15_000,
                         offset_ms=250, seed=3, restart_at=200, late={buckets[3]: 150},
                         odd_values={300: (buckets[1], "1.5")})
    with tempfile.TemporaryDirectory(prefix="minutemeter-prom-") as work:
        data = Path(work) / "data"
        load_history(openmetrics([history]), data)
        with LocalPrometheus(data) as prometheus:
            start = origin + timedelta(minutes=1)
            say(f"\nPrometheus source (a real Prometheus on {prometheus.url}, 2 h of a node's "
                "per-bucket byte counters, a restart, a late bucket, one fractional sample):")
            code, _ = _cli(app, "sources", "put", SOURCE_ID, "--kind", "prometheus", "--url",
                           prometheus.url, "--selector", f'{METRIC}_total{{node="node-p"}}',
                           "--account-label", "bucket", "--node-label", "node",
                           "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "--max-window", "3600")
            if code != 0:
                raise SystemExit(f"sources put {SOURCE_ID} failed with exit {code}")
            previous = None
            for _ in range(10):
                code, job = _cli(app, "collect", SOURCE_ID)
                say(f"  minutemeter collect {SOURCE_ID}: exit {code}, {job['status']}, window "
                    f"{job['window_since'][11:16]}-{job['window_until'][11:16]}, written "
                    f"{job['written_minutes']}, resets {job['counter_resets']}, quarantined "
                    f"{job['quarantined_samples']}")
                if code not in (0, 3) or job["caught_up"] or job["completed_until"] == previous:
                    break
                previous = job["completed_until"]
    mark = app.state.sync.get_state(SOURCE_ID).last_completed_until
    if mark is None:
        return False
    billed = {(e.usage.account_id, int(e.usage.minute.timestamp()) * 1000): e.usage.bytes
              for e in app.ledger.export(LedgerFilter(source_id=SOURCE_ID))}
    truth = expected_minutes(history, start_ms=int(start.timestamp()) * 1000,
                             until_ms=int(mark.timestamp()) * 1000)
    matches = billed == truth
    say(f"  ledger: {len(billed)} account-minutes up to {mark:%H:%M} UTC; every minute equals "
        f"the counters' increases: {'yes' if matches else 'NO'}")
    return matches
