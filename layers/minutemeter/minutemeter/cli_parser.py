"""The ``minutemeter`` argument parser: every option with help, global options anywhere, and
bad arguments as one line with exit 2."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, NoReturn

from minutemeter import __version__
from minutemeter.cli_help import COLLECTOR_TIMEOUT_SECONDS, EXIT_USAGE, MAX_TIMEOUT_SECONDS, epilog
from minutemeter.domain.delivery import SinkKind, SinkValue
from minutemeter.domain.model import ClockGuardAction, ResetPolicy, SourceAuth, SourceKind
from minutemeter.stack import ENV_STACK

DEV_PORT = 9000


@dataclass(frozen=True)
class Command:
    """A command's handler, imported only when it runs: ``--help``, ``--version`` and bad
    arguments never load boto3. ``with_app``: the handler takes the wired ``App`` (it works on
    the tables), else the lazy ``Runtime``."""

    module: str
    function: str
    with_app: bool = False


def _tables(function: str) -> Command:
    return Command("minutemeter.cli_commands", function, with_app=True)


def _statements(function: str) -> Command:
    return Command("minutemeter.cli_statements", function, with_app=True)


def _local(function: str) -> Command:
    return Command("minutemeter.cli_local", function)


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit 2 (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _global_options(*, top: bool) -> _Parser:
    """-v and --stack, accepted before or after the command: the command's copies default to
    SUPPRESS, so that they do not overwrite a value given before the command."""
    options = _Parser(add_help=False)
    options.add_argument("-v", "--verbose", action="store_true",
                         default=False if top else argparse.SUPPRESS,
                         help="debug logs on stderr (botocore's too), tracebacks with errors")
    options.add_argument("--stack", metavar="NAME", default=None if top else argparse.SUPPRESS,
                         help=f"a deployed stack: its tables and API URL from its outputs "
                              f"(default: ${ENV_STACK})")
    return options


def _commands(parser: argparse.ArgumentParser, dest: str, what: str) -> Any:
    return parser.add_subparsers(dest=dest, required=True, metavar=what.upper(),
                                 title=f"{what}s", help=f"one of the {what}s below (each with "
                                 "--help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="minutemeter", description="minutemeter operator CLI (JSON on stdout).",
        epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_global_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    sub = [_global_options(top=False)]
    commands = _commands(parser, "command", "command")

    def command(group: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = group.add_parser(
            name, help=help_text, description=help_text, parents=sub)
        return made

    tables = command(commands, "tables", "manage the DynamoDB tables")
    create = command(_commands(tables, "action", "action"), "create",
                     "create the tables (idempotent) in a local DynamoDB")
    create.add_argument("--real-aws", action="store_true",
                        help="create them in the AWS account even without a local endpoint "
                             "variable (a deployed stack has its own tables)")
    create.set_defaults(handler=_local("cmd_tables_create"))

    sources_cmd = _commands(command(commands, "sources", "the source registry"), "action",
                            "action")
    put = command(sources_cmd, "put", "create or update a source")
    put.add_argument("source_id", metavar="ID", help="the source id (letters, digits, - _ .)")
    put.add_argument("--kind", choices=[k.value for k in SourceKind],
                     help="how the source is read: exporter, the window API (the default for "
                          "a new source), or prometheus, the raw samples of --selector from "
                          "the Prometheus HTTP API; a source that has billed keeps its kind")
    put.add_argument("--url", help="exporter (or Prometheus API) base URL (required for a new "
                     "source)")
    node = put.add_mutually_exclusive_group()
    node.add_argument("--node-id", help="expected node_id (default: learned and then enforced; "
                      "prometheus without --node-label: the node every series belongs to, "
                      "default the source id)")
    node.add_argument("--node-label", metavar="LABEL",
                      help="prometheus: the label whose value is the series' node (one node "
                           "per source: learned, then enforced)")
    put.add_argument("--selector", metavar="SERIES_SELECTOR",
                     help="prometheus: the series selector of the cumulative byte counters, "
                          "e.g. 'minio_bucket_traffic_received_bytes{job=\"minio\"}'")
    put.add_argument("--account-label", metavar="LABEL",
                     help="prometheus: the label whose value is the account UUID")
    put.add_argument("--auth", choices=[a.value for a in SourceAuth],
                     help="prometheus: none, bearer (the token --token-secret names; implied "
                          "by --token-secret) or sigv4 (Amazon Managed Service for Prometheus, "
                          "service aps, standard AWS credentials and region)")
    put.add_argument("--env", help="expected env (default: learned and then enforced)")
    put.add_argument("--start", help="RFC 3339 between 2000-01-01 and 9000-01-01; nothing "
                     "before it is billed (default: now)")
    put.add_argument("--lag", type=int, metavar="SECONDS", help="minutes bill once now-lag passed")
    put.add_argument("--max-window", type=int, metavar="SECONDS", help="largest window per run")
    put.add_argument("--reset-policy", choices=[p.value for p in ResetPolicy],
                     help="a counter that goes down: skip its first increase (skip, the "
                          "default) or count from zero (from-zero)")
    put.add_argument("--lease-seconds", type=int, metavar="S",
                     help="how long a run's lease on the source lasts before another runner "
                          "may take over (renewed while the run works)")
    put.add_argument("--token-secret", metavar="ARN", help="Secrets Manager or SSM reference")
    put.add_argument("--clock-tolerance", type=int, metavar="SECONDS",
                     help="1-604800 (default: the MINUTEMETER_CLOCK_TOLERANCE_SECONDS setting)")
    put.add_argument("--clock-guard", choices=[a.value for a in ClockGuardAction],
                     help="when the clock error exceeds --clock-margin-ms: widen the lag "
                          "(default) or pause")
    put.add_argument("--clock-margin-ms", type=int, metavar="MS",
                     help="clock error the lag already absorbs (default 1000)")
    put.set_defaults(handler=_tables("cmd_sources_put"))
    command(sources_cmd, "list", "sources with their sync state").set_defaults(
        handler=_tables("cmd_sources_list"))
    for verb, enabled in (("disable", False), ("enable", True)):
        toggle = command(
            sources_cmd, verb, f"{verb} a source (a disabled source's runs are skipped, exit 4)")
        toggle.add_argument("source_id", metavar="ID", help="a registered source")
        toggle.set_defaults(handler=_tables("cmd_sources_enable"), enabled=enabled)

    collect = command(commands, "collect", "one collector run for a source")
    collect.add_argument("source_id", metavar="ID", help="a registered source")
    collect.add_argument("--timeout", type=float, default=float(COLLECTOR_TIMEOUT_SECONDS),
                         metavar="S", help="the run's budget in seconds, as the Lambda's "
                         f"remaining time (default {COLLECTOR_TIMEOUT_SECONDS}, the collector "
                         f"function's timeout; at most {MAX_TIMEOUT_SECONDS})")
    collect.set_defaults(handler=_tables("cmd_collect"))

    check = command(commands, "reconcile",
                    "recompute a billed window and compare (and correct) the ledger")
    check.add_argument("source_id", metavar="ID", help="a registered source")
    check.add_argument("--since", required=True, metavar="T", help="RFC 3339, whole minute")
    check.add_argument("--until", required=True, metavar="T", help="RFC 3339, whole minute")
    check.add_argument("--dry-run", action="store_true",
                       help="show the differences only (exit 5 when there are some)")
    check.add_argument("--url", dest="api_url", metavar="URL",
                       help="the operations API's Function URL: reconcile there, signed with "
                            "your AWS credentials (SigV4), instead of locally (default with "
                            "--stack: the stack's ApiFunctionUrl)")
    check.add_argument("--requested-by", help=argparse.SUPPRESS)  # default: cli:$USER
    check.set_defaults(handler=Command("minutemeter.cli_commands", "cmd_reconcile"))

    drift = command(commands, "drift-check",
                    "measure the local clock against the Time Sync Service and NTP")
    drift.add_argument("--tss", metavar="HOST[:PORT]",
                       help="the Time Sync Service (naming any server replaces the configured)")
    drift.add_argument("--ntp", action="append", metavar="HOST[:PORT]",
                       help="an NTP server (repeat for more)")
    drift.add_argument("--spacing", type=float, default=2.0, metavar="SECONDS",
                       help="between samples to one server (never under 15 s to a pool server)")
    drift.add_argument("--record", action="store_true",
                       help="also store the verdict for the collectors' clock guard (the only "
                            "part that needs AWS)")
    drift.set_defaults(handler=_local("cmd_drift_check"))

    usage = command(commands, "usage", "an account's statement for a month")
    usage.add_argument("account_id", metavar="ACCOUNT", help="the account (UUID)")
    usage.add_argument("--month", metavar="YYYY-MM", help="UTC month (default: the current one)")
    usage.set_defaults(handler=_statements("cmd_usage"))
    statements = command(commands, "statements",
                         "every account's statement for a month (no table scan)")
    statements.add_argument("--month", metavar="YYYY-MM", required=True, help="UTC month")
    statements.add_argument("--format", choices=["jsonl", "csv"], default="jsonl",
                            help="JSON Lines (default) or CSV with a header")
    statements.set_defaults(handler=_statements("cmd_statements"))
    audit = command(commands, "audit", "check statement = sum of ledger entries = quota used, "
                    "per account (exit 7 on a difference)")
    audit.add_argument("--month", metavar="YYYY-MM", required=True, help="UTC month")
    audit.add_argument("--source", metavar="ID",
                       help="only the accounts this source billed in the month")
    audit.set_defaults(handler=_statements("cmd_audit"))

    ledger = command(commands, "ledger", "the ledger")
    export = command(_commands(ledger, "action", "action"), "export",
                     "ledger entries as JSON Lines or CSV, by source or account with Query "
                     "(a table Scan only with --all or without either)")
    export.add_argument("--source", metavar="ID", help="only this source's entries")
    export.add_argument("--account", metavar="UUID", help="only this account's entries")
    export.add_argument("--all", action="store_true",
                        help="every entry, with a table Scan (instead of --source/--account)")
    export.add_argument("--month", metavar="YYYY-MM", help="only minutes in this UTC month")
    export.add_argument("--since", metavar="T", help="only minutes at or after T (RFC 3339; "
                        "default with --source/--account: the sources' earliest start)")
    export.add_argument("--until", metavar="T", help="only minutes before T (RFC 3339)")
    export.add_argument("--after", metavar="CURSOR",
                        help="resume after the entry a cursor names (the export prints one on "
                             "stderr as it goes and at the end)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl",
                        help="JSON Lines (default) or CSV with a header")
    export.set_defaults(handler=_statements("cmd_ledger_export"))

    status = command(commands, "status", "last job results and source health")
    status.add_argument("source_id", metavar="ID", nargs="?",
                        help="one source (default: every source)")
    status.add_argument("--jobs", type=_positive_int, metavar="N",
                        help="also list the N most recent jobs")
    status.add_argument("--table", action="store_true", help="a table for people, not JSON")
    status.set_defaults(handler=_tables("cmd_status"))

    for kind, help_text in (("quarantine", "quarantined samples"), ("resets", "counter resets")):
        group = command(commands, kind, help_text)
        listing = command(_commands(group, "action", "action"), "list",
                          f"{help_text} of a source, newest first")
        listing.add_argument("source_id", metavar="ID", help="a registered source")
        listing.add_argument("--limit", type=_positive_int, default=100, metavar="N",
                             help="at most N records (default 100)")
        listing.set_defaults(handler=_tables("cmd_records"),
                             record_kind="reset" if kind == "resets" else kind)

    profiles = command(commands, "profiles", "billing profiles per account")
    profile_put = command(_commands(profiles, "action", "action"), "put",
                          "set an account's billing profile (later entries use it)")
    profile_put.add_argument("account_id", metavar="UUID", help="the account id")
    profile_put.add_argument("--included-bytes", type=int, required=True, metavar="N",
                             help="bytes included per month before billing, 0 to 2^63")
    profile_put.add_argument("--price-per-byte", required=True, metavar="D",
                             help="0-1000000, at most 12 significant digits, 18 decimals")
    profile_put.add_argument("--multiplier", default="1", metavar="D",
                             help="0-1000000, at most 6 significant digits, 6 decimals "
                                  "(default 1)")
    profile_put.add_argument("--pricing-version", required=True, metavar="V",
                             help="recorded on every entry it prices, 1-100 characters")
    profile_put.add_argument("--customer", metavar="EXTERNAL_ID",
                             help="the account in the billing system: Stripe customer id or "
                                  "Lago external subscription id (default: keep the one set)")
    profile_put.set_defaults(handler=_tables("cmd_profiles_put"))

    sinks_cmd = _commands(command(commands, "sinks", "billing sinks (Stripe, Lago)"), "action",
                          "action")
    sink_put = command(sinks_cmd, "put", "register (or replace) a billing sink")
    sink_put.add_argument("name", metavar="NAME", help="the sink's name (letters, digits, - _ .)")
    sink_put.add_argument("--kind", required=True, choices=[k.value for k in SinkKind],
                          help="the billing system: stripe (meter events) or lago (events)")
    sink_put.add_argument("--url", required=True, metavar="API_BASE",
                          help="the API base the official client is pointed at, e.g. "
                               "https://api.stripe.com")
    sink_put.add_argument("--meter", required=True, metavar="NAME_OR_CODE",
                          help="Stripe: the meter's event name; Lago: the billable metric code")
    sink_put.add_argument("--value", required=True, choices=[v.value for v in SinkValue],
                          help="billable: bytes after the included quota (minutemeter's free "
                               "tier); bytes: every byte (the billing system's free tier)")
    key = sink_put.add_mutually_exclusive_group(required=True)
    key.add_argument("--api-key-secret", metavar="ARN",
                     help="the Secrets Manager secret holding the API key")
    key.add_argument("--api-key-env", metavar="VAR",
                     help="the environment variable holding the API key (CLI and local runs)")
    sink_put.set_defaults(handler=Command("minutemeter.cli_sinks", "cmd_sinks_put",
                                          with_app=True))
    command(sinks_cmd, "list", "the registered sinks (JSON Lines)").set_defaults(
        handler=Command("minutemeter.cli_sinks", "cmd_sinks_list", with_app=True))
    sink_cmd = _commands(command(commands, "sink", "delivery to billing sinks"), "action",
                         "action")
    deliver = command(sink_cmd, "deliver", "deliver every ledger entry not yet delivered, each "
                      "exactly once (exit 3: some still undelivered, run again later)")
    deliver.add_argument("name", metavar="NAME", nargs="?",
                         help="a registered sink (default: every sink)")
    deliver.add_argument("--since", metavar="T",
                         help="entries whose minute is at or after T (RFC 3339; default: the "
                              "first day of the previous UTC month)")
    deliver.set_defaults(handler=Command("minutemeter.cli_sinks", "cmd_sink_deliver",
                                         with_app=True))

    dev = command(commands, "dev", "local development helpers (no AWS)")
    sample = command(_commands(dev, "action", "action"), "exporter",
                     "serve the sample exporter (window API) on 127.0.0.1 until Ctrl-C; "
                     "prints its URL and account ids as one JSON line")
    sample.add_argument("--port", type=_port, default=DEV_PORT,
                        help=f"TCP port on 127.0.0.1 (default {DEV_PORT}; 0: any free port)")
    sample.add_argument("--accounts", type=_positive_int, default=3, metavar="N",
                        help="how many accounts (default 3)")
    sample.add_argument("--node-id", default="node-a", metavar="N",
                        help="the node_id it reports (default node-a)")
    sample.add_argument("--env", default="dev", metavar="E",
                        help="the env it reports (default dev)")
    sample.add_argument("--start", metavar="T",
                        help="RFC 3339 time of the first snapshot (default: an hour ago); a "
                             "snapshot every 15 s from there, none after now")
    sample.add_argument("--seed", type=int, default=7, metavar="S",
                        help="seed of the account ids and counter increases (default 7)")
    sample.add_argument("--page-size", type=_positive_int, default=40, metavar="N",
                        help="snapshots per page when the request has no limit (default 40)")
    sample.set_defaults(handler=_local("cmd_dev_exporter"))
    return parser


def _port(text: str) -> int:
    """argparse type: a TCP port, 0 for any free one."""
    value = int(text)
    if not 0 <= value <= 65_535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into exit 2)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
