"""`minutemeter drift-check` (the CLI contract) and the drift-check Lambda handler.

Against real chronyd instances on 127.0.0.1 (one shifted +1.5 s by faketime) and our own NTP
responder for what chronyd cannot be made to do.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.bootstrap import bootstrap
from minutemeter.local.ntp_responder import Behaviour, NtpResponder
from minutemeter.settings import load_settings
from tests.support.chrony import Chronyd, honest_pair_and_one_ahead, silent_udp_port

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "minutemeter.cli"]


@pytest.fixture(scope="module")
def chrony_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Chronyd]]:
    with honest_pair_and_one_ahead(tmp_path_factory.mktemp("chrony-cli")) as servers:
        yield servers


def drift_cli(*args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run([*CLI, "drift-check", "--spacing", "0.05", *args],
                            capture_output=True, text=True, timeout=120)
    return result.returncode, json.loads(result.stdout) if result.stdout else {}


def test_honest_servers_exit_0_with_one_measurement_each(
    chrony_servers: list[Chronyd],
) -> None:
    honest = chrony_servers[:2]
    code, report = drift_cli("--tss", honest[0].address, "--ntp", honest[1].address)
    assert code == 0, report
    roles = {s["server"]: s["role"] for s in report["servers"]}
    assert roles == {honest[0].address: "tss", honest[1].address: "ntp"}
    for server in report["servers"]:
        for key in ("offset_ms", "delay_ms", "error_bound_ms", "stratum", "leap"):
            assert server[key] is not None, (key, server)
        assert abs(server["offset_ms"]) < 5  # both serve this machine's clock
        assert abs(server["offset_ms"]) <= server["error_bound_ms"] + 5
    assert abs(report["tss_minus_ntp_ms"]) < 5
    assert report["verdict"]["status"] == "ok"


def test_a_shifted_clock_is_outvoted_and_a_shifted_tss_is_an_alarm(
    chrony_servers: list[Chronyd],
) -> None:
    honest_a, honest_b, ahead = chrony_servers
    code, report = drift_cli("--ntp", honest_a.address, "--ntp", honest_b.address,
                             "--ntp", ahead.address)
    assert code == 0, report["verdict"]  # the falseticker is outvoted: our clock is fine
    assert report["selection"]["falsetickers"] == [ahead.address]
    code, report = drift_cli("--tss", ahead.address, "--ntp", honest_a.address)
    assert code == 6  # TSS 1.5 s away from the pool: over the 100 ms TSS-vs-NTP threshold
    assert abs(report["tss_minus_ntp_ms"] - 1500) < 10


def test_a_clock_over_the_offset_threshold_exits_6() -> None:
    with NtpResponder(Behaviour(offset=0.7)) as one, NtpResponder(Behaviour(offset=0.7)) as two:
        code, report = drift_cli("--ntp", one.address, "--ntp", two.address)
    assert code == 6
    assert {f["code"] for f in report["verdict"]["findings"]} >= {"offset"}
    assert report["verdict"]["status"] == "critical"
    assert abs(report["verdict"]["offset_ms"] - 700) < 10


def test_no_answer_exits_1_within_the_budget() -> None:
    with silent_udp_port() as port:
        code, report = drift_cli("--ntp", f"127.0.0.1:{port}")
    assert code == 1
    (server,) = report["servers"]
    assert server["status"] == "timeout" and server["offset_ms"] is None
    assert report["verdict"]["status"] == "unknown"
    assert report["elapsed_ms"] < 45_000


def test_bad_server_arguments_exit_2() -> None:
    result = subprocess.run([*CLI, "drift-check", "--ntp", "127.0.0.1:ntp"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""


# -- the Lambda handler ------------------------------------------------------------------------
@pytest.fixture
def drift_handler(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "minutemeter")
    spec = importlib.util.spec_from_file_location(
        "drift_app", REPO / "functions" / "drift_check" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_handler_stores_the_verdict_and_prints_its_metrics(
    drift_handler: ModuleType, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with NtpResponder(Behaviour(offset=0.08)) as tss, NtpResponder(Behaviour(offset=0.08)) as ntp:
        environ = {"MINUTEMETER_LEDGER_TABLE": "drift-ledger",
                   "MINUTEMETER_STATE_TABLE": "drift-state",
                   "MINUTEMETER_DRIFT_TSS": tss.address, "MINUTEMETER_DRIFT_NTP": ntp.address,
                   "MINUTEMETER_DRIFT_LINK_LOCAL": "", "MINUTEMETER_DRIFT_BUDGET_SECONDS": "10"}
        for name, setting in environ.items():
            monkeypatch.setenv(name, setting)
        with mock_aws():
            app = bootstrap(load_settings(environ),
                            session=boto3.session.Session(region_name="us-east-1"))
            create_tables(app.dynamodb, ledger_table="drift-ledger", state_table="drift-state")
            capsys.readouterr()
            context = SimpleNamespace(function_name="drift", memory_limit_in_mb=256,
                                      invoked_function_arn="arn:aws:lambda:us-east-1:1:function:d",
                                      aws_request_id="r1")
            report = drift_handler.lambda_handler({}, context)
            verdict = app.state.verdicts.get_clock_verdict()
    assert report["verdict"]["status"] == "warning"  # 80 ms > 50 ms
    assert verdict is not None and verdict.status == "warning"
    assert abs(float(verdict.offset_ms) - 80) < 10 and verdict.valid_sources == 2
    (document,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()
                   if '"_aws"' in line]
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Minutemeter" and directive["Dimensions"] == [["service"]]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units == {
        "ClockOffset": "Milliseconds", "ClockOffsetAbs": "Milliseconds",
        "ClockErrorBound": "Milliseconds", "TssMinusPoolAbs": "Milliseconds",
        "ValidSources": "Count", "Falsetickers": "Count", "KissOfDeath": "Count",
        "NtpTimeouts": "Count", "DriftCheckHeartbeat": "Count",
    }

    def value(name: str) -> float:
        raw = document[name]
        return float(raw[0] if isinstance(raw, list) else raw)

    assert abs(value("ClockOffset") - 80) < 10 and value("DriftCheckHeartbeat") == 1
    assert value("ValidSources") == 2 and value("TssMinusPoolAbs") < 10
