"""Fetching one window from an exporter: every page, checked and validated as it arrives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from minutemeter.domain.errors import SourceProtocolError
from minutemeter.domain.model import SourceConfig, SyncState, Window
from minutemeter.domain.protocol import PageSequence
from minutemeter.domain.validation import SampleRules, ValidationResult, validate_snapshots
from minutemeter.ports import Exporter

MAX_PAGES_PER_WINDOW = 10_000


@dataclass(frozen=True)
class FetchedWindow:
    validated: ValidationResult
    node_id: str | None  # as the pages named it (checked against what was expected)
    pages: int


def fetch_window(
    exporter: Exporter,
    source: SourceConfig,
    state: SyncState,
    window: Window,
    rules: SampleRules,
    guard: Callable[[], None] = lambda: None,
) -> FetchedWindow:
    """All pages of ``window``: paging rules (``PageSequence``) and sample validation applied.

    ``guard`` runs before each request (deadline and lease checks: it raises to stop).
    Raises ``SourceProtocolError`` for a broken page sequence or more than
    ``MAX_PAGES_PER_WINDOW`` pages, ``ExporterError`` for transport failures.
    """
    pages = PageSequence(expected_node=source.node_id or state.node_id, expected_env=source.env)
    validated = ValidationResult()
    cursor: str | None = None
    while True:
        guard()
        page = exporter.fetch_page(source, window, cursor)
        cursor = pages.accept(page)
        validate_snapshots(page.snapshots, rules, validated)
        if cursor is None:
            return FetchedWindow(validated, pages.node_id, pages.pages)
        if pages.pages >= MAX_PAGES_PER_WINDOW:
            raise SourceProtocolError(
                f"more than {MAX_PAGES_PER_WINDOW} pages for one window", field="page"
            )
