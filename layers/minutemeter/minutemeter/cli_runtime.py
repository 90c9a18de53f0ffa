"""What the CLI's commands share: the lazily wired runtime and JSON output."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import boto3

from minutemeter.adapters.system import SystemClock
from minutemeter.bootstrap import App, aws_session, bootstrap, load_stack
from minutemeter.json_values import to_json_text
from minutemeter.ports import Clock
from minutemeter.settings import Settings, load_settings
from minutemeter.stack import ENV_STACK, StackOutputs

Handler = Callable[["Runtime", argparse.Namespace], int]


class Runtime:
    """What a command uses, created on first use: a command that never asks for ``app`` (or
    ``session``) creates no AWS client and needs no region or credentials.

    An ``App`` given to :func:`main` (tests, the demo) is used as is.
    """

    def __init__(self, args: argparse.Namespace, given: App | None,
                 environ: Mapping[str, str]) -> None:
        self.args = args
        self.given = given
        self.environ = environ

    @cached_property
    def settings(self) -> Settings:
        """The settings without the stack (no AWS call): for commands that need no tables."""
        return self.given.settings if self.given else load_settings(self.environ)

    @cached_property
    def clock(self) -> Clock:
        return self.given.clock if self.given else SystemClock()

    @cached_property
    def session(self) -> boto3.session.Session:
        return aws_session(self.environ)

    @cached_property
    def stack_name(self) -> str | None:
        return str(self.args.stack or self.environ.get(ENV_STACK) or "") or None

    @cached_property
    def stack(self) -> StackOutputs | None:
        """The deployed stack's outputs (``--stack``, ``MINUTEMETER_STACK``), or None."""
        return load_stack(self.stack_name, self.session) if self.stack_name else None

    @cached_property
    def app(self) -> App:
        if self.given is not None:
            return self.given
        return bootstrap(session=self.session, stack=self.stack)

    def known_settings(self) -> Settings | None:
        """The settings in use, if created already (for error messages; creates nothing)."""
        if "app" in vars(self):
            return self.app.settings
        return self.settings if "settings" in vars(self) else None


def emit(document: Any) -> None:
    """One JSON document on stdout, indented (times RFC 3339 to the second, Decimals as exact
    decimal text, enums by value)."""
    print(to_json_text(document, times="second", indent=2))


def emit_line(document: Any) -> None:
    """One line of JSON Lines on stdout (a listing): compact, converted as :func:`emit`."""
    print(to_json_text(document, times="second"))
