"""The CLI's contract in one light module: exit statuses, and the text of ``minutemeter --help``
after the commands (exit statuses and the environment variables it reads)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from minutemeter import settings
from minutemeter.stack import ENV_STACK

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_LEASE_HELD = 0, 1, 2, 3, 4
EXIT_DIFFERENCES = 5
EXIT_DRIFT = 6
EXIT_AUDIT = 7
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports for Ctrl-C
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for `cat big | head -1`
# The collector function's Timeout in template.yaml: `collect` gets the same budget by default.
COLLECTOR_TIMEOUT_SECONDS = 300
MAX_TIMEOUT_SECONDS = 86_400

EXIT_STATUSES = (
    (EXIT_OK, "ok"),
    (EXIT_ERROR, "error; an AWS or network failure is one line on stderr that names what to fix "
        "(-v adds the traceback)"),
    (EXIT_USAGE, "bad arguments or settings"),
    (EXIT_PARTIAL, "partial: collect quarantined samples (`minutemeter quarantine list ID`); "
        "sink deliver left entries undelivered (run it again later)"),
    (EXIT_LEASE_HELD, "skipped or busy: another runner holds the source's lease, or the source "
        "is disabled"),
    (EXIT_DIFFERENCES, "reconcile --dry-run found differences"),
    (EXIT_DRIFT, "drift-check: an offset, error bound or TSS-vs-NTP difference over its threshold"),
    (EXIT_AUDIT, "audit: a statement, the sum of its ledger entries or the quota used differ"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
    (EXIT_PIPE_CLOSED, "stdout was closed early (`| head`): the output stops quietly"),
)

AWS_VARIABLES = (
    ("AWS_REGION, AWS_DEFAULT_REGION", "the region (AWS_REGION first; else the profile's)"),
    ("AWS_PROFILE, AWS_ACCESS_KEY_ID", "credentials: the usual chain (and the rest of it)"),
    ("AWS_ENDPOINT_URL_DYNAMODB", "a local DynamoDB, e.g. http://127.0.0.1:8000"),
    ("AWS_ENDPOINT_URL", "a local endpoint for every service (CloudFormation for --stack too)"),
    ("AWS_MAX_ATTEMPTS, AWS_RETRY_MODE", "botocore's retries (default: standard mode, 5 retries)"),
    (ENV_STACK, "the deployed stack, as --stack"),
    (settings.ENV_LEDGER_TABLE, "the ledger table (default minutemeter-ledger); set, it wins "
                                "over --stack"),
    (settings.ENV_STATE_TABLE, "the state table (default minutemeter-state); set, it wins over "
                               "--stack"),
)
WIDTH = 96


def setting_variables() -> list[str]:
    """Every ``MINUTEMETER_*`` setting :func:`minutemeter.settings.load_settings` reads."""
    names = {value for name, value in vars(settings).items()
             if name.startswith("ENV_") and isinstance(value, str)}
    return sorted(names - {settings.ENV_LEDGER_TABLE, settings.ENV_STATE_TABLE})


def epilog() -> str:
    """Exit statuses and environment variables, preformatted (RawDescriptionHelpFormatter)."""
    lines = ["exit status:"]
    lines += _rows(((str(code), text) for code, text in EXIT_STATUSES), 8)
    lines += ["", "environment:"]
    lines += _rows(AWS_VARIABLES, 36)
    lines += textwrap.wrap(
        "settings (README.md, 'Settings'): " + ", ".join(setting_variables()),
        width=WIDTH, initial_indent="  ", subsequent_indent="    ")
    lines += ["", "JSON on stdout (JSON Lines for listings), logs on stderr.",
              "`minutemeter COMMAND --help` lists a command's options."]
    return "\n".join(lines)


def _rows(rows: Iterable[tuple[str, str]], name_width: int) -> list[str]:
    """``  name  text``, the text wrapped in its column."""
    out = []
    for name, text in rows:
        wrapped = textwrap.wrap(text, width=WIDTH - name_width)
        out.append(f"  {name:<{name_width - 2}}{wrapped[0]}")
        out += [" " * name_width + more for more in wrapped[1:]]
    return out
