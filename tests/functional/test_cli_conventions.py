"""The CLI behaves like one (issue 14), for every subcommand found by walking the parser:
``--help`` exits 0; a bad argument exits 2 with one line on stderr; with no region, an unreachable
endpoint or no credentials every AWS-using command exits 1 with one line naming what to fix, and
no traceback. Also: ``--version``, exit codes and variables in ``--help``, help on every option,
global options anywhere, closed pipes, ``tables create`` against AWS only when asked,
``drift-check`` with no AWS configuration at all, and ``dev exporter``.

Everything runs the real console script in a controlled environment: nothing leaves 127.0.0.1
(``HTTPS_PROXY`` points at a closed local port, so even a mistake could not reach AWS).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

import pytest
import requests
from botocore.config import Config

from minutemeter import __version__, settings
from minutemeter.bootstrap import aws_session, client_config, region_from
from minutemeter.cli_parser import build_parser
from minutemeter.local.ddb import LOCAL_CREDENTIALS, DynamoDBLocal
from minutemeter.local.ntp_responder import NtpResponder

SCRIPT = Path(sys.executable).parent / "minutemeter"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "minutemeter.cli"]
ACCOUNT = "3f2b8c4e-1a2b-4c3d-8e4f-5a6b7c8d9e0f"
WORKERS = max(4, 2 * (os.cpu_count() or 2))  # subprocesses: mostly imports
HIDDEN = {"--requested-by"}  # internal: who a local reconcile records


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLOSED = f"http://127.0.0.1:{_closed_port()}"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "conventions", "AWS_SECRET_ACCESS_KEY": "conventions"}
REGION = {"AWS_REGION": "eu-west-1"}
LOCAL_ENDPOINTS = {"AWS_ENDPOINT_URL_DYNAMODB": CLOSED, "AWS_ENDPOINT_URL": CLOSED}


@pytest.fixture(scope="module")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No AWS configuration at all: an empty home, no config files, no instance metadata."""
    home = tmp_path_factory.mktemp("home")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
        "HTTPS_PROXY": CLOSED,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def run(argv: Sequence[str], env: dict[str, str], timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def run_all(argvs: Sequence[Sequence[str]], env: dict[str, str]
            ) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda argv: run(argv, env), argvs))


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# -- the parser, walked -------------------------------------------------------------------------
def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
            ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


def is_leaf(parser: argparse.ArgumentParser) -> bool:
    return not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


ALL = list(parsers(build_parser()))
LEAVES = [path for path, parser in ALL if is_leaf(parser)]


def aws_commands(ntp: str) -> dict[str, list[str]]:
    """Every command that talks to AWS, with arguments valid enough to get there."""
    window = ["--since", "2026-11-22T10:00:00Z", "--until", "2026-11-22T11:00:00Z"]
    return {
        "tables create": ["tables", "create"],
        "sources put": ["sources", "put", "s1", "--url", "http://127.0.0.1:1"],
        "sources list": ["sources", "list"],
        "sources disable": ["sources", "disable", "s1"],
        "sources enable": ["sources", "enable", "s1"],
        "collect": ["collect", "s1", "--timeout", "30"],
        "reconcile": ["reconcile", "s1", *window, "--dry-run"],
        "drift-check": ["drift-check", "--ntp", ntp, "--spacing", "0.05", "--record"],
        "ledger export": ["ledger", "export", "--source", "s1"],
        "status": ["status"],
        "quarantine list": ["quarantine", "list", "s1"],
        "resets list": ["resets", "list", "s1"],
        "profiles put": ["profiles", "put", ACCOUNT, "--included-bytes", "0",
                         "--price-per-byte", "0.000001", "--pricing-version", "v1"],
        "usage": ["usage", ACCOUNT, "--month", "2026-11"],
        "statements": ["statements", "--month", "2026-11"],
        "audit": ["audit", "--month", "2026-11"],
        "sinks put": ["sinks", "put", "billing", "--kind", "stripe", "--url",
                      "https://api.stripe.com", "--meter", "m", "--value", "bytes",
                      "--api-key-env", "STRIPE_KEY"],
        "sinks list": ["sinks", "list"],
        "sink deliver": ["sink", "deliver"],
        # the other ways to AWS: the operations API, and a stack's outputs
        "reconcile --url": ["reconcile", "s1", *window, "--dry-run", "--url", CLOSED],
        "--stack": ["--stack", "minutemeter", "sources", "list"],
    }


