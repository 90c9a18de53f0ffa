"""Real processes, the real CLI, DynamoDB Local and a sample exporter on 127.0.0.1.

1. GIVEN several `minutemeter collect` processes started at once on one source, round after
   round, WHEN some are killed with SIGKILL at random moments, THEN a clean run afterwards leaves
   every account-minute billed exactly once (and the lease made the others skip, exit 4).
2. GIVEN a collector that holds the lease, WHEN it is SIGKILLed, THEN the source is blocked no
   longer than the lease (plus the skew margin): the next run succeeds by then.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from minutemeter.local.ddb import LOCAL_CREDENTIALS, DynamoDBLocal
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.local.truth import expected_usage

CLI = [sys.executable, "-m", "minutemeter.cli"]
INCLUDED = 200_000_000
LEASE_SECONDS = 5
MARGIN_SECONDS = 2.0  # Settings().lease_margin_seconds


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


def _setup(env: dict[str, str], url: str, start: datetime) -> None:
    assert _cli(env, "tables", "create").returncode == 0
    put = _cli(env, "sources", "put", "s1", "--url", url,
               "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ"), "--max-window", "1200",
               "--lag", "60", "--lease-seconds", str(LEASE_SECONDS))
    assert put.returncode == 0, put.stderr


def _collect_until_caught_up(env: dict[str, str], timeout_seconds: float = 60) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        result = _cli(env, "collect", "s1")
        if result.returncode == 4:  # a killed runner's lease has not expired yet
            time.sleep(0.5)
            continue
        assert result.returncode == 0, result.stdout + result.stderr
        if json.loads(result.stdout)["caught_up"]:
            return
    raise AssertionError("not caught up in time")


@pytest.mark.slow
def test_sigkilled_collectors_lose_and_double_nothing(ddb_local: DynamoDBLocal) -> None:
    seed = int(os.environ.get("MINUTEMETER_KILL_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    print(f"kill scenario seed {seed}")
    env = _env(ddb_local, str(seed))
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    accounts = account_ids(8, seed=seed)
    counters = SyntheticCounters(accounts, origin, seed=seed, live_clock=lambda: datetime.now(UTC))
    with SampleExporter(counters, page_size=25) as exporter:
        _setup(env, exporter.url, origin + timedelta(minutes=1))
        for account in accounts[:4]:
            assert _cli(env, "profiles", "put", account, "--included-bytes", str(INCLUDED),
                        "--price-per-byte", "0.000000002", "--pricing-version", "v1"
                        ).returncode == 0

        killed = 0
        codes: list[int] = []
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
                codes.append(process.returncode)
        assert killed > 0, "no process was killed mid-run: the scenario proved nothing"
        assert 4 in codes, "no run was skipped for the lease"
        assert 1 not in codes and 3 not in codes, codes

        _collect_until_caught_up(env)
        listing = json.loads(_cli(env, "sources", "list").stdout)
        mark = datetime.fromisoformat(listing[0]["last_completed_until"].replace("Z", "+00:00"))
        exported = _cli(env, "ledger", "export", "--source", "s1")
        assert exported.returncode == 0
        entries = [json.loads(line) for line in exported.stdout.splitlines()]
        # AND statement = sum of the entries = quota used, per account-month (issue 11)
        for month in sorted({entry["minute"][:7] for entry in entries}):
            audit = _cli(env, "audit", "--month", month)
            assert audit.returncode == 0, audit.stdout
            assert json.loads(audit.stdout)["accounts_checked"] > 0
    got: dict[tuple[str, str], int] = {}
    for entry in entries:
        key = (entry["account_id"], entry["minute"])
        assert key not in got, f"minute billed twice: {key}"
        got[key] = entry["bytes"]
    truth = expected_usage(counters.history(mark), start=origin + timedelta(minutes=1), until=mark)
    assert mark >= datetime.now(UTC) - timedelta(minutes=3)
    assert got == truth
    _check_quota(entries, set(accounts[:4]))


def _check_quota(entries: list[dict[str, Any]], with_profile: set[str]) -> None:
    """included == min(usage, quota) per account-month, amounts exact."""
    per_account: dict[tuple[str, str], list[int]] = {}
    for entry in entries:
        totals = per_account.setdefault((entry["account_id"], entry["minute"][:7]), [0, 0])
        totals[0] += entry["bytes"]
        totals[1] += entry["included_bytes"]
        price = Decimal(entry["price_per_byte"]) * Decimal(entry["multiplier"])
        assert Decimal(entry["amount"]) == entry["billable_bytes"] * price
    for (account, _month), (usage, included) in per_account.items():
        assert included == min(usage, INCLUDED if account in with_profile else 0)


@pytest.mark.slow
def test_a_killed_lease_holder_blocks_its_source_no_longer_than_its_lease(
    ddb_local: DynamoDBLocal,
) -> None:
    env = _env(ddb_local, f"holder-{time.time_ns() % 100_000}")
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    counters = SyntheticCounters(account_ids(3), origin, live_clock=lambda: datetime.now(UTC))

    def slow(number: int, query: Mapping[str, str], document: dict[str, Any]) -> None:
        time.sleep(0.4)  # every page takes a while: the run lasts long enough to be killed
        return None

    with SampleExporter(counters, page_size=5, fault=slow) as exporter:
        _setup(env, exporter.url, origin + timedelta(minutes=1))
        holder = subprocess.Popen([*CLI, "collect", "s1"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            lease = _wait_for_lease(env)
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
        killed_at = datetime.now(UTC)
        # WHEN other runners keep trying
        blocked = _cli(env, "collect", "s1")
        assert blocked.returncode == 4, blocked.stdout + blocked.stderr
        assert json.loads(blocked.stdout)["status"] == "skipped"
        exporter.fault = None
        while (result := _cli(env, "collect", "s1")).returncode == 4:
            assert datetime.now(UTC) < killed_at + timedelta(seconds=LEASE_SECONDS + 10)
            time.sleep(0.25)
        freed_at = datetime.now(UTC)
    assert result.returncode == 0, result.stdout + result.stderr
    job = json.loads(result.stdout)
    assert job["lease_token"] == lease["token"] + 1  # the token only grows
    # THEN the source was blocked at most until the dead holder's lease ran out (+ margin)
    lease_end = datetime.fromisoformat(lease["until"].replace("Z", "+00:00"))
    assert freed_at <= lease_end + timedelta(seconds=MARGIN_SECONDS + 3)
    assert freed_at - killed_at <= timedelta(seconds=LEASE_SECONDS + MARGIN_SECONDS + 3)


def _wait_for_lease(env: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = json.loads(_cli(env, "status", "s1").stdout)
        if status["lease"] is not None:
            return dict(status["lease"])
        time.sleep(0.1)
    raise AssertionError("the collector never took the lease")
