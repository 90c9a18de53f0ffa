"""The statement commands: ``usage``, ``statements`` and ``audit`` (operator-cli.md, second
phase). Months are ``YYYY-MM`` in UTC; amounts are decimal strings."""

from __future__ import annotations

import argparse
import csv
import sys

from minutemeter.bootstrap import App
from minutemeter.cli_help import EXIT_AUDIT, EXIT_OK
from minutemeter.cli_runtime import emit, emit_line
from minutemeter.domain.errors import InputError
from minutemeter.domain.timeutil import month_of, parse_month
from minutemeter.domain.validation import is_account_id
from minutemeter.progress import ProgressBar
from minutemeter.service.statements import account_statement, audit_month, month_statements

CSV_COLUMNS = ("account_id", "month", "bytes", "included_bytes", "billable_bytes", "amount",
               "entries", "corrections")


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
    writer = csv.writer(sys.stdout, lineterminator="\n") if args.format == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    count = 0
    try:
        for statement in month_statements(app.ledger, app.state.sources, month,
                                          progress=bar.update if bar else None):
            document = statement.to_json()
            if writer is not None:
                writer.writerow([document[c] for c in CSV_COLUMNS])
            else:
                emit_line(document)
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