LOCAL_ONLY = {"dev exporter"}  # and drift-check without --record (tests below)


def test_every_command_is_covered_here() -> None:
    named = {" ".join(path) for path in LEAVES}
    assert named == (set(aws_commands("x")) - {"reconcile --url", "--stack"}) | LOCAL_ONLY


def test_every_option_and_positional_has_help() -> None:
    missing = []
    for path, parser in ALL:
        for action in parser._actions:
            name = action.option_strings[-1] if action.option_strings else action.dest
            if name in HIDDEN:
                assert action.help == argparse.SUPPRESS
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"minutemeter {' '.join(path)} {name}")
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"minutemeter {' '.join(path)} {choice.dest}"
                            for choice in action._choices_actions if not choice.help]
    assert missing == []


def test_help_exits_0_for_every_command(base_env: dict[str, str]) -> None:
    results = run_all([[*path, "--help"] for path, _ in ALL], base_env)
    for (path, _), done in zip(ALL, results, strict=True):
        assert (done.returncode, done.stderr) == (0, ""), path
        assert done.stdout.startswith(f"usage: minutemeter {' '.join(path)}".rstrip()), path


def test_a_bad_argument_exits_2_with_one_line_for_every_command(
    base_env: dict[str, str],
) -> None:
    results = run_all([[*path, "--no-such-option"] for path, _ in ALL], base_env)
    for (path, _), done in zip(ALL, results, strict=True):
        assert done.returncode == 2, (path, done.stderr)
        assert done.stdout == ""
        line = one_line(done)
        assert line.startswith("minutemeter") and "error:" in line and "--help" in line, line


