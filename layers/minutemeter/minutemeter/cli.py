"""The ``minutemeter`` operator CLI (shared/spec/operator-cli.md).

JSON (or JSON Lines) on stdout, logs on stderr. Exit status: 0 ok, 1 error, 2 bad arguments,
3 partial, 4 another runner holds the lease.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.dynamo.state import job_to_dict
from minutemeter.adapters.ntp import NtplibClient
from minutemeter.bootstrap import App, bootstrap
from minutemeter.domain.errors import ConfigError, InputError, LeaseHeldError, MinutemeterError
from minutemeter.domain.model import (
    BillingProfile,
    ClockGuardAction,
    JobStatus,
    ResetPolicy,
)
from minutemeter.domain.money import check_profile, parse_decimal
from minutemeter.domain.registry import SourceUnreadableError
from minutemeter.domain.timeutil import format_second, parse_rfc3339
from minutemeter.domain.validation import is_account_id
from minutemeter.ports import Clock, LedgerFilter
from minutemeter.presenters import decimal_text, entry_to_json, source_to_json, status_table
from minutemeter.progress import ProgressBar
from minutemeter.remote import RemoteBusyError, reconcile_until_done
from minutemeter.service.clock import Servers, check_clock
from minutemeter.service.collect import collect_source
from minutemeter.service.operations import source_document, source_documents
from minutemeter.service.reconcile import ReconcileRequest, reconcile
from minutemeter.service.sources import SourceChanges, put_source

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_LEASE_HELD = 0, 1, 2, 3, 4
EXIT_DIFFERENCES = 5
EXIT_DRIFT = 6
# The collector function's Timeout in template.yaml: `collect` gets the same budget by default.
COLLECTOR_TIMEOUT_SECONDS = 300
MAX_TIMEOUT_SECONDS = 86_400
JOB_EXIT = {
    JobStatus.OK: EXIT_OK,
    JobStatus.PARTIAL: EXIT_PARTIAL,
    JobStatus.ERROR: EXIT_ERROR,
    JobStatus.SKIPPED: EXIT_LEASE_HELD,
}

log = logging.getLogger("minutemeter.cli")


def main(argv: Sequence[str] | None = None, app: App | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        if getattr(args, "api_url", None):  # reconcile --url: the deployed API does the work
            return _reconcile_remote(args)
        handler: Callable[[App, argparse.Namespace], int] = args.handler
        return handler(app or bootstrap(), args)
    except (InputError, ConfigError) as exc:  # a RemoteInputError (400, 413, 422) too
        print(f"minutemeter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (LeaseHeldError, RemoteBusyError) as exc:
        print(f"minutemeter: {exc}", file=sys.stderr)
        return EXIT_LEASE_HELD
    except MinutemeterError as exc:
        print(f"minutemeter: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


class _ExtrasFormatter(logging.Formatter):
    """``time level logger message {extra fields as JSON}``: logs that explain themselves."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in self._STANDARD}
        extras.pop("message", None)
        return f"{text} {json.dumps(extras, default=str)}" if extras else text


