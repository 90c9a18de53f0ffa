"""Rules a read of a source's window must follow: pure checks on what the source sent.

- :class:`IdentityCheck`: the (node_id, env) a source names, learned once then enforced. Every
  kind of source applies it (shared/spec/exporter-api.md: a counter belongs to its node and env).
- :class:`PageSequence`: the exporter window API's paging rules (``has_more``/``next_cursor``,
  repeated pages), identity included; :data:`MAX_PAGES_PER_WINDOW` bounds any read.

Why these stay in the domain although only readers (adapters) apply them: they are pure
functions of parsed pages, with no I/O, so they are unit tested without a socket and stated in
one place next to the other rules of the contract (``validation``, ``identity``). The adapter of
a kind *drives* them (``adapters/exporter_reader.py``); the service layer no longer sees pages.
A new kind reuses :class:`IdentityCheck` and :data:`MAX_PAGES_PER_WINDOW`; rules of its own
transport belong with its adapter unless they are as pure and as shared as these.
"""

from __future__ import annotations

from datetime import datetime

from minutemeter.domain.errors import InputError, SourceProtocolError
from minutemeter.domain.model import Page
from minutemeter.domain.text import clip
from minutemeter.domain.timeutil import parse_rfc3339

MAX_PAGES_PER_WINDOW = 10_000  # pages (batches) one read of one window may take


class IdentityCheck:
    """The identity the batches of one read name: ``expected_node``/``expected_env`` come from
    the source's configuration, or from what the source reported before (a source is one node;
    it may not change identity between runs); a part that is ``None`` is learned from the first
    batch, then enforced."""

    def __init__(self, *, expected_node: str | None, expected_env: str | None) -> None:
        self._expected_node = expected_node
        self._expected_env = expected_env

    @property
    def node_id(self) -> str | None:
        return self._expected_node

    @property
    def env(self) -> str | None:
        return self._expected_env

    def check(self, node_id: str, env: str) -> None:
        """Raise :class:`SourceProtocolError` (``field`` ``node_id`` or ``env``) unless the
        batch's identity is the expected one; learn what is not expected yet."""
        self._expected_node = _learn_or_enforce(
            "node_id", node_id, self._expected_node,
            "a renamed or replaced node: set the source's --node-id; its counters then start"
            " from a fresh baseline",
        )
        self._expected_env = _learn_or_enforce(
            "env", env, self._expected_env,
            "set the source's --env if it really moved; its counters then start from a fresh"
            " baseline",
        )


def _learn_or_enforce(field: str, value: str, expected: str | None, remedy: str) -> str:
    """``value`` if nothing is expected yet (learned) or it is the ``expected`` one; else a
    :class:`SourceProtocolError` on ``field`` that says the ``remedy``."""
    if expected is not None and value != expected:
        raise SourceProtocolError(
            f"{field} {clip(value)!r} is not the expected {expected!r} ({remedy})",
            field=field, value=clip(value),
        )
    return value


class PageSequence:
    """Checks each page of the window API against the ones before it in one window fetch.

    ``expected_node``/``expected_env``: see :class:`IdentityCheck`.
    """

    def __init__(self, *, expected_node: str | None, expected_env: str | None) -> None:
        self._identity = IdentityCheck(expected_node=expected_node, expected_env=expected_env)
        self._seen_digests: set[str] = set()
        self._cursor: datetime | None = None
        self.pages = 0

    @property
    def node_id(self) -> str | None:
        return self._identity.node_id

    @property
    def env(self) -> str | None:
        return self._identity.env

    def accept(self, page: Page) -> str | None:
        """Validate ``page``; return the cursor for the next page, or ``None`` when done.

        Raises :class:`SourceProtocolError` naming the offending field; the identity is checked
        first.
        """
        self._identity.check(page.node_id, page.env)
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


def check_page_count(pages: int) -> None:
    """Raise :class:`SourceProtocolError` (``field`` ``page``) when a read that has taken
    ``pages`` pages would need another one past :data:`MAX_PAGES_PER_WINDOW`."""
    if pages >= MAX_PAGES_PER_WINDOW:
        raise SourceProtocolError(
            f"more than {MAX_PAGES_PER_WINDOW} pages for one window", field="page"
        )