SCENARIOS = {
    "no region": ({**CREDENTIALS, **LOCAL_ENDPOINTS}, "AWS_REGION"),
    "unreachable endpoint": ({**CREDENTIALS, **REGION, **LOCAL_ENDPOINTS}, CLOSED),
    "no credentials": ({**REGION, **LOCAL_ENDPOINTS}, "credentials"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_aws_failure_is_one_line_with_exit_1(
    base_env: dict[str, str], scenario: str,
) -> None:
    extra, hint = SCENARIOS[scenario]
    with NtpResponder() as ntp:
        commands = aws_commands(ntp.address)
        results = run_all(list(commands.values()), {**base_env, **extra})
    for name, done in zip(commands, results, strict=True):
        assert done.returncode == 1, (name, done.stdout, done.stderr)
        assert done.stdout == "", name
        line = one_line(done)
        assert line.startswith("minutemeter: ") and hint in line, (name, line)


def test_verbose_adds_the_traceback(base_env: dict[str, str]) -> None:
    done = run(["sources", "list", "-v"], {**base_env, **CREDENTIALS, **LOCAL_ENDPOINTS})
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "NoRegionError" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("minutemeter: no AWS region")


def test_the_region_comes_from_aws_region_or_aws_default_region() -> None:
    assert region_from({"AWS_REGION": "eu-west-1"}) == "eu-west-1"
    assert region_from({"AWS_DEFAULT_REGION": "us-west-2"}) == "us-west-2"
    assert region_from({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"}) \
        == "eu-west-1"
    assert region_from({}) is None  # the profile's, if any
    assert aws_session({"AWS_REGION": "ap-southeast-2"}).region_name == "ap-southeast-2"


def _retries(config: Config) -> object:
    """The ``retries`` option: botocore sets every option as an instance attribute, which its
    stubs do not declare."""
    return vars(config)["retries"]


def test_aws_max_attempts_replaces_the_default_retries() -> None:
    assert _retries(client_config(settings.Settings(), {})) == {"mode": "standard",
                                                                "max_attempts": 5}
    assert _retries(client_config(settings.Settings(), {"AWS_MAX_ATTEMPTS": "1"})) == {
        "mode": "standard"}  # botocore takes the total from the variable


# -- --version, --help, global options ------------------------------------------------------------
def test_version(base_env: dict[str, str]) -> None:
    done = run(["--version"], base_env)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"minutemeter {__version__}\n", "")


def test_help_lists_exit_statuses_and_environment_variables(base_env: dict[str, str]) -> None:
    text = run(["--help"], base_env).stdout
    statuses = text[text.index("exit status:"):text.index("environment:")]
    for code in ("0", "1", "2", "3", "4", "5", "6", "130", "141"):
        assert f"\n  {code} " in statuses, code
    environment = text[text.index("environment:"):]
    names = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL",
             "MINUTEMETER_STACK"}
    names |= {v for k, v in vars(settings).items() if k.startswith("ENV_")}
    assert {n for n in names if n not in environment} == set()


@pytest.mark.parametrize(
    ("argv", "verbose", "stack"),
    [
        (["-v", "--stack", "a", "sources", "list"], True, "a"),
        (["sources", "list", "-v", "--stack", "a"], True, "a"),
        (["sources", "-v", "list", "--stack", "a"], True, "a"),
        (["--stack", "a", "collect", "s1", "--verbose"], True, "a"),
        (["-v", "ledger", "export", "--stack", "b"], True, "b"),
        (["status"], False, None),
    ],
)
def test_global_options_before_or_after_the_command(
    argv: list[str], verbose: bool, stack: str | None,
) -> None:
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.stack) == (verbose, stack)


# -- pipes -------------------------------------------------------------------------------------
def _with_closed_stdout(argv: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stdout's reader gone before the command writes (``| head`` that has its line)."""
    process = subprocess.Popen([*CLI, *argv], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    return process.returncode, err


def test_a_closed_pipe_ends_quietly(base_env: dict[str, str]) -> None:
    code, err = _with_closed_stdout(["--help"], base_env)
    assert (code, err) == (141, "")
    with NtpResponder() as ntp:
        code, err = _with_closed_stdout(
            ["drift-check", "--ntp", ntp.address, "--spacing", "0.05"], base_env)
    assert (code, err) == (141, "")


def test_ctrl_c_is_one_line_and_exit_130(base_env: dict[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as api:  # accepts, never answers
        api.bind(("127.0.0.1", 0))
        api.listen(1)
        api.settimeout(60)
        process = subprocess.Popen(
            [*CLI, "reconcile", "s1", "--since", "2026-11-22T10:00:00Z", "--until",
             "2026-11-22T11:00:00Z", "--url", f"http://127.0.0.1:{api.getsockname()[1]}/"],
            env={**base_env, **CREDENTIALS, **REGION}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        connection, _ = api.accept()  # the command is waiting for the answer now
        with connection:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (130, "", "minutemeter: interrupted\n")


def test_sources_list_into_a_closed_pipe_ends_quietly(
    base_env: dict[str, str], ddb_local: DynamoDBLocal,
) -> None:
    env = _local_env(base_env, ddb_local, "pipe")
    assert run(["tables", "create"], env).returncode == 0
    for number in range(3):
        assert run(["sources", "put", f"s{number}", "--url", "http://127.0.0.1:1"],
                   env).returncode == 0
    code, err = _with_closed_stdout(["sources", "list"], env)
    assert (code, err) == (141, "")
    shell = subprocess.run(f"{' '.join(CLI)} sources list | head -1", shell=True, env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert (shell.returncode, shell.stdout, shell.stderr) == (0, "[\n", "")


def _local_env(base_env: dict[str, str], ddb: DynamoDBLocal, tag: str) -> dict[str, str]:
    return {**base_env, **LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB": ddb.endpoint,
            "MINUTEMETER_LEDGER_TABLE": f"conv-ledger-{tag}",
            "MINUTEMETER_STATE_TABLE": f"conv-state-{tag}"}


# -- tables create, drift-check, dev exporter ---------------------------------------------------
def test_tables_create_refuses_real_aws_unless_asked(base_env: dict[str, str]) -> None:
    env = {**base_env, **CREDENTIALS, **REGION}
    refused = run(["tables", "create"], env)
    assert refused.returncode == 2 and refused.stdout == ""
    line = one_line(refused)
    assert "AWS_ENDPOINT_URL_DYNAMODB" in line and "--real-aws" in line
    assert "deployed stack creates its own tables" in line
    # AWS's own endpoint named explicitly is still AWS
    aws = run(["tables", "create"], {**env, "AWS_ENDPOINT_URL_DYNAMODB":
                                     "https://dynamodb.eu-west-1.amazonaws.com"})
    assert aws.returncode == 2
    # asked: it goes to AWS (here: into the closed proxy port, one line, exit 1)
    asked = run(["tables", "create", "--real-aws"], env)
    assert asked.returncode == 1 and "Traceback" not in asked.stderr
    assert len(asked.stderr.splitlines()) == 1


def test_drift_check_needs_no_aws_configuration(tmp_path: Path) -> None:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    with NtpResponder() as tss, NtpResponder() as ntp:
        done = run(["drift-check", "--tss", tss.address, "--ntp", ntp.address,
                    "--spacing", "0.05"], clean)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {s["server"] for s in report["servers"]} == {tss.address, ntp.address}
    assert report["verdict"]["status"] == "ok"


class StartedLine(TypedDict):
    """The JSON line `dev exporter` prints first (README: url, node_id, env, start, accounts)."""

    url: str
    node_id: str
    env: str
    start: str
    accounts: list[str]


@dataclass
class DevExporter:
    process: subprocess.Popen[str]
    started: StartedLine


@pytest.fixture
def dev_exporter(base_env: dict[str, str]) -> Iterator[DevExporter]:
    start = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    process = subprocess.Popen(
        [*CLI, "dev", "exporter", "--port", "0", "--accounts", "2", "--node-id", "node-a",
         "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ")],
        env=base_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        yield DevExporter(process, json.loads(line))
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_dev_exporter_serves_live_snapshots_until_interrupted(
    dev_exporter: DevExporter,
) -> None:
    started = dev_exporter.started
    assert started["node_id"] == "node-a" and len(started["accounts"]) == 2
    now = datetime.now(UTC)
    page = requests.get(f"{started['url']}/v1/usage/window", timeout=10, params={
        "since": started["start"], "until": (now + timedelta(hours=1)).isoformat()}).json()
    assert page["node_id"] == "node-a" and page["snapshots"]
    times = [datetime.fromisoformat(s["taken_at"].replace("Z", "+00:00"))
             for s in page["snapshots"]]
    assert times == sorted(times) and times[-1] <= datetime.now(UTC)  # live: nothing ahead
    accounts = {s["account_id"] for snap in page["snapshots"] for s in snap["samples"]}
    assert accounts == set(started["accounts"])
    dev_exporter.process.send_signal(signal.SIGINT)
    assert dev_exporter.process.wait(timeout=10) == 0


def test_dev_exporter_stops_with_exit_0_on_sigterm(dev_exporter: DevExporter) -> None:
    dev_exporter.process.send_signal(signal.SIGTERM)
    assert dev_exporter.process.wait(timeout=10) == 0
    assert "Traceback" not in (dev_exporter.process.stderr.read()
                               if dev_exporter.process.stderr else "")


def test_dev_exporter_on_a_busy_port_is_one_line(
    base_env: dict[str, str], dev_exporter: DevExporter,
) -> None:
    port = str(dev_exporter.started["url"]).rsplit(":", 1)[1]
    done = run(["dev", "exporter", "--port", port], base_env)
    assert done.returncode == 1 and f"127.0.0.1:{port}" in one_line(done)


def test_the_dev_exporter_bills_through_the_cli(
    base_env: dict[str, str], ddb_local: DynamoDBLocal, dev_exporter: DevExporter,
) -> None:
    env = _local_env(base_env, ddb_local, "dev")
    assert run(["tables", "create"], env).returncode == 0
    start = str(dev_exporter.started["start"])
    put = run(["sources", "put", "node-a", "--url", str(dev_exporter.started["url"]),
               "--start", start, "--lag", "0"], env)
    assert put.returncode == 0, put.stderr
    collected = run(["collect", "node-a"], env)
    assert collected.returncode == 0, collected.stderr
    assert json.loads(collected.stdout)["written_minutes"] >= 2 * 5  # 2 accounts, 10 minutes
    exported = run(["ledger", "export", "--source", "node-a"], env).stdout.splitlines()
    assert {json.loads(line)["account_id"] for line in exported} == set(
        dev_exporter.started["accounts"])
