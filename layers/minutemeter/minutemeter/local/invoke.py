"""``make invoke``: run one Lambda handler in-process with an event file, no Docker.

    python -m minutemeter.local.invoke collector events/scheduler-event.json [--backend moto]

What ``sam local invoke`` does with a container, on this machine: the handler module
(``functions/<fn>/app.py``) imported by path, the function's environment from template.yaml
(parameters at their defaults), a Lambda context whose remaining time counts down from the
function's ``Timeout`` (all three: :mod:`minutemeter.local.lambda_function`). Around it,
everything on 127.0.0.1: DynamoDB Local (``ddb-local``, the default) or moto in-process
(``moto``) with both tables created; the source(s) the event names
registered against a sample exporter (``demo`` when the event names none), and for an API event
with a reconcile window billed from :01 to :49 of the window's hour (so the sample reconcile
events get the answers tests/functional/test_api.py documents); for the drift check, two NTP
responders instead of the Time Sync Service and the pool, and no link-local probe.

The handler's return value is printed as JSON on stdout; logs and EMF metrics go to stderr.
A handler that raises prints ``{"errorType", "errorMessage"}`` on stdout (as ``sam local invoke``
does), its traceback on stderr, and exits 1. Dev tooling: not shipped in the layer.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.bootstrap import App, bootstrap
from minutemeter.domain.errors import InputError
from minutemeter.domain.model import JobStatus, SourceConfig
from minutemeter.domain.timeutil import floor_minute, parse_rfc3339
from minutemeter.local.ddb import LOCAL_CREDENTIALS, DynamoDBLocal
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.local.lambda_function import (
    FUNCTIONS,
    FunctionSpec,
    LocalLambdaContext,
    function_spec,
    load_handler,
    load_template,
)
from minutemeter.local.ntp_responder import NtpResponder
from minutemeter.ports import Clock
from minutemeter.service.collect import collect_source
from minutemeter.settings import (
    DEFAULT_LEDGER_TABLE,
    DEFAULT_STATE_TABLE,
    ENV_COMMIT_CONCURRENCY,
    ENV_DRIFT_LINK_LOCAL,
    ENV_DRIFT_NTP,
    ENV_DRIFT_TSS,
    ENV_LEDGER_TABLE,
    ENV_STATE_TABLE,
)

BACKENDS = ("ddb-local", "moto")
DEFAULT_SOURCE = "demo"  # the source events/ and `make demo` use
# Set by this module, never taken from the template or the caller's shell.
_OWN = frozenset({ENV_LEDGER_TABLE, ENV_STATE_TABLE, "AWS_ENDPOINT_URL_DYNAMODB"})


# --------------------------------------------------------------------------- the event


def named_sources(event: object) -> list[str]:
    """The source ids an event names: a collector event's ``source_id``, a Function URL event's
    ``/sources/{id}`` path or its JSON body's ``source_id``. Empty when it names none."""
    if not isinstance(event, dict):
        return []
    if isinstance(event.get("source_id"), str) and event["source_id"]:
        return [event["source_id"]]
    found: list[str] = []
    path = event.get("rawPath")
    if isinstance(path, str) and path.startswith("/sources/"):
        ident = path[len("/sources/"):].strip("/")
        if ident and "/" not in ident:
            found.append(ident)
    body = _json_body(event)
    if isinstance(body, dict) and isinstance(body.get("source_id"), str) and body["source_id"]:
        found.append(body["source_id"])
    return list(dict.fromkeys(found))


def _json_body(event: Mapping[str, Any]) -> object:
    body = event.get("body")
    if not isinstance(body, str) or not body:
        return None
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body
        return json.loads(raw)
    except (binascii.Error, ValueError):
        return None


# --------------------------------------------------------------------------- the local world


@contextmanager
def _backend(name: str) -> Iterator[None]:
    """DynamoDB Local on 127.0.0.1 (its endpoint in ``AWS_ENDPOINT_URL_DYNAMODB``) or moto."""
    if name == "moto":
        from moto import mock_aws  # a dev dependency, like DynamoDB Local

        os.environ[ENV_COMMIT_CONCURRENCY] = "1"  # moto is not thread-safe
        with mock_aws():
            yield
        return
    with DynamoDBLocal() as ddb:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint
        yield


@dataclass(frozen=True)
class _StoppedClock:
    """:class:`~minutemeter.ports.Clock` whose wall time stands at ``at`` (monotonic time and run
    ids come from ``clock``): the collector bills a past hour with it."""

    at: datetime
    clock: Clock

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def new_run_id(self) -> str:
        return self.clock.new_run_id()


def reconcile_hour(event: object) -> datetime | None:
    """The hour a Function URL event's reconcile window starts in (its body's ``since``,
    floored), or None when the event has no such window."""
    body = _json_body(event) if isinstance(event, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("since"), str):
        return None
    try:
        since = parse_rfc3339(body["since"], what="since")
    except InputError:
        return None
    return since.replace(minute=0, second=0, microsecond=0)


