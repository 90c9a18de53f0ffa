"""`make invoke`: each function's handler in-process with its sample event, on DynamoDB Local
and on moto, as a user runs it (a subprocess; JSON on stdout, logs on stderr), plus the pieces
it is built from: the template's timeouts, the sources an event names, the context's countdown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from minutemeter.local import invoke
from minutemeter.local import lambda_function as function

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
# FN -> its sample event (docs/build.md's table)
SAMPLE_EVENTS = {
    "collector": EVENTS / "scheduler-event.json",
    "drift_check": EVENTS / "drift-check-scheduled.json",
    "api": EVENTS / "api-status.json",
    "audit": EVENTS / "audit-scheduled.json",
}
BACKENDS = [
    pytest.param("moto", id="moto"),
    pytest.param("ddb-local", id="ddblocal", marks=pytest.mark.ddblocal),
]


def _run(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m minutemeter.local.invoke ARGV`` from the repo root, as `make invoke` runs it;
    the environment is the tests' (fake credentials, no endpoint)."""
    return subprocess.run(
        [sys.executable, "-m", "minutemeter.local.invoke", *argv],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=dict(os.environ),
    )


def _result(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, f"stdout is the result alone (logs go to stderr): {done.stdout[:2000]}"
    return json.loads(lines[0])


# --------------------------------------------------------------------------- each function


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_collector_bills_the_source_the_event_names(backend: str) -> None:
    job = _result(_run("collector", "events/scheduler-event.json", "--backend", backend))

    assert job["source_id"] == "demo" and job["job"] == "collect"
    assert job["status"] == "ok" and job["error"] is None
    assert job["written_minutes"] > 0 and job["processed_samples"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_drift_check_measures_against_local_ntp_servers(backend: str) -> None:
    done = _run("drift_check", "events/drift-check-scheduled.json", "--backend", backend)
    report = _result(done)

    assert report["verdict"]["status"] == "ok"
    assert report["verdict"]["valid_sources"] == 2  # the two responders, nothing else
    addresses = {server["address"] for server in report["servers"]}
    assert addresses == {"127.0.0.1"}, addresses
    assert report["link_local_reachable"] is None  # not probed


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_api_answers_status(backend: str) -> None:
    response = _result(_run("api", "events/api-status.json", "--backend", backend))

    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert "demo" in json.dumps(body)  # the registered source is in the status


def test_the_api_registers_the_source_the_path_names() -> None:
    response = _result(_run("api", "events/api-source.json", "--backend", "moto"))
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["source_id"] == "demo"


@pytest.mark.parametrize(
    ("event", "status"),
    [("api-reconcile-dry-run", 200), ("api-reconcile-beyond-watermark", 422)],
)
def test_a_reconcile_event_finds_its_window_billed(event: str, status: int) -> None:
    """The source is billed 10:01-10:49 on the window's day, as test_api.py's EXPECTED assumes:
    a window inside it reconciles, one past 10:49 is beyond the watermark."""
    done = _run("api", f"events/{event}.json", "--backend", "moto")
    response = _result(done)

    assert response["statusCode"] == status, response["body"]
    if status == 200:
        result = json.loads(response["body"])
        assert result["source_id"] == "demo" and result["difference_count"] == 0
    assert "billed up to 2026-11-22 10:49" in done.stderr


def test_a_source_given_instead_keeps_the_events_source_unknown() -> None:
    done = _run("api", "events/api-source-unknown.json", "--backend", "moto", "--source", "demo")
    response = _result(done)
    assert response["statusCode"] == 404


def test_a_handler_that_raises_prints_its_error_and_exits_1(tmp_path: Path) -> None:
    event = tmp_path / "no-source.json"
    event.write_text(json.dumps({"scheduled_time": "2026-11-25T10:00:43Z"}))

    done = _run("collector", str(event), "--backend", "moto")

    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["errorType"] == "InputError" and "source_id" in error["errorMessage"]
    assert "Traceback" in done.stderr


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert _run("nope", "events/scheduler-event.json").returncode == 2
    assert _run("collector", str(tmp_path / "missing.json")).returncode == 2


def test_make_invoke(tmp_path: Path) -> None:
    """The make target, as the README shows it (setup is a prerequisite, a no-op here)."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "invoke", "FN=collector",
         "EVENT=events/scheduler-event.json", "BACKEND=moto"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}},
    )
    job = _result(done)
    assert job["status"] == "ok" and job["written_minutes"] > 0


# --------------------------------------------------------------------------- the pieces


def test_every_function_has_a_sample_event_and_a_handler() -> None:
    assert set(SAMPLE_EVENTS) == set(function.FUNCTIONS)
    template = function.load_template()
    for name, event in SAMPLE_EVENTS.items():
        assert event.is_file(), event
        spec = function.function_spec(name, template)
        assert spec.handler_path.is_file(), spec.handler_path
        assert spec.logical_id in template["Resources"]


def test_timeouts_and_memory_are_the_templates() -> None:
    template = function.load_template()
    specs = {name: function.function_spec(name, template) for name in function.FUNCTIONS}
    assert {n: (s.timeout_seconds, s.memory_mb) for n, s in specs.items()} == {
        "collector": (300, 512), "drift_check": (90, 256), "api": (300, 512),
        "audit": (900, 512),
    }
    collector, drift = specs["collector"].environment, specs["drift_check"].environment
    assert collector["MINUTEMETER_CLOCK_GUARD_REQUIRED"] == "true"
    assert collector["POWERTOOLS_SERVICE_NAME"] == "minutemeter"
    assert collector["POWERTOOLS_LOG_LEVEL"] == "INFO"  # the LogLevel parameter's default
    assert drift["MINUTEMETER_DRIFT_WARNING_OFFSET_MS"] == "50"
    # resource references have no local value: invoke sets the table names itself
    assert "MINUTEMETER_LEDGER_TABLE" not in collector


@pytest.mark.parametrize(
    ("event", "sources"),
    [
        ("scheduler-event.json", ["demo"]),
        ("drift-check-scheduled.json", []),
        ("api-status.json", []),
        ("api-source.json", ["demo"]),
        ("api-source-unknown.json", ["ghost"]),
        ("api-reconcile-dry-run.json", ["demo"]),
        ("api-reconcile-confirm.json", ["demo"]),  # base64 body
        ("api-reconcile-unknown-source.json", ["ghost"]),
        ("api-reconcile-malformed-json.json", []),
        ("api-reconcile-bad-base64.json", []),
    ],
)
def test_the_sources_an_event_names(event: str, sources: list[str]) -> None:
    assert invoke.named_sources(json.loads((EVENTS / event).read_text())) == sources


def test_the_hour_of_a_reconcile_window() -> None:
    assert invoke.reconcile_hour(json.loads((EVENTS / "api-reconcile-confirm.json").read_text())) \
        == datetime(2026, 11, 22, 10, tzinfo=UTC)
    for name in ("api-status.json", "api-reconcile-not-rfc3339.json", "scheduler-event.json"):
        assert invoke.reconcile_hour(json.loads((EVENTS / name).read_text())) is None, name


def test_the_context_counts_down_from_the_timeout() -> None:
    spec = function.function_spec("drift_check", function.load_template())
    context = function.LocalLambdaContext(spec, request_id="r-1")
    first = context.get_remaining_time_in_millis()
    assert 89_000 < first <= 90_000
    time.sleep(0.05)
    assert context.get_remaining_time_in_millis() < first
    assert context.function_name == "minutemeter-drift-check"
    assert context.memory_limit_in_mb == 256
    assert context.invoked_function_arn.endswith(":function:minutemeter-drift-check")
    assert context.aws_request_id == "r-1"


def test_moto_server_runs() -> None:
    """moto[server] is installed whole (dev extras): its server starts and serves DynamoDB."""
    import boto3
    from moto.server import ThreadedMotoServer

    from minutemeter.local.ddb import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        client = boto3.client("dynamodb", region_name="us-east-1",
                              endpoint_url=f"http://127.0.0.1:{port}")
        assert client.list_tables()["TableNames"] == []
    finally:
        server.stop()
