"""The usage-out commands: ``usage``, ``statements``, ``audit`` and ``ledger export``
(operator-cli.md, second phase). Months are ``YYYY-MM`` in UTC; amounts are decimal strings."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from minutemeter.bootstrap import App
from minutemeter.cli_help import EXIT_AUDIT, EXIT_OK
from minutemeter.cli_runtime import emit, emit_line
from minutemeter.domain.errors import InputError
from minutemeter.domain.timeutil import month_of, parse_month, parse_rfc3339
from minutemeter.domain.validation import is_account_id
from minutemeter.presenters import entry_to_json
from minutemeter.progress import ProgressBar
from minutemeter.service.ledger_export import (
    ExportRequest,
    Position,
    check_request,
    decode_cursor,
    encode_cursor,
    export_entries,
)
from minutemeter.service.statements import account_statement, audit_month, month_statements

CSV_COLUMNS = ("account_id", "month", "bytes", "included_bytes", "billable_bytes", "amount",
               "entries", "corrections")
# every field of presenters.entry_to_json; those of a correction are empty on a usage entry
EXPORT_COLUMNS = ("ledger_id", "kind", "source_id", "node_id", "account_id", "minute", "bytes",
                  "included_bytes", "billable_bytes", "amount", "price_per_byte", "multiplier",
                  "pricing_rule_version", "quota_month", "quota_before", "counter_start",
                  "counter_end", "samples", "resets", "first_taken_at", "last_taken_at",
                  "collected_at", "clock_bound_ms", "corrects", "reason", "target_bytes",
                  "reconcile_id", "run_id", "batch_id")
CURSOR_EVERY = 1_000  # entries between two progress lines of ledger export (each a cursor)


def listing_writer(fmt: str, columns: Sequence[str]) -> Callable[[Mapping[str, Any]], None]:
    """How a listing writes a row on stdout: a JSON line (``jsonl``), or a CSV row of
    ``columns`` (``csv``; the header is written now, a missing field is empty)."""
    if fmt != "csv":
        return emit_line
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    return lambda row: writer.writerow([row.get(c) for c in columns])


def cmd_usage(app: App, args: argparse.Namespace) -> int:
    if not is_account_id(args.account_id):
        raise InputError(f"account id must be a UUID, got {args.account_id[:40]!r}")
    month = parse_month(args.month, what="--month") if args.month else month_of(app.clock.now())
    emit(account_statement(app.ledger, app.state.sources, args.account_id.lower(), month)
         .to_json())
    return EXIT_OK


def cmd_statements(app: App, args: argparse.Namespace) -> int:
    month = parse_month(args.month, what="--month")
    bar = ProgressBar(sys.stderr, f"statements {month}") if sys.stderr.isatty() else None
    write = listing_writer(args.format, CSV_COLUMNS)
    count = 0
    try:
        for statement in month_statements(app.ledger, app.state.sources, month,
                                          progress=bar.update if bar else None):
            write(statement.to_json())
            count += 1
    finally:
        if bar is not None:
            bar.close()
    print(f"minutemeter: {count} statement(s) for {month}", file=sys.stderr)
    return EXIT_OK


def cmd_audit(app: App, args: argparse.Namespace) -> int:
    month = parse_month(args.month, what="--month")
    if args.source:
        app.state.sources.get_source(args.source)  # an unknown source is an error, not "ok"
    bar = ProgressBar(sys.stderr, f"audit {month}") if sys.stderr.isatty() else None
    try:
        result = audit_month(app.ledger, app.state.sources, month, args.source,
                             progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    emit(result.to_json())
    return EXIT_AUDIT if result.differences else EXIT_OK


def cmd_ledger_export(app: App, args: argparse.Namespace) -> int:
    """JSON Lines or CSV on stdout; on stderr a note when it scans, else a cursor line every
    :data:`CURSOR_EVERY` entries and a last one at the end (or when it is stopped): ``--after``
    with it emits exactly the entries after the last one written."""
    if args.account and not is_account_id(args.account):
        raise InputError(f"--account must be a UUID, got {args.account[:40]!r}")
    request = ExportRequest(
        source_id=args.source, account_id=args.account.lower() if args.account else None,
        month=parse_month(args.month, what="--month") if args.month else None,
        since=parse_rfc3339(args.since, what="--since") if args.since else None,
        until=parse_rfc3339(args.until, what="--until") if args.until else None,
        scan=args.all, after=decode_cursor(args.after) if args.after else None,
    )
    check_request(request)  # before any output: a bad combination is one line, exit 2
    if request.is_scan:
        print("minutemeter: ledger export without --source or --account reads the whole "
              "table (a Scan)", file=sys.stderr)
    write = listing_writer(args.format, EXPORT_COLUMNS)
    count, last = 0, request.after
    try:
        for exported in export_entries(app.ledger, app.state.sources, request, app.clock.now()):
            write(entry_to_json(exported.entry))
            count, last = count + 1, exported.position
            if last is not None and count % CURSOR_EVERY == 0:
                _cursor_line(f"exporting, {count} ledger entries so far", last)
    except BrokenPipeError:
        raise  # the reader went away (`| head`): stop quietly, as every command does
    except BaseException:
        if count:  # stopped part way (an error, Ctrl-C): where to resume, besides the error
            _cursor_line(f"stopped after {count} ledger entries", last)
        raise
    _cursor_line(f"exported {count} ledger entries", last)
    return EXIT_OK


def _cursor_line(text: str, last: Position | None) -> None:
    """A progress line naming the last entry written (stdout flushed first, so that the cursor
    never runs ahead of what a reader has received)."""
    sys.stdout.flush()
    resume = f"; resume with --after {encode_cursor(last)}" if last is not None else ""
    print(f"minutemeter: {text}{resume}", file=sys.stderr)
