"""GIVEN several `minutemeter collect` processes running at once on one source,
WHEN some of them are killed with SIGKILL at random moments, round after round,
THEN a clean run afterwards leaves every account-minute billed exactly once.

Real processes, the real CLI, DynamoDB Local and a sample exporter on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from minutemeter.local.ddb import LOCAL_CREDENTIALS, DynamoDBLocal
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.local.truth import expected_usage

CLI = [sys.executable, "-m", "minutemeter.cli"]
INCLUDED = 200_000_000


def _env(ddb: DynamoDBLocal, tag: str) -> dict[str, str]:
    return dict(
        os.environ,
        **LOCAL_CREDENTIALS,
        AWS_ENDPOINT_URL_DYNAMODB=ddb.endpoint,
        MINUTEMETER_LEDGER_TABLE=f"kill-ledger-{tag}",
        MINUTEMETER_STATE_TABLE=f"kill-state-{tag}",
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_sigkilled_collectors_lose_and_double_nothing(
    ddb_local: DynamoDBLocal, tmp_path: Path
) -> None:
    seed = int(os.environ.get("MINUTEMETER_KILL_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    print(f"kill scenario seed {seed}")
    env = _env(ddb_local, str(seed))
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    accounts = account_ids(8, seed=seed)
    counters = SyntheticCounters(accounts, origin, seed=seed, live_clock=lambda: datetime.now(UTC))
    with SampleExporter(counters, page_size=25) as exporter:
        assert _cli(env, "tables", "create").returncode == 0
        start = (origin + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        put = _cli(env, "sources", "put", "s1", "--url", exporter.url, "--start", start,
                   "--max-window", "1200", "--lag", "60")
        assert put.returncode == 0, put.stderr
        for account in accounts[:4]:
            assert _cli(env, "profiles", "put", account, "--included-bytes", str(INCLUDED),
                        "--price-per-byte", "0.000000002", "--pricing-version", "v1"
                        ).returncode == 0

        killed = finished = 0
        for _round in range(6):
            processes = [
                subprocess.Popen([*CLI, "collect", "s1"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
                for _ in range(4)
            ]
            victims = rng.sample(processes, k=rng.randint(1, 3))
            time.sleep(rng.uniform(0.6, 2.5))
            for process in victims:
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    killed += 1
            for process in processes:
                process.wait(timeout=120)
                finished += process.returncode in (0, 3)
        assert killed > 0, "no process was killed mid-run: the scenario proved nothing"

        for _ in range(20):  # clean runs until caught up
            result = _cli(env, "collect", "s1")
            assert result.returncode == 0, result.stdout + result.stderr
            if json.loads(result.stdout)["caught_up"]:
                break
        listing = json.loads(_cli(env, "sources", "list").stdout)
        mark = datetime.fromisoformat(listing[0]["last_completed_until"].replace("Z", "+00:00"))
        exported = _cli(env, "ledger", "export", "--source", "s1")
        assert exported.returncode == 0
    entries = [json.loads(line) for line in exported.stdout.splitlines()]
    got: dict[tuple[str, str], int] = {}
    for entry in entries:
        key = (entry["account_id"], entry["minute"])
        assert key not in got, f"minute billed twice: {key}"
        got[key] = entry["bytes"]
    truth = expected_usage(counters.history(mark), start=origin + timedelta(minutes=1), until=mark)
    assert mark >= datetime.now(UTC) - timedelta(minutes=3)
    assert got == truth
    # quota: included == min(usage, quota) per account-month, amounts exact
    per_account: dict[tuple[str, str], list[int]] = {}
    for entry in entries:
        totals = per_account.setdefault((entry["account_id"], entry["minute"][:7]), [0, 0])
        totals[0] += entry["bytes"]
        totals[1] += entry["included_bytes"]
        price = Decimal(entry["price_per_byte"]) * Decimal(entry["multiplier"])
        assert Decimal(entry["amount"]) == entry["billable_bytes"] * price
    for (account, _month), (usage, included) in per_account.items():
        assert included == min(usage, INCLUDED if account in accounts[:4] else 0)