def _register(app: App, sources: Sequence[str], stack: ExitStack,
              billed_hour: datetime | None) -> None:
    """Each source on its own sample exporter on 127.0.0.1 with 4 accounts.

    Live (``billed_hour`` None): counters from two hours ago, the source starting two minutes
    after, so a first collector run has 30 minutes to bill. For a reconcile event: the world the
    sample reconcile events were written for (tests/functional/test_api.py), counters for 45
    minutes of the window's hour and the source billed from :01 to :49 by the collector."""
    now = app.clock.now()
    origin = billed_hour or floor_minute(now) - timedelta(hours=2)
    for source_id in sources:
        if billed_hour is None:
            counters = SyntheticCounters(account_ids(4, seed=2026), origin,
                                         live_clock=app.clock.now)
        else:
            counters = SyntheticCounters(account_ids(4, seed=2026), origin,
                                         end=origin + timedelta(minutes=45))
        exporter = stack.enter_context(SampleExporter(counters, node_id="node-a", env="demo"))
        app.state.sources.put_source(SourceConfig(
            source_id=source_id, url=exporter.url, node_id="node-a", env="demo",
            start=origin + timedelta(minutes=2 if billed_hour is None else 1),
            lag_seconds=60, max_window_seconds=1800 if billed_hour is None else 3600,
        ))
        print(f"invoke: source {source_id} registered, exporter {exporter.url}", file=sys.stderr)
        if billed_hour is not None:
            deps = replace(app.billing_deps,
                           clock=_StoppedClock(origin + timedelta(minutes=50), app.clock))
            for _ in range(5):
                job = collect_source(deps, source_id)
                if job.caught_up or job.status is JobStatus.ERROR:
                    break
            print(f"invoke: source {source_id} billed up to {job.completed_until} "
                  f"({job.status.value})", file=sys.stderr)


def _environment(spec: FunctionSpec) -> None:
    """The function's environment as the template gives it, local credentials, no endpoint or
    profile from the shell: nothing but 127.0.0.1 is reached."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in {"AWS_PROFILE", "AWS_SESSION_TOKEN"}:
            del os.environ[name]
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.update({k: v for k, v in spec.environment.items() if k not in _OWN})
    os.environ[ENV_LEDGER_TABLE] = DEFAULT_LEDGER_TABLE
    os.environ[ENV_STATE_TABLE] = DEFAULT_STATE_TABLE


def invoke(spec: FunctionSpec, event: object, *, backend: str,
           sources: Sequence[str]) -> object:
    """Run the handler once with ``event`` in the local world; its return value (raises what
    the handler raises)."""
    _environment(spec)
    with ExitStack() as stack:
        stack.enter_context(_backend(backend))
        app = bootstrap()
        create_tables(app.dynamodb, ledger_table=app.settings.ledger_table,
                      state_table=app.settings.state_table)
        _register(app, sources, stack,
                  reconcile_hour(event) if spec.name == "api" else None)
        if spec.name == "drift_check":
            tss = stack.enter_context(NtpResponder())
            ntp = stack.enter_context(NtpResponder())
            os.environ[ENV_DRIFT_TSS] = tss.address
            os.environ[ENV_DRIFT_NTP] = ntp.address
            os.environ[ENV_DRIFT_LINK_LOCAL] = ""
        handler = load_handler(spec)
        context = LocalLambdaContext(spec, request_id=f"local-{app.clock.new_run_id()}")
        return handler.lambda_handler(event, context)


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minutemeter.local.invoke",
        description="Run a minutemeter Lambda handler in-process with an event file, against "
        "DynamoDB Local or moto, with the sources the event names registered against a sample "
        "exporter on 127.0.0.1. Prints the handler's return value as JSON on stdout; logs go "
        "to stderr. Exit 0 when the handler returns, 1 when it raises, 2 on bad arguments.",
    )
    parser.add_argument("function", choices=sorted(FUNCTIONS),
                        help="the function: the folder under functions/")
    parser.add_argument("event", type=Path, help="the event file, e.g. events/scheduler-event.json")
    parser.add_argument("--backend", choices=BACKENDS, default="ddb-local",
                        help="DynamoDB Local (default; needs `make setup`) or moto in-process")
    parser.add_argument("--source", action="append", dest="sources", metavar="ID",
                        help="register this source instead of the ones the event names "
                        "(repeatable); default: the event's, else 'demo' (none for drift_check)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        event = json.loads(args.event.read_text())
    except (OSError, ValueError) as exc:
        print(f"invoke: cannot read the event {args.event}: {exc}", file=sys.stderr)
        return 2
    spec = function_spec(args.function, load_template())
    if args.sources is not None:
        sources = [s for s in args.sources if s]
    elif spec.name == "drift_check":
        sources = []
    else:
        sources = named_sources(event) or [DEFAULT_SOURCE]
    stdout = sys.stdout
    code = 0
    with redirect_stdout(sys.stderr):  # Powertools logs and EMF go to stdout in Lambda
        try:
            result: object = invoke(spec, event, backend=args.backend, sources=sources)
        except Exception as exc:
            traceback.print_exc()
            result = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            code = 1
    stdout.write(json.dumps(result, default=str) + "\n")
    stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
