"""A live run: a real Prometheus scrapes a simulated node on 127.0.0.1 every second, the node
goes down and restarts with its counters at zero (and a new bucket), and ``minutemeter collect``
processes run one after another on DynamoDB Local, some SIGKILLed mid-run.

THEN the ledger holds, per bucket, exactly the bytes the node's counters increased by (every
increment is in a value Prometheus scraped: the node adds them as it answers a scrape), no
account-minute twice, and the restart was billed as a reset from zero, not lost or doubled.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from minutemeter.local.ddb import LOCAL_CREDENTIALS, DynamoDBLocal
from minutemeter.local.exporter import account_ids
from minutemeter.local.prometheus import LocalPrometheus
from minutemeter.local.prometheus_node import METRIC, SimulatedNode

CLI = [sys.executable, "-m", "minutemeter.cli"]
BUCKETS = account_ids(4, seed=1212)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def _ingested(prometheus: LocalPrometheus) -> dict[str, int] | None:
    """The latest value of each bucket's series in Prometheus (None: no answer this time)."""
    try:
        answer = requests.get(f"{prometheus.url}/api/v1/query",
                              params={"query": f"{METRIC}_total"}, timeout=30).json()
    except (requests.RequestException, ValueError):
        return None  # a busy machine: ask again
    return {item["metric"]["bucket"]: int(item["value"][1])
            for item in answer["data"]["result"]}


def _settle(node: SimulatedNode, prometheus: LocalPrometheus) -> None:
    """Stop the increments and wait (bounded by polls, not by time) until Prometheus holds the
    node's current values: no increment is then lost to the restart."""
    node.running = False
    for _ in range(600):
        if _ingested(prometheus) == node.values():
            return
        time.sleep(0.1)
    raise AssertionError(f"Prometheus never ingested {node.values()}")


class Collectors:
    """``minutemeter collect p1`` processes, one after another; some are SIGKILLed."""

    def __init__(self, env: dict[str, str], seed: int) -> None:
        self.env = env
        self.rng = random.Random(seed)
        self.codes: list[int] = []
        self.killed = 0

    def round(self, *, may_kill: bool = True) -> None:
        process = subprocess.Popen([*CLI, "collect", "p1", "--timeout", "60"], env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if may_kill and (self.killed == 0 or self.rng.random() < 0.35):
            time.sleep(0.3 if self.killed == 0 else self.rng.uniform(0.3, 1.5))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                self.killed += 1
        self.codes.append(process.wait(timeout=120))

    def until_scrapes(self, node: SimulatedNode, scrapes: int) -> None:
        while node.scrapes < scrapes:
            self.round()


def _watermark(env: dict[str, str]) -> datetime | None:
    status = _cli(env, "status", "p1")
    assert status.returncode == 0, status.stderr
    mark = json.loads(status.stdout)["last_completed_until"]
    return None if mark is None else datetime.fromisoformat(mark.replace("Z", "+00:00"))


@pytest.mark.slow
def test_a_live_node_that_restarts_is_billed_exactly(
    prometheus_tools: None, ddb_local: DynamoDBLocal, tmp_path: Path,
) -> None:
    seed = int(os.environ.get("MINUTEMETER_KILL_SEED", time.time_ns() % 100_000))
    print(f"live prometheus scenario seed {seed}")
    env = dict(os.environ, **LOCAL_CREDENTIALS, AWS_ENDPOINT_URL_DYNAMODB=ddb_local.endpoint,
               MINUTEMETER_LEDGER_TABLE=f"prom-ledger-{seed}",
               MINUTEMETER_STATE_TABLE=f"prom-state-{seed}")
    # counters start high, so that a restart always shows as a drop: a restart whose first
    # value is above the last one before it cannot be seen in any sample (nor by Prometheus)
    with (SimulatedNode(BUCKETS[:3], initial=10**9, seed=seed) as node,
          LocalPrometheus(tmp_path / "data", targets=[node.target]) as prometheus):
        # GIVEN a prometheus source over the node, starting at the current minute
        start = datetime.now(UTC).replace(second=0, microsecond=0)
        assert _cli(env, "tables", "create").returncode == 0
        put = _cli(env, "sources", "put", "p1", "--kind", "prometheus", "--url", prometheus.url,
                   "--selector", f'{METRIC}_total{{job="node"}}', "--account-label", "bucket",
                   "--node-id", "node-1", "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "--lag", "2", "--lease-seconds", "5")
        assert put.returncode == 0, put.stderr
        assert json.loads(put.stdout)["reset_policy"] == "from-zero"
        _settle(node, prometheus)  # the baseline values are scraped before any increment
        collectors = Collectors(env, seed)
        # WHEN the node's counters grow while collectors run (some killed)
        node.running = True
        collectors.until_scrapes(node, node.scrapes + 10)
        # AND the node goes down (its series go stale) and restarts from zero, with a new bucket
        _settle(node, prometheus)
        node.go_down()
        while node.failed_scrapes < 3:
            collectors.round()
        node.restart(new_buckets=[BUCKETS[3]])
        node.running = True
        collectors.until_scrapes(node, node.scrapes + 10)
        _settle(node, prometheus)
        frozen_at = datetime.now(UTC)
        # AND collectors run until the watermark is past the last increment
        for _ in range(300):
            mark = _watermark(env)
            if mark is not None and mark > frozen_at:
                break
            collectors.round(may_kill=False)
            time.sleep(0.5)
        else:
            raise AssertionError(f"watermark {mark} never passed {frozen_at}")
    # THEN no run failed, some were killed, and each bucket is billed its increments exactly
    assert 1 not in collectors.codes and 3 not in collectors.codes, collectors.codes
    assert collectors.killed > 0, "no collector was killed mid-run: the kills proved nothing"
    exported = _cli(env, "ledger", "export", "--source", "p1")
    assert exported.returncode == 0, exported.stderr
    billed: dict[str, int] = defaultdict(int)
    minutes: set[tuple[str, str]] = set()
    for line in exported.stdout.splitlines():
        entry = json.loads(line)
        key = (entry["account_id"], entry["minute"])
        assert key not in minutes, f"billed twice: {key}"
        minutes.add(key)
        billed[entry["account_id"]] += int(entry["bytes"])
    truth = {bucket: total for bucket, total in node.increments.items() if total > 0}
    assert dict(billed) == truth
    assert set(truth) == set(BUCKETS)  # the new bucket counted from zero too
    resets = _cli(env, "resets", "list", "p1")
    assert resets.returncode == 0, resets.stderr
    reset_accounts = {json.loads(line)["account_id"] for line in resets.stdout.splitlines()}
    assert set(BUCKETS[:3]) <= reset_accounts
