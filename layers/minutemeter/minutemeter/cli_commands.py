"""The commands on the tables: sources, collect, reconcile, ledger, status, records, profiles."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import sys

from minutemeter.adapters.system import TimeoutBudget
from minutemeter.bootstrap import App
from minutemeter.cli_help import (
    EXIT_DIFFERENCES,
    EXIT_ERROR,
    EXIT_LEASE_HELD,
    EXIT_OK,
    EXIT_PARTIAL,
    MAX_TIMEOUT_SECONDS,
)
from minutemeter.cli_runtime import Runtime, emit, emit_line
from minutemeter.domain.errors import InputError
from minutemeter.domain.model import (
    BillingProfile,
    ClockGuardAction,
    JobStatus,
    ResetPolicy,
    SourceAuth,
    SourceKind,
)
from minutemeter.domain.money import check_profile, parse_decimal
from minutemeter.domain.registry import SourceUnreadableError
from minutemeter.domain.timeutil import parse_rfc3339
from minutemeter.domain.validation import is_account_id
from minutemeter.presenters import job_to_dict, source_to_json, status_table
from minutemeter.progress import ProgressBar
from minutemeter.remote import reconcile_until_done
from minutemeter.service.collect import collect_source
from minutemeter.service.operations import source_document, source_documents
from minutemeter.service.reconcile import ReconcileRequest, reconcile
from minutemeter.service.sinks import check_customer
from minutemeter.service.sources import SourceChanges, put_source

log = logging.getLogger("minutemeter.cli")
JOB_EXIT = {
    JobStatus.OK: EXIT_OK,
    JobStatus.PARTIAL: EXIT_PARTIAL,
    JobStatus.ERROR: EXIT_ERROR,
    JobStatus.SKIPPED: EXIT_LEASE_HELD,
}


def cmd_sources_put(app: App, args: argparse.Namespace) -> int:
    changes = SourceChanges(
        kind=SourceKind(args.kind) if args.kind else None,
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
        selector=args.selector,
        account_label=args.account_label,
        node_label=args.node_label,
        auth=SourceAuth(args.auth) if args.auth else None,
    )
    source = put_source(app.state.sources, app.state.sync, args.source_id, changes,
                        app.clock.now())
    emit(source_to_json(source))
    return EXIT_OK


def cmd_sources_enable(app: App, args: argparse.Namespace) -> int:
    """``sources enable`` and ``sources disable`` (``args.enabled``)."""
    app.state.sources.get_source(args.source_id)  # SourceNotFoundError: exit 1, nothing created
    source = put_source(
        app.state.sources, app.state.sync, args.source_id, SourceChanges(enabled=args.enabled),
        app.clock.now()
    )
    emit(source_to_json(source))
    return EXIT_OK


def cmd_sources_list(app: App, args: argparse.Namespace) -> int:
    emit(source_documents(app.state, app.clock.now()))
    return EXIT_OK


def cmd_collect(app: App, args: argparse.Namespace) -> int:
    seconds: float = args.timeout
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:  # NaN fails this too
        raise InputError(f"--timeout must be > 0 and at most {MAX_TIMEOUT_SECONDS} seconds")
    margin = app.settings.deadline_margin_seconds
    if seconds <= margin:
        log.warning("--timeout %s s is within the deadline margin (%s s): nothing will be "
                    "collected", seconds, margin)
    job = collect_source(app.billing_deps, args.source_id,
                         budget=TimeoutBudget(app.clock, seconds))
    emit(job_to_dict(job))
    return JOB_EXIT[job.status]


def cmd_reconcile(runtime: Runtime, args: argparse.Namespace) -> int:
    """Locally, or through the operations API: --url, else the stack's ApiFunctionUrl."""
    url = args.api_url
    if url is None and runtime.given is None and runtime.stack_name:
        url = runtime.stack.api_url if runtime.stack else None
        if url:
            log.info("reconcile through stack %s's operations API %s", runtime.stack_name, url)
    if url:
        return reconcile_remote(runtime, args, url)
    app = runtime.app
    request = ReconcileRequest(
        source_id=args.source_id,
        since=parse_rfc3339(args.since, what="--since"),
        until=parse_rfc3339(args.until, what="--until"),
        dry_run=args.dry_run,
        requested_by=args.requested_by or _operator(),
    )
    bar = ProgressBar(sys.stderr, "reconcile")
    result = reconcile(app.billing_deps, request, progress=bar.update)
    bar.close()
    emit(result.to_json())
    return RECONCILE_EXIT.get(result.status, EXIT_ERROR)


def _operator() -> str:
    """Who runs a local reconcile, for its audit record."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"cli:uid-{os.getuid()}"


RECONCILE_EXIT = {"ok": EXIT_OK, "corrected": EXIT_OK, "differences": EXIT_DIFFERENCES}


def reconcile_remote(runtime: Runtime, args: argparse.Namespace, url: str) -> int:
    """``reconcile --url``: the deployed operations API runs it, recorded under the IAM
    principal that signed the request (SigV4, the default credential chain). A confirm that
    ends ``partial`` (the function's deadline) is called again and resumes there."""
    request = {"source_id": args.source_id, "since": args.since, "until": args.until,
               "dry_run": args.dry_run}
    bar = ProgressBar(sys.stderr, "reconcile")
    document = reconcile_until_done(url, request, session=runtime.session,
                                    progress=bar.update)
    bar.close()
    emit(document)
    return RECONCILE_EXIT.get(str(document.get("status")), EXIT_ERROR)


def cmd_status(app: App, args: argparse.Namespace) -> int:
    now = app.clock.now()
    if args.source_id:  # SourceUnreadableError: exit 1, saying how to repair it
        source = app.state.sources.get_source(args.source_id)
        documents = [source_document(app.state, source, now, jobs=args.jobs or 0)]
    else:
        documents = source_documents(app.state, now, jobs=args.jobs or 0)
    if args.table:
        print(status_table(documents))
    else:
        emit(documents if not args.source_id else documents[0])
    return EXIT_OK


def cmd_records(app: App, args: argparse.Namespace) -> int:
    """``quarantine list`` and ``resets list`` (``args.record_kind``)."""
    with contextlib.suppress(SourceUnreadableError):  # registered; records still readable
        app.state.sources.get_source(args.source_id)
    for record in app.state.records.list_records(args.source_id, args.record_kind, args.limit):
        emit_line(record)
    return EXIT_OK


def cmd_profiles_put(app: App, args: argparse.Namespace) -> int:
    """Money within domain/money.py's precision and range (exact pricing), else exit 2."""
    profile = check_profile(BillingProfile(
        included_bytes=args.included_bytes,
        price_per_byte=parse_decimal(args.price_per_byte, "--price-per-byte"),
        multiplier=parse_decimal(args.multiplier, "--multiplier"),
        pricing_rule_version=args.pricing_version,
    ))
    if not is_account_id(args.account_id):
        raise InputError(f"account id must be a UUID, got {args.account_id[:40]!r}")
    customer = check_customer(args.customer)
    app.state.profiles.put_profile(args.account_id.lower(), profile, customer=customer)
    emit({"account_id": args.account_id.lower(), **vars(profile),
          **({"customer": customer} if customer is not None else {})})
    return EXIT_OK