def _configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if root.handlers:  # already configured by whoever embeds the CLI
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ExtrasFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _emit(document: Any) -> None:
    print(json.dumps(document, default=_json_default, indent=2))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return format_second(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- commands ---------------------------------------------------------------------------------
def _tables_create(app: App, args: argparse.Namespace) -> int:
    report = create_tables(
        app.dynamodb, ledger_table=app.settings.ledger_table, state_table=app.settings.state_table
    )
    _emit({"tables": report})
    return EXIT_OK


def _sources_put(app: App, args: argparse.Namespace) -> int:
    changes = SourceChanges(
        url=args.url,
        node_id=args.node_id,
        env=args.env,
        start=parse_rfc3339(args.start, what="--start") if args.start else None,
        lag_seconds=args.lag,
        max_window_seconds=args.max_window,
        reset_policy=ResetPolicy(args.reset_policy) if args.reset_policy else None,
        lease_seconds=args.lease_seconds,
        token_secret=args.token_secret,
        clock_tolerance_seconds=args.clock_tolerance,
        clock_guard=ClockGuardAction(args.clock_guard) if args.clock_guard else None,
        clock_margin_ms=args.clock_margin_ms,
    )
    source = put_source(app.state, args.source_id, changes, app.clock.now())
    _emit(source_to_json(source))
    return EXIT_OK


def _sources_enable(enabled: bool) -> Callable[[App, argparse.Namespace], int]:
    def command(app: App, args: argparse.Namespace) -> int:
        app.state.get_source(args.source_id)  # SourceNotFoundError: exit 1, nothing created
        source = put_source(
            app.state, args.source_id, SourceChanges(enabled=enabled), app.clock.now()
        )
        _emit(source_to_json(source))
        return EXIT_OK

    return command


def _sources_list(app: App, args: argparse.Namespace) -> int:
    _emit(source_documents(app.state, app.clock.now()))
    return EXIT_OK


class TimeoutBudget:
    """:class:`minutemeter.ports.Budget` of ``seconds`` from its creation, measured on the
    clock's monotonic time (what the Lambda context's remaining time is to the collector)."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._deadline = clock.monotonic() + seconds

    def remaining_seconds(self) -> float | None:
        return self._deadline - self._clock.monotonic()


def _collect(app: App, args: argparse.Namespace) -> int:
    seconds: float = args.timeout
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:  # NaN fails this too
        raise InputError(f"--timeout must be > 0 and at most {MAX_TIMEOUT_SECONDS} seconds")
    margin = app.settings.deadline_margin_seconds
    if seconds <= margin:
        log.warning("--timeout %s s is within the deadline margin (%s s): nothing will be "
                    "collected", seconds, margin)
    job = collect_source(app.collect_deps, args.source_id,
                         budget=TimeoutBudget(app.clock, seconds))
    _emit(job_to_dict(job))
    return JOB_EXIT[job.status]


def _reconcile(app: App, args: argparse.Namespace) -> int:
    request = ReconcileRequest(
        source_id=args.source_id,
        since=parse_rfc3339(args.since, what="--since"),
        until=parse_rfc3339(args.until, what="--until"),
        dry_run=args.dry_run,
        requested_by=args.requested_by,
    )
    bar = ProgressBar(sys.stderr, "reconcile")
    result = reconcile(app.collect_deps, request, progress=bar.update)
    bar.close()
    _emit(result.to_json())
    return RECONCILE_EXIT.get(result.status, EXIT_ERROR)


RECONCILE_EXIT = {"ok": EXIT_OK, "corrected": EXIT_OK, "differences": EXIT_DIFFERENCES}


def _reconcile_remote(args: argparse.Namespace) -> int:
    """``reconcile --url``: the deployed operations API runs it, recorded under the IAM
    principal that signed the request (SigV4, the default credential chain). A confirm that
    ends ``partial`` (the function's deadline) is called again and resumes there."""
    request = {"source_id": args.source_id, "since": args.since, "until": args.until,
               "dry_run": args.dry_run}
    bar = ProgressBar(sys.stderr, "reconcile")
    document = reconcile_until_done(args.api_url, request, progress=bar.update)
    bar.close()
    _emit(document)
    return RECONCILE_EXIT.get(str(document.get("status")), EXIT_ERROR)


ALARM_FINDINGS = frozenset({"offset", "bound", "tss-vs-ntp"})


def _drift_check(app: App, args: argparse.Namespace) -> int:
    servers = None
    if args.tss or args.ntp:  # servers named here replace the configured ones
        servers = Servers(tss=args.tss, ntp=tuple(args.ntp or ()), link_local=None)
    report = check_clock(
        app.settings, app.clock, NtplibClient(app.clock), time.sleep, servers=servers,
        state=app.state if args.record else None, spacing_seconds=args.spacing,
    )
    document = report.to_dict()
    _emit(document)
    verdict = report.verdict
    if verdict.valid_sources == 0:
        return EXIT_ERROR
    alarming = [f for f in verdict.findings
                if f.code in ALARM_FINDINGS and f.level.value in {"warning", "critical"}]
    return EXIT_DRIFT if alarming else EXIT_OK


def _ledger_export(app: App, args: argparse.Namespace) -> int:
    selection = LedgerFilter(
        source_id=args.source,
        account_id=args.account.lower() if args.account else None,
        since=parse_rfc3339(args.since, what="--since") if args.since else None,
        until=parse_rfc3339(args.until, what="--until") if args.until else None,
    )
    if selection.since and selection.until and selection.since >= selection.until:
        raise InputError("--since must be before --until")
    count = 0
    for entry in app.ledger.export(selection):
        print(json.dumps(entry_to_json(entry), default=_json_default, separators=(",", ":")))
        count += 1
    log.info("exported %d ledger entries", count)
    return EXIT_OK


def _status(app: App, args: argparse.Namespace) -> int:
    now = app.clock.now()
    if args.source_id:  # SourceUnreadableError: exit 1, saying how to repair it
        source = app.state.get_source(args.source_id)
        documents = [source_document(app.state, source, now, jobs=args.jobs or 0)]
    else:
        documents = source_documents(app.state, now, jobs=args.jobs or 0)
    if args.table:
        print(status_table(documents))
    else:
        _emit(documents if not args.source_id else documents[0])
    return EXIT_OK


def _records(kind: str) -> Callable[[App, argparse.Namespace], int]:
    def command(app: App, args: argparse.Namespace) -> int:
        with contextlib.suppress(SourceUnreadableError):  # registered; records still readable
            app.state.get_source(args.source_id)
        for record in app.state.list_records(args.source_id, kind, args.limit):
            print(json.dumps(record, default=_json_default, separators=(",", ":")))
        return EXIT_OK

    return command


def _profiles_put(app: App, args: argparse.Namespace) -> int:
    """Money within domain/money.py's precision and range (exact pricing), else exit 2."""
    profile = check_profile(BillingProfile(
        included_bytes=args.included_bytes,
        price_per_byte=parse_decimal(args.price_per_byte, "--price-per-byte"),
        multiplier=parse_decimal(args.multiplier, "--multiplier"),
        pricing_rule_version=args.pricing_version,
    ))
    if not is_account_id(args.account_id):
        raise InputError(f"account id must be a UUID, got {args.account_id[:40]!r}")
    app.state.put_profile(args.account_id.lower(), profile)
    _emit({"account_id": args.account_id.lower(), **vars(profile)})
    return EXIT_OK


def _operator() -> str:
    """Who runs a local reconcile, for its audit record."""
    return f"cli:{getpass.getuser()}"


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into exit 2)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# -- parser -----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minutemeter", description="minutemeter operator CLI (JSON on stdout)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    tables = commands.add_parser("tables", help="manage the DynamoDB tables")
    tables_cmd = tables.add_subparsers(dest="action", required=True)
    tables_cmd.add_parser("create", help="create the tables (idempotent)").set_defaults(
        handler=_tables_create
    )

    sources = commands.add_parser("sources", help="the source registry")
    sources_cmd = sources.add_subparsers(dest="action", required=True)
    put = sources_cmd.add_parser("put", help="create or update a source")
    put.add_argument("source_id", metavar="ID")
    put.add_argument("--url", help="exporter base URL (required for a new source)")
    put.add_argument("--node-id", help="expected node_id (default: learned and then enforced)")
    put.add_argument("--env", help="expected env")
    put.add_argument("--start", help="RFC 3339 between 2000-01-01 and 9000-01-01; nothing "
                     "before it is billed (default: now)")
    put.add_argument("--lag", type=int, metavar="SECONDS", help="minutes bill once now-lag passed")
    put.add_argument("--max-window", type=int, metavar="SECONDS", help="largest window per run")
    put.add_argument("--reset-policy", choices=[p.value for p in ResetPolicy])
    put.add_argument("--lease-seconds", type=int, metavar="S")
    put.add_argument("--token-secret", metavar="ARN", help="Secrets Manager or SSM reference")
    put.add_argument("--clock-tolerance", type=int, metavar="SECONDS",
                     help="1-604800 (default: the MINUTEMETER_CLOCK_TOLERANCE_SECONDS setting)")
    put.add_argument("--clock-guard", choices=[a.value for a in ClockGuardAction],
                     help="when the clock error exceeds --clock-margin-ms: widen the lag "
                          "(default) or pause")
    put.add_argument("--clock-margin-ms", type=int, metavar="MS",
                     help="clock error the lag already absorbs (default 1000)")
    put.set_defaults(handler=_sources_put)
    sources_cmd.add_parser("list", help="sources with their sync state").set_defaults(
        handler=_sources_list
    )
    for verb, enabled in (("disable", False), ("enable", True)):
        toggle = sources_cmd.add_parser(
            verb, help=f"{verb} a source (a disabled source's runs are skipped, exit 4)"
        )
        toggle.add_argument("source_id", metavar="ID")
        toggle.set_defaults(handler=_sources_enable(enabled))

    collect = commands.add_parser("collect", help="one collector run for a source")
    collect.add_argument("source_id", metavar="ID")
    collect.add_argument("--timeout", type=float, default=float(COLLECTOR_TIMEOUT_SECONDS),
                         metavar="S", help="the run's budget in seconds, as the Lambda's "
                         f"remaining time (default {COLLECTOR_TIMEOUT_SECONDS}, the collector "
                         f"function's timeout; at most {MAX_TIMEOUT_SECONDS})")
    collect.set_defaults(handler=_collect)

    check = commands.add_parser(
        "reconcile", help="recompute a billed window and compare (and correct) the ledger")
    check.add_argument("source_id", metavar="ID")
    check.add_argument("--since", required=True, metavar="T", help="RFC 3339, whole minute")
    check.add_argument("--until", required=True, metavar="T", help="RFC 3339, whole minute")
    check.add_argument("--dry-run", action="store_true",
                       help="show the differences only (exit 5 when there are some)")
    check.add_argument("--url", dest="api_url", metavar="URL",
                       help="the operations API's Function URL: reconcile there, signed with "
                            "your AWS credentials (SigV4), instead of locally")
    check.add_argument("--requested-by", default=_operator(), help=argparse.SUPPRESS)
    check.set_defaults(handler=_reconcile)

    drift = commands.add_parser(
        "drift-check", help="measure the local clock against the Time Sync Service and NTP")
    drift.add_argument("--tss", metavar="HOST[:PORT]",
                       help="the Time Sync Service (naming any server replaces the configured)")
    drift.add_argument("--ntp", action="append", metavar="HOST[:PORT]", help="an NTP server")
    drift.add_argument("--spacing", type=float, default=2.0, metavar="SECONDS",
                       help="between samples to one server (never under 15 s to a pool server)")
    drift.add_argument("--record", action="store_true",
                       help="also store the verdict for the collectors' clock guard")
    drift.set_defaults(handler=_drift_check)

    ledger = commands.add_parser("ledger", help="the ledger")
    ledger_cmd = ledger.add_subparsers(dest="action", required=True)
    export = ledger_cmd.add_parser("export", help="ledger entries as JSON Lines")
    export.add_argument("--source")
    export.add_argument("--account", metavar="UUID")
    export.add_argument("--since", metavar="T")
    export.add_argument("--until", metavar="T")
    export.set_defaults(handler=_ledger_export)

    status = commands.add_parser("status", help="last job results and source health")
    status.add_argument("source_id", metavar="ID", nargs="?")
    status.add_argument("--jobs", type=_positive_int, help="also list the N most recent jobs")
    status.add_argument("--table", action="store_true", help="a table for people, not JSON")
    status.set_defaults(handler=_status)

    for kind, help_text in (("quarantine", "quarantined samples"), ("resets", "counter resets")):
        group = commands.add_parser(kind, help=help_text)
        group_cmd = group.add_subparsers(dest="action", required=True)
        listing = group_cmd.add_parser("list", help=f"{help_text} of a source, newest first")
        listing.add_argument("source_id", metavar="ID")
        listing.add_argument("--limit", type=_positive_int, default=100)
        listing.set_defaults(handler=_records("reset" if kind == "resets" else kind))

    profiles = commands.add_parser("profiles", help="billing profiles per account")
    profiles_cmd = profiles.add_subparsers(dest="action", required=True)
    profile_put = profiles_cmd.add_parser("put", help="set an account's billing profile")
    profile_put.add_argument("account_id", metavar="UUID")
    profile_put.add_argument("--included-bytes", type=int, required=True)
    profile_put.add_argument("--price-per-byte", required=True,
                             help="0-1000000, at most 12 significant digits, 18 decimals")
    profile_put.add_argument("--multiplier", default="1",
                             help="0-1000000, at most 6 significant digits, 6 decimals")
    profile_put.add_argument("--pricing-version", required=True)
    profile_put.set_defaults(handler=_profiles_put)
    return parser


if __name__ == "__main__":
    sys.exit(main())
