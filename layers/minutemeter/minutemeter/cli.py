"""The ``minutemeter`` operator CLI (shared/spec/operator-cli.md).

JSON (or JSON Lines) on stdout, logs on stderr; exit statuses and environment variables in
``minutemeter --help`` (cli_help.py). AWS clients are created on first use (cli_runtime.py):
``drift-check`` without ``--record`` and ``dev exporter`` need no AWS configuration at all.
Errors end here: one line on stderr each (the traceback too with ``-v``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from minutemeter.cli_help import (
    COLLECTOR_TIMEOUT_SECONDS,
    EXIT_DIFFERENCES,
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_LEASE_HELD,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_PIPE_CLOSED,
    EXIT_USAGE,
)
from minutemeter.cli_parser import Command, build_parser
from minutemeter.domain.errors import ConfigError, InputError, LeaseHeldError, MinutemeterError

if TYPE_CHECKING:
    from minutemeter.bootstrap import App
    from minutemeter.cli_runtime import Runtime

__all__ = [
    "COLLECTOR_TIMEOUT_SECONDS", "EXIT_DIFFERENCES", "EXIT_DRIFT", "EXIT_ERROR",
    "EXIT_INTERRUPTED", "EXIT_LEASE_HELD", "EXIT_OK", "EXIT_PARTIAL", "EXIT_PIPE_CLOSED",
    "EXIT_USAGE", "main",
]


def main(argv: Sequence[str] | None = None, app: App | None = None) -> int:
    """Run one command; returns the exit status (``minutemeter --help`` lists them)."""
    try:
        return _main(argv, app)
    except BrokenPipeError:
        return _pipe_closed()
    except KeyboardInterrupt:  # Ctrl-C: no traceback (a collect's lease expires by itself)
        print("minutemeter: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None, app: App | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # --help, --version, bad arguments: flush here, where a closed pipe
        sys.stdout.flush()  # is caught (at interpreter exit it would print a traceback)
        raise
    _configure_logging(args.verbose)
    from minutemeter.cli_runtime import Runtime  # boto3 and the rest: only to run a command

    runtime = Runtime(args, app, os.environ)
    command: Command = args.handler
    handler = getattr(importlib.import_module(command.module), command.function)
    try:
        code: int = handler(runtime.app, args) if command.with_app else handler(runtime, args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        raise
    except (InputError, ConfigError) as exc:  # a RemoteInputError (400, 413, 422) too
        return _fail(EXIT_USAGE, str(exc), exc, args.verbose)
    except LeaseHeldError as exc:
        return _fail(EXIT_LEASE_HELD, str(exc), exc, args.verbose)
    except Exception as exc:
        return _error(exc, runtime, args.verbose)


def _error(exc: Exception, runtime: Runtime, verbose: bool) -> int:
    """Our typed errors and botocore's, one line each; anything else is a bug: re-raised."""
    from minutemeter.cli_errors import botocore_cause, explain
    from minutemeter.remote import RemoteBusyError

    if isinstance(exc, RemoteBusyError):
        return _fail(EXIT_LEASE_HELD, str(exc), exc, verbose)
    cause = botocore_cause(exc)
    if cause is not None:
        return _fail(EXIT_ERROR, explain(cause, runtime.known_settings()), exc, verbose)
    if isinstance(exc, MinutemeterError):
        return _fail(EXIT_ERROR, f"{type(exc).__name__}: {exc}", exc, verbose)
    raise exc


def _fail(code: int, message: str, exc: BaseException, verbose: bool) -> int:
    """One line on stderr (the traceback before it with -v); returns ``code``."""
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"minutemeter: {' '.join(message.split())}", file=sys.stderr)
    return code


def _pipe_closed() -> int:
    """stdout's reader went away (``| head``): stop quietly. Whatever is still buffered goes
    to /dev/null, so that Python's flush at exit raises nothing either."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE_CLOSED


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


if __name__ == "__main__":
    sys.exit(main())
