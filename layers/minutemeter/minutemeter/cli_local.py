"""The commands that need no AWS, or only a local DynamoDB unless told otherwise:
``tables create``, ``drift-check`` and ``dev exporter``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from collections.abc import Mapping
from datetime import timedelta
from types import FrameType
from typing import NoReturn
from urllib.parse import urlsplit

from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.ntp import NtplibClient
from minutemeter.cli_help import EXIT_DRIFT, EXIT_ERROR, EXIT_OK
from minutemeter.cli_runtime import Runtime, emit
from minutemeter.domain.errors import InputError, MinutemeterError
from minutemeter.domain.timeutil import format_second, parse_rfc3339
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.service.clock import Servers, check_clock

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL")  # botocore's order
AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")
DEV_HISTORY = timedelta(hours=1)

log = logging.getLogger("minutemeter.cli")


class ListenError(MinutemeterError):
    """The sample exporter's port cannot be bound (taken, or not allowed)."""


def cmd_tables_create(runtime: Runtime, args: argparse.Namespace) -> int:
    """Local tables only, unless --real-aws: a deployed stack creates (and names) its own."""
    if not (args.real_aws or runtime.given or local_endpoint(runtime.environ)):
        raise InputError(
            "tables create: no local endpoint (AWS_ENDPOINT_URL_DYNAMODB or AWS_ENDPOINT_URL) "
            "is set, so this would create tables in your AWS account; the deployed stack "
            "creates its own tables (use them with --stack NAME); pass --real-aws to create "
            "them in the account anyway")
    app = runtime.app
    report = create_tables(
        app.dynamodb, ledger_table=app.settings.ledger_table, state_table=app.settings.state_table
    )
    emit({"tables": report})
    return EXIT_OK


def local_endpoint(environ: Mapping[str, str]) -> bool:
    """Whether botocore's endpoint override for DynamoDB points somewhere other than AWS."""
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return False
    url = next((environ[name] for name in ENDPOINT_VARIABLES if environ.get(name)), None)
    if url is None:
        return False
    host = (urlsplit(url).hostname or "").lower()
    return bool(host) and not host.endswith(AWS_DOMAINS)


ALARM_FINDINGS = frozenset({"offset", "bound", "tss-vs-ntp"})


def cmd_drift_check(runtime: Runtime, args: argparse.Namespace) -> int:
    """Only --record touches AWS (the state table); a measurement alone needs no AWS at all."""
    servers = None
    if args.tss or args.ntp:  # servers named here replace the configured ones
        servers = Servers(tss=args.tss, ntp=tuple(args.ntp or ()), link_local=None)
    verdicts = runtime.app.state.verdicts if args.record else None
    settings, clock = (runtime.app.settings, runtime.app.clock) if args.record else (
        runtime.settings, runtime.clock)
    report = check_clock(
        settings, clock, NtplibClient(clock), time.sleep, servers=servers,
        verdicts=verdicts, spacing_seconds=args.spacing,
    )
    document = report.to_json()
    emit(document)
    verdict = report.verdict
    if verdict.valid_servers == 0:
        return EXIT_ERROR
    alarming = [f for f in verdict.findings
                if f.code in ALARM_FINDINGS and f.level.value in {"warning", "critical"}]
    return EXIT_DRIFT if alarming else EXIT_OK


def cmd_dev_exporter(runtime: Runtime, args: argparse.Namespace) -> int:
    """The sample exporter on 127.0.0.1 until Ctrl-C (or SIGTERM): exit 0."""
    clock = runtime.clock
    origin = (parse_rfc3339(args.start, what="--start") if args.start
              else (clock.now() - DEV_HISTORY).replace(second=0, microsecond=0))
    accounts = account_ids(args.accounts, seed=args.seed)
    counters = SyntheticCounters(accounts, origin, seed=args.seed, live_clock=clock.now)
    try:
        exporter = SampleExporter(counters, node_id=args.node_id, env=args.env,
                                  page_size=args.page_size, port=args.port)
    except OSError as exc:
        raise ListenError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror} (another "
                          "exporter running there? choose another --port)") from exc
    previous = signal.signal(signal.SIGTERM, interrupt)  # before anyone learns the URL
    try:
        print(json.dumps({"url": exporter.url, "node_id": args.node_id, "env": args.env,
                          "start": format_second(origin), "accounts": accounts}), flush=True)
        log.info("sample exporter serving %s until interrupted (Ctrl-C)", exporter.url)
        exporter.serve_forever()
    except KeyboardInterrupt:
        log.info("sample exporter stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM (``kill %1``) stops the exporter as Ctrl-C does."""
    raise KeyboardInterrupt
