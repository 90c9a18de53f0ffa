"""``minutemeter`` run in-process on an injected App, for the CLI's functional tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from minutemeter.bootstrap import App
from minutemeter.cli import main


class InProcessCli:
    """Runs commands on ``app``; keeps the last stderr (``err``) for assertion messages."""

    def __init__(self, app: App, capsys: pytest.CaptureFixture[str]) -> None:
        self.app = app
        self.capsys = capsys
        self.err = ""

    def run(self, *argv: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(list(argv), app=self.app)
        captured = self.capsys.readouterr()
        self.err = captured.err
        return code, captured.out

    def json(self, *argv: str, code: int = 0) -> Any:
        actual, out = self.run(*argv)
        assert actual == code, self.err
        return json.loads(out)

    def lines(self, *argv: str) -> list[dict[str, Any]]:
        actual, out = self.run(*argv)
        assert actual == 0, self.err
        return [json.loads(line) for line in out.splitlines()]

    def refused(self, *argv: str, code: int = 2) -> str:
        """Runs a command that must fail with ``code``: nothing on stdout, one line on stderr
        (no traceback); returns that line."""
        actual, out = self.run(*argv)
        assert (actual, out) == (code, ""), self.err
        assert self.err.startswith("minutemeter: ") and self.err.count("\n") == 1, self.err
        assert "Traceback" not in self.err
        return self.err
