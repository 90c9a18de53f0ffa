"""Checkpoint pages on moto and DynamoDB Local: many accounts in few items, split when full,
fenced, and the per-account items of older versions still read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from minutemeter.adapters.dynamo.state.checkpoints import (
    PAGE_BYTES,
    DynamoCheckpointStore,
    account_hash,
    page_bytes,
)
from minutemeter.adapters.dynamo.state.keys import checkpoint_key, checkpoint_page_partition
from minutemeter.domain.errors import LeaseLostError
from minutemeter.domain.model import Checkpoint
from minutemeter.domain.timeutil import format_instant
from tests.support.backends import Backend

T0 = datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 10, 5, tzinfo=UTC)


def _accounts(count: int) -> list[str]:
    return [f"{n:08x}-0b7d-4c55-9a0e-3f2b8d1e7c90" for n in range(count)]


def _store(backend: Backend) -> DynamoCheckpointStore:
    store = backend.state.checkpoints
    assert isinstance(store, DynamoCheckpointStore)
    return store


def _pages(store: DynamoCheckpointStore, source: str = "src") -> list[dict[str, object]]:
    return list(store.table.query("pk = :pk", {":pk": checkpoint_page_partition(source)}))


def test_many_accounts_share_few_pages_that_split_when_full(dynamo: Backend) -> None:
    store = _store(dynamo)
    accounts = _accounts(500)
    # WHEN 500 accounts' checkpoints are advanced at once
    moved = store.advance_checkpoints(
        "src", [Checkpoint("node-a", a, n * 1000, T0) for n, a in enumerate(accounts)]
    )
    # THEN they sit in a few pages that do not overlap and each stay under the bound
    pages = _pages(store)
    assert moved == 500
    assert 4 <= len(pages) <= 32
    held = [a for p in pages for a in p["accounts"]]  # type: ignore[attr-defined]
    assert sorted(held) == sorted(accounts)
    for page in pages:
        depth, index = int(page["depth"]), int(page["index"])  # type: ignore[call-overload]
        assert all(account_hash(a) & ((1 << depth) - 1) == index
                   for a in page["accounts"])  # type: ignore[attr-defined]
        readings = {a: (int(v[0]), int(v[1]))
                    for a, v in page["accounts"].items()}  # type: ignore[attr-defined]
        assert page_bytes(readings) <= PAGE_BYTES
    # AND each reads back exactly, microseconds included
    got = store.get_checkpoints("src", "node-a", accounts)
    assert got == {a: Checkpoint("node-a", a, n * 1000, T0) for n, a in enumerate(accounts)}
    assert len(store.list_checkpoints("src")) == 500


def test_checkpoints_of_nodes_and_sources_stay_apart(dynamo: Backend) -> None:
    store = _store(dynamo)
    store.advance_checkpoints("src", [Checkpoint("a", "acct", 1, T0),
                                      Checkpoint("a#b", "acct", 2, T0)])
    store.advance_checkpoints("src2", [Checkpoint("a", "acct", 3, T0)])
    assert store.get_checkpoints("src", "a", ["acct"])["acct"].total_bytes == 1
    assert store.get_checkpoints("src", "a#b", ["acct"])["acct"].total_bytes == 2
    assert store.get_checkpoints("src2", "a", ["acct"])["acct"].total_bytes == 3
    assert store.get_checkpoints("src", "b", ["acct"]) == {}


def test_a_checkpoint_stored_before_pages_is_read_until_it_moves(dynamo: Backend) -> None:
    store = _store(dynamo)
    # GIVEN a per-account checkpoint item as older versions wrote it
    store.table.put({**checkpoint_key("src", "node-a", "acct"), "type": "checkpoint",
                     "source_id": "src", "node_id": "node-a", "account_id": "acct",
                     "total_bytes": 500, "taken_at": format_instant(T0)})
    old = Checkpoint("node-a", "acct", 500, T0)
    assert store.get_checkpoints("src", "node-a", ["acct"]) == {"acct": old}
    assert store.list_checkpoints("src") == [old]
    # WHEN it advances, THEN the page holds the newer one and wins everywhere
    newer = Checkpoint("node-a", "acct", 900, T0 + timedelta(minutes=1))
    assert store.advance_checkpoints("src", [newer]) == 1
    assert store.get_checkpoints("src", "node-a", ["acct"]) == {"acct": newer}
    assert store.list_checkpoints("src") == [newer]


def test_a_checkpoint_item_moved_after_its_page_wins(dynamo: Backend) -> None:
    # GIVEN an account whose checkpoint is in a page
    store = _store(dynamo)
    paged = Checkpoint("node-a", "acct", 900, T0 + timedelta(minutes=1))
    store.advance_checkpoints("src", [paged])
    # WHEN code from before pages (a rollback) moves its per-account item further
    later = T0 + timedelta(minutes=2)
    store.table.put({**checkpoint_key("src", "node-a", "acct"), "type": "checkpoint",
                     "source_id": "src", "node_id": "node-a", "account_id": "acct",
                     "total_bytes": 1400, "taken_at": format_instant(later)})
    # THEN the newer reading is the checkpoint: the next diff starts there, not at the page's
    newer = Checkpoint("node-a", "acct", 1400, later)
    assert store.get_checkpoints("src", "node-a", ["acct"]) == {"acct": newer}
    assert store.list_checkpoints("src") == [newer]
    # AND an item of another node or account does not leak in
    assert store.get_checkpoints("src", "node-a", ["other"]) == {}
    assert store.get_checkpoints("src", "node-a#x", ["acct"]) == {}


def test_a_stale_lease_holder_moves_no_page(dynamo: Backend) -> None:
    sync = dynamo.state.sync
    first = sync.acquire_lease("src", holder="r1", now=NOW, lease_seconds=60,
                               margin_seconds=0)
    assert first is not None
    store = _store(dynamo)
    store.advance_checkpoints("src", [Checkpoint("node-a", "acct", 1, T0)], fence=first.token)
    second = sync.acquire_lease("src", holder="r2", now=NOW + timedelta(seconds=61),
                                lease_seconds=60, margin_seconds=0)
    assert second is not None
    with pytest.raises(LeaseLostError):
        store.advance_checkpoints(
            "src", [Checkpoint("node-a", "acct", 2, T0 + timedelta(minutes=1))],
            fence=first.token,
        )
    assert store.get_checkpoints("src", "node-a", ["acct"])["acct"].total_bytes == 1
