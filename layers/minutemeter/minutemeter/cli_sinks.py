"""The commands on billing sinks: ``sinks put``, ``sinks list`` and ``sink deliver``."""

from __future__ import annotations

import argparse

from minutemeter.bootstrap import App
from minutemeter.cli_help import EXIT_OK, EXIT_PARTIAL
from minutemeter.cli_runtime import emit, emit_line
from minutemeter.domain.delivery import SinkConfig, SinkKind, SinkValue
from minutemeter.domain.timeutil import parse_rfc3339
from minutemeter.service.delivery_backfill import default_since, deliver_since
from minutemeter.service.sinks import put_sink, sink_document


def cmd_sinks_put(app: App, args: argparse.Namespace) -> int:
    """Register a sink (bad values: ``InputError``, exit 2)."""
    sink = put_sink(app.state.deliveries, SinkConfig(
        name=args.name, kind=SinkKind(args.kind), url=args.url, meter=args.meter,
        value=SinkValue(args.value), api_key_secret=args.api_key_secret,
        api_key_env=args.api_key_env,
    ))
    emit(sink_document(sink))
    return EXIT_OK


def cmd_sinks_list(app: App, args: argparse.Namespace) -> int:
    for sink in app.state.deliveries.list_sinks():
        emit_line(sink_document(sink))
    return EXIT_OK


def cmd_sink_deliver(app: App, args: argparse.Namespace) -> int:
    """Deliver every entry since ``--since`` (default: the previous month's first day) to the
    named sink or every sink; exit 3 while some are not delivered yet (run it again later)."""
    since = (parse_rfc3339(args.since, what="--since") if args.since
             else default_since(app.clock.now()))
    deliveries = app.state.deliveries
    configs = [deliveries.get_sink(args.name)] if args.name else deliveries.list_sinks()
    reports = [deliver_since(app.delivery_deps(), app.ledger, app.state.sources, app.sinks(c),
                             since) for c in configs]
    emit({"since": since, "sinks": [r.to_json() for r in reports],
          "undelivered": sum(r.undelivered for r in reports)})
    return EXIT_OK if all(r.settled for r in reports) else EXIT_PARTIAL
