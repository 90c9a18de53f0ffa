"""Checkpoints packed into pages: a few items per source and node instead of one per account.

DynamoDB bills a write per KB of item, not per attribute, and a transactional write twice. One
item per account cost every run two write units per account (``docs/design.md``, issue 13); a
page holds the checkpoints of about 60 accounts in under 4 KB, so a run that moves them all pays
about two units per page.

Pages split like extendible hashing. An account belongs to the page whose ``index`` equals the
low ``depth`` bits of the account's hash. Pages never overlap: a page that grows past
``PAGE_BYTES`` is replaced, in one transaction, by its halves at depth + 1 (the accounts whose
next hash bit is 0 or 1), and an account that no page covers gets a new page at the deepest depth
in use, which overlaps none (any page that covered the account would have been found). A reader
lists a node's pages with one Query and finds each account in at most one of them.

Every write of a page is conditioned on the version it was read at (or on its absence), and,
fenced, goes in a transaction with the ConditionCheck of the lease token: a page is never
overwritten by a writer that did not see its last state, and never by one that lost the lease.
A checkpoint in a page still only moves forward (a newer ``taken_at`` replaces it, an older one
is ignored), as the per-account items did.

Checkpoints stored before pages existed (``keys.checkpoint_key``, one item per account) are
still read, with one Query per source and node, and the newer of the two readings of an account
wins: code from before pages (a rollback) moves those items and not the pages. An account's
next advance writes its reading into a page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from minutemeter.adapters.dynamo.base import DynamoTable, Item
from minutemeter.adapters.dynamo.state.fencing import check_fence
from minutemeter.adapters.dynamo.state.keys import (
    checkpoint_page_key,
    checkpoint_page_partition,
    checkpoint_page_prefix,
    checkpoint_partition,
    state_key,
)
from minutemeter.domain.errors import ConcurrentUpdateError, LeaseLostError, StoreError
from minutemeter.domain.model import Checkpoint
from minutemeter.domain.timeutil import parse_rfc3339

# The accounts of a page, by DynamoDB's item-size rules, stay under this many bytes: the item
# (keys and a few numbers more) then stays under 4 KB, four write units.
PAGE_BYTES = 3_800
TRANSACTION_ACTIONS = 99  # TransactWriteItems takes 100 actions; one is the lease check
# New accounts one page takes per write: its halves then number well under TRANSACTION_ACTIONS
# (1,500 accounts of 60 bytes are about 90 KB, at most a few dozen pages): one transaction.
MAX_NEW_PER_PAGE = 1_500
MAX_ATTEMPTS = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Reading = tuple[int, int]  # (total_bytes, taken_at in epoch microseconds)


@dataclass
class Page:
    """One stored page: the accounts whose hash ends in ``index`` (``depth`` bits)."""

    depth: int
    index: int
    version: int = 0  # 0: not stored yet
    accounts: dict[str, Reading] = field(default_factory=dict)

    def holds(self, account_hash: int) -> bool:
        return account_hash & ((1 << self.depth) - 1) == self.index


def account_hash(account_id: str) -> int:
    """64 bits of SHA-256: stable across processes and versions (``hash()`` is not)."""
    return int.from_bytes(hashlib.sha256(account_id.encode()).digest()[:8], "big")


def page_bytes(accounts: Mapping[str, Reading]) -> int:
    """The size DynamoDB counts for the ``accounts`` map: per entry its name, a list of two
    numbers (3 bytes, 1 per element, about one byte per two digits plus one) and 1 byte."""
    return 3 + sum(
        len(name.encode()) + 6 + _number_bytes(total) + _number_bytes(micros)
        for name, (total, micros) in accounts.items()
    )


def split(page: Page) -> list[Page]:
    """``page`` if it fits, else its halves, split again until each fits."""
    if page_bytes(page.accounts) <= PAGE_BYTES or page.depth >= 64:
        return [page]
    low = Page(page.depth + 1, page.index)
    high = Page(page.depth + 1, page.index | (1 << page.depth))
    for name, reading in page.accounts.items():
        (high if account_hash(name) >> page.depth & 1 else low).accounts[name] = reading
    return split(low) + split(high)


class PageDirectory:
    """The pages of one source and node as read; finds the page of an account."""

    def __init__(self, pages: Iterable[Page]) -> None:
        self.pages = {(p.depth, p.index): p for p in pages}
        self._depths = sorted({depth for depth, _ in self.pages})

    def page_of(self, account_id: str) -> Page:
        """The page that holds (or would hold) ``account_id``; a new page, at the deepest depth
        in use, when none covers it."""
        digest = account_hash(account_id)
        for depth in self._depths:
            page = self.pages.get((depth, digest & ((1 << depth) - 1)))
            if page is not None:
                return page
        depth = self._depths[-1] if self._depths else 0
        page = Page(depth, digest & ((1 << depth) - 1))
        self.pages[(depth, page.index)] = page
        self._depths = sorted({*self._depths, depth})
        return page


class DynamoCheckpointStore:
    """:class:`minutemeter.ports.CheckpointStore` on a DynamoDB table, in pages (see module)."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def get_checkpoints(
        self, source_id: str, node_id: str, account_ids: Iterable[str]
    ) -> dict[str, Checkpoint]:
        wanted = set(account_ids)
        if not wanted:
            return {}
        directory = self._read(source_id, node_id)
        found: dict[str, Checkpoint] = {}
        for account_id in wanted:
            reading = directory.page_of(account_id).accounts.get(account_id)
            if reading is not None:
                found[account_id] = _checkpoint(node_id, account_id, reading)
        for legacy in self._legacy(source_id, node_id):
            current = found.get(legacy.account_id)
            if legacy.account_id in wanted and (current is None
                                                or current.taken_at < legacy.taken_at):
                found[legacy.account_id] = legacy
        return found

    def _legacy(self, source_id: str, node_id: str) -> list[Checkpoint]:
        """The node's per-account checkpoint items (one Query: a read unit when there are
        none). They are read every time, not only for accounts no page holds: code from before
        pages, after a rollback, moves them and not the pages, and the newer one is the truth."""
        items = self.table.query(
            "pk = :pk AND begins_with(sk, :node)",
            {":pk": checkpoint_partition(source_id), ":node": f"{node_id}#"},
        )
        return [_legacy_checkpoint(i) for i in items if i.get("node_id") == node_id]

    def list_checkpoints(self, source_id: str) -> list[Checkpoint]:
        latest: dict[tuple[str, str], Checkpoint] = {}
        for item in self.table.query("pk = :pk", {":pk": checkpoint_partition(source_id)}):
            checkpoint = _legacy_checkpoint(item)
            latest[(checkpoint.node_id, checkpoint.account_id)] = checkpoint
        for item in self.table.query("pk = :pk", {":pk": checkpoint_page_partition(source_id)}):
            node_id = str(item["node_id"])
            for account_id, reading in _page_from_item(item).accounts.items():
                checkpoint = _checkpoint(node_id, account_id, _reading(reading))
                key = (node_id, account_id)
                if key not in latest or latest[key].taken_at < checkpoint.taken_at:
                    latest[key] = checkpoint
        return sorted(latest.values(), key=lambda c: (c.node_id, c.account_id))

    def advance_checkpoints(
        self, source_id: str, checkpoints: Iterable[Checkpoint], *, fence: int | None = None
    ) -> int:
        """Move each checkpoint forward (a newer ``taken_at`` wins); returns how many moved.
        With ``fence``, each transaction also checks that the lease token is still ``fence``."""
        by_node: dict[str, dict[str, Reading]] = {}
        for checkpoint in checkpoints:
            readings = by_node.setdefault(checkpoint.node_id, {})
            reading = (checkpoint.total_bytes, _micros(checkpoint.taken_at))
            current = readings.get(checkpoint.account_id)
            if current is None or current[1] < reading[1]:
                readings[checkpoint.account_id] = reading
        return sum(self._advance_node(source_id, node, readings, fence)
                   for node, readings in sorted(by_node.items()))

    def _advance_node(
        self, source_id: str, node_id: str, readings: dict[str, Reading], fence: int | None
    ) -> int:
        moved: set[str] = set()
        pending = dict(readings)
        attempts = 0
        while pending:
            attempts += 1
            if attempts > MAX_ATTEMPTS:
                raise ConcurrentUpdateError(
                    f"checkpoint pages of source {source_id} node {node_id} kept changing; "
                    f"gave up after {MAX_ATTEMPTS} attempts"
                )
            directory = self._read(source_id, node_id)
            changed: dict[tuple[int, int], Page] = {}
            added: dict[tuple[int, int], int] = {}
            applied: list[str] = []
            for account_id, reading in pending.items():
                page = directory.page_of(account_id)
                key = (page.depth, page.index)
                current = page.accounts.get(account_id)
                if current is not None and current[1] >= reading[1]:
                    if current[1] > reading[1]:
                        moved.discard(account_id)  # another writer went further
                    applied.append(account_id)
                    continue  # a checkpoint never moves back
                if added.get(key, 0) >= MAX_NEW_PER_PAGE:
                    continue  # next round: one page's split must fit one transaction
                added[key] = added.get(key, 0) + 1
                page.accounts[account_id] = reading
                changed[key] = page
                applied.append(account_id)
                moved.add(account_id)
            if not changed:
                check_fence(self.table, source_id, fence, "checkpoints not moved")
                return len(moved)
            if self._write(source_id, node_id, list(changed.values()), fence):
                attempts = 0
                for account_id in applied:
                    del pending[account_id]
        return len(moved)

    def _write(self, source_id: str, node_id: str, pages: list[Page], fence: int | None) -> bool:
        """Write ``pages`` (split where too large); False when one changed since it was read
        (the caller reads again; what was written already only moved checkpoints forward)."""
        groups = [self._page_actions(source_id, node_id, page) for page in pages]
        batch: list[Any] = []
        for group in groups:
            if batch and len(batch) + len(group) > TRANSACTION_ACTIONS:
                if not self._transact(source_id, batch, fence):
                    return False
                batch = []
            batch.extend(group)
        return self._transact(source_id, batch, fence) if batch else True

    def _page_actions(self, source_id: str, node_id: str, page: Page) -> list[Any]:
        parts = split(page)
        # as read: absent, or still at the version read
        condition = "version = :read" if page.version else "attribute_not_exists(pk)"
        values = {":read": page.version} if page.version else {}
        if len(parts) == 1:
            return [self.table.put_action(
                _page_to_item(source_id, node_id, page, page.version + 1),
                condition=condition, values=values,
            )]
        actions: list[Any] = []
        if page.version:
            actions.append(self.table.delete_action(
                checkpoint_page_key(source_id, node_id, page.depth, page.index),
                condition=condition, values=values,
            ))
        actions.extend(
            self.table.put_action(_page_to_item(source_id, node_id, part, 1),
                                  condition="attribute_not_exists(pk)", values={})
            for part in parts
        )
        return actions

    def _transact(self, source_id: str, actions: list[Any], fence: int | None) -> bool:
        if fence is not None:
            actions = [*actions, self.table.check_action(
                state_key(source_id), condition="lease_token = :fence", values={":fence": fence}
            )]
        outcome = self.table.transact_write(actions)
        if outcome.ok:
            return True
        codes = list(outcome.reasons)
        lost = len(codes) == len(actions) and codes[-1] == "ConditionalCheckFailed"
        if fence is not None and lost:
            raise LeaseLostError(source_id, fence, "checkpoints not moved") from outcome.failure
        if any(c not in {"None", "ConditionalCheckFailed"} for c in codes):
            raise StoreError(f"checkpoint transaction cancelled: {codes}") from outcome.failure
        # A page changed since it was read (DynamoDB Local names only the first failed action,
        # so a lost lease may show up here first: the caller's next read and write finds it).
        check_fence(self.table, source_id, fence, "checkpoints not moved")
        return False

    def _read(self, source_id: str, node_id: str) -> PageDirectory:
        items = self.table.query(
            "pk = :pk AND begins_with(sk, :node)",
            {":pk": checkpoint_page_partition(source_id),
             ":node": checkpoint_page_prefix(node_id)},
        )
        return PageDirectory(_page_from_item(i) for i in items if i.get("node_id") == node_id)


