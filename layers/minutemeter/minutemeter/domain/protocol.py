"""The window API's paging rules (shared/spec/exporter-api.md). Pure checks on parsed pages."""

from __future__ import annotations

from datetime import datetime

from minutemeter.domain.errors import InputError, SourceProtocolError
from minutemeter.domain.model import Page
from minutemeter.domain.text import clip
from minutemeter.domain.timeutil import parse_rfc3339


class PageSequence:
    """Checks each page against the ones before it in one window fetch.

    ``expected_node``/``expected_env`` come from the source's configuration, or from what the
    source reported before (a source is one node; it may not change identity between runs).
    """

    def __init__(self, *, expected_node: str | None, expected_env: str | None) -> None:
        self._expected_node = expected_node
        self._expected_env = expected_env
        self._seen_digests: set[str] = set()
        self._cursor: datetime | None = None
        self.pages = 0

    @property
    def node_id(self) -> str | None:
        return self._expected_node

    @property
    def env(self) -> str | None:
        return self._expected_env

    def accept(self, page: Page) -> str | None:
        """Validate ``page``; return the cursor for the next page, or ``None`` when done.

        Raises :class:`SourceProtocolError` naming the offending field.
        """
        self._check_identity(page)
        if page.digest in self._seen_digests:
            raise SourceProtocolError(
                "exporter repeated a page it already sent in this window", field="page"
            )
        self._seen_digests.add(page.digest)
        self.pages += 1
        if not page.has_more:
            return None
        if not page.next_cursor:
            raise SourceProtocolError(
                "has_more is true but next_cursor is empty", field="next_cursor",
                value=page.next_cursor,
            )
        try:
            cursor = parse_rfc3339(page.next_cursor, what="next_cursor")
        except InputError as exc:
            raise SourceProtocolError(
                f"next_cursor is not an RFC 3339 time: {clip(page.next_cursor)!r}",
                field="next_cursor", value=clip(page.next_cursor),
            ) from exc
        if self._cursor is not None and cursor <= self._cursor:
            raise SourceProtocolError(
                f"next_cursor does not advance ({clip(page.next_cursor)!r})",
                field="next_cursor", value=clip(page.next_cursor),
            )
        self._cursor = cursor
        return page.next_cursor

    def _check_identity(self, page: Page) -> None:
        if self._expected_node is None:
            self._expected_node = page.node_id
        elif page.node_id != self._expected_node:
            raise SourceProtocolError(
                f"node_id {clip(page.node_id)!r} is not the expected {self._expected_node!r}"
                " (a renamed or replaced node: set the source's --node-id; its counters then"
                " start from a fresh baseline)",
                field="node_id", value=clip(page.node_id),
            )
        if self._expected_env is None:
            self._expected_env = page.env
        elif page.env != self._expected_env:
            raise SourceProtocolError(
                f"env {clip(page.env)!r} is not the expected {self._expected_env!r}"
                " (set the source's --env if it really moved; its counters then start from a"
                " fresh baseline)",
                field="env", value=clip(page.env),
            )