def _page_to_item(source_id: str, node_id: str, page: Page, version: int) -> Item:
    return {
        **checkpoint_page_key(source_id, node_id, page.depth, page.index),
        "type": "checkpoint_page",
        "source_id": source_id,
        "node_id": node_id,
        "depth": page.depth,
        "index": page.index,
        "version": version,
        "accounts": {name: list(reading) for name, reading in page.accounts.items()},
    }


def _page_from_item(item: Item) -> Page:
    return Page(
        depth=int(item["depth"]),
        index=int(item["index"]),
        version=int(item["version"]),
        accounts={str(k): _reading(v) for k, v in item.get("accounts", {}).items()},
    )


def _reading(value: Any) -> Reading:
    return int(value[0]), int(value[1])


def _checkpoint(node_id: str, account_id: str, reading: Reading) -> Checkpoint:
    return Checkpoint(node_id, account_id, reading[0],
                      _EPOCH + timedelta(microseconds=reading[1]))


def _legacy_checkpoint(item: Item) -> Checkpoint:
    return Checkpoint(str(item["node_id"]), str(item["account_id"]), int(item["total_bytes"]),
                      parse_rfc3339(item["taken_at"]))


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _number_bytes(value: int) -> int:
    return (len(str(abs(value))) + 1) // 2 + 1
