"""The window API's paging rules: ``PageSequence`` accepts a well-behaved fetch and names the
field of every contract violation in ``SourceProtocolError``; ``IdentityCheck`` (every kind's
identity rule) and the page bound on their own."""

from __future__ import annotations

import itertools

import pytest

from minutemeter.domain.errors import ExporterError, SourceProtocolError
from minutemeter.domain.model import Page
from minutemeter.domain.protocol import (
    MAX_PAGES_PER_WINDOW,
    IdentityCheck,
    PageSequence,
    check_page_count,
)

_digests = itertools.count()


def page(
    *,
    has_more: bool = True,
    cursor: str | None = "2026-11-22T10:05:00Z",
    node: str = "node-a",
    env: str = "prod",
    digest: str | None = None,
) -> Page:
    return Page(
        node_id=node,
        env=env,
        snapshots=(),
        has_more=has_more,
        next_cursor=cursor,
        digest=digest if digest is not None else f"d{next(_digests)}",
    )


def configured() -> PageSequence:
    return PageSequence(expected_node="node-a", expected_env="prod")


def test_a_well_behaved_fetch_returns_each_cursor_then_none() -> None:
    sequence = configured()

    assert sequence.accept(page(cursor="2026-11-22T10:05:00Z")) == "2026-11-22T10:05:00Z"
    assert sequence.accept(page(cursor="2026-11-22T10:10:00.5Z")) == "2026-11-22T10:10:00.5Z"
    assert sequence.accept(page(has_more=False, cursor=None)) is None
    assert sequence.pages == 3


@pytest.mark.parametrize("cursor", [None, "", "garbage", "2026-11-22T10:05:00"])
def test_has_more_false_ends_the_fetch_whatever_the_cursor(cursor: str | None) -> None:
    sequence = configured()

    assert sequence.accept(page(has_more=False, cursor=cursor)) is None
    assert sequence.pages == 1


@pytest.mark.parametrize("cursor", [None, ""])
def test_has_more_with_empty_or_missing_cursor_is_an_error(cursor: str | None) -> None:
    with pytest.raises(SourceProtocolError) as caught:
        configured().accept(page(cursor=cursor))

    assert caught.value.field == "next_cursor"
    assert caught.value.value == cursor


@pytest.mark.parametrize(
    "cursor", ["abc", "1732269900", "2026-11-22", "2026-11-22T10:05:00", "2026-11-22T10:05:00Z\n"]
)
def test_cursor_that_is_not_rfc3339_is_an_error(cursor: str) -> None:
    with pytest.raises(SourceProtocolError) as caught:
        configured().accept(page(cursor=cursor))

    assert caught.value.field == "next_cursor"
    assert caught.value.value == cursor
    assert isinstance(caught.value, ExporterError)


@pytest.mark.parametrize(
    "second",
    [
        "2026-11-22T10:05:00Z",  # equal
        "2026-11-22T15:35:00+05:30",  # the same instant, written differently
        "2026-11-22T10:04:59.999999Z",  # earlier
        "2026-11-22T09:00:00Z",
    ],
)
def test_cursor_that_does_not_advance_is_an_error(second: str) -> None:
    sequence = configured()
    sequence.accept(page(cursor="2026-11-22T10:05:00Z"))

    with pytest.raises(SourceProtocolError) as caught:
        sequence.accept(page(cursor=second))

    assert caught.value.field == "next_cursor"
    assert caught.value.value == second


def test_cursor_advancing_by_a_microsecond_is_accepted() -> None:
    sequence = configured()
    sequence.accept(page(cursor="2026-11-22T10:05:00Z"))

    assert sequence.accept(page(cursor="2026-11-22T10:05:00.000001Z")) == (
        "2026-11-22T10:05:00.000001Z"
    )


def test_a_repeated_page_is_an_error_even_with_an_advancing_cursor() -> None:
    # GIVEN a page already accepted
    sequence = configured()
    sequence.accept(page(cursor="2026-11-22T10:05:00Z", digest="same"))

    # WHEN the exporter sends the same body again
    with pytest.raises(SourceProtocolError) as caught:
        sequence.accept(page(cursor="2026-11-22T10:10:00Z", digest="same"))

    # THEN it is refused as a repeat, and not counted
    assert caught.value.field == "page"
    assert sequence.pages == 1


def test_a_repeated_final_page_is_also_an_error() -> None:
    sequence = configured()
    sequence.accept(page(has_more=True, digest="p1"))

    with pytest.raises(SourceProtocolError) as caught:
        sequence.accept(page(has_more=False, cursor=None, digest="p1"))

    assert caught.value.field == "page"


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"node": "node-b"}, "node_id", "node-b"),
        ({"node": "NODE-A"}, "node_id", "NODE-A"),
        ({"env": "staging"}, "env", "staging"),
    ],
)
def test_identity_must_match_the_configuration(
    kwargs: dict[str, str], field: str, value: str
) -> None:
    with pytest.raises(SourceProtocolError) as caught:
        configured().accept(page(**kwargs))  # type: ignore[arg-type]

    assert caught.value.field == field
    assert caught.value.value == value


def test_identity_is_checked_before_anything_else() -> None:
    # a wrong node with a broken cursor is reported as the wrong node
    with pytest.raises(SourceProtocolError) as caught:
        configured().accept(page(node="node-b", cursor=""))

    assert caught.value.field == "node_id"


def test_node_and_env_are_learned_from_the_first_page_then_enforced() -> None:
    # GIVEN a source with no configured identity
    sequence = PageSequence(expected_node=None, expected_env=None)
    assert sequence.node_id is None

    # WHEN the first page says node-x / dev
    sequence.accept(page(node="node-x", env="dev", cursor="2026-11-22T10:05:00Z"))

    # THEN that identity is kept and later pages must match it
    assert sequence.node_id == "node-x"
    sequence.accept(page(node="node-x", env="dev", cursor="2026-11-22T10:06:00Z"))
    with pytest.raises(SourceProtocolError) as node_error:
        sequence.accept(page(node="node-y", env="dev", cursor="2026-11-22T10:07:00Z"))
    assert node_error.value.field == "node_id"
    with pytest.raises(SourceProtocolError) as env_error:
        sequence.accept(page(node="node-x", env="prod", cursor="2026-11-22T10:08:00Z"))
    assert env_error.value.field == "env"


def test_only_the_env_can_be_learned_when_the_node_is_configured() -> None:
    sequence = PageSequence(expected_node="node-a", expected_env=None)
    sequence.accept(page(env="qa", cursor="2026-11-22T10:05:00Z"))

    with pytest.raises(SourceProtocolError) as caught:
        sequence.accept(page(env="prod", cursor="2026-11-22T10:06:00Z"))

    assert caught.value.field == "env"
    assert sequence.node_id == "node-a"


def test_cursor_out_of_datetime_range_is_a_protocol_error() -> None:
    with pytest.raises(SourceProtocolError) as caught:
        configured().accept(page(cursor="9999-12-31T23:59:59-01:00"))

    assert caught.value.field == "next_cursor"


def test_the_identity_check_learns_each_unknown_part_once() -> None:
    check = IdentityCheck(expected_node=None, expected_env="prod")
    check.check("node-x", "prod")

    assert (check.node_id, check.env) == ("node-x", "prod")
    with pytest.raises(SourceProtocolError) as node_error:
        check.check("node-y", "prod")
    assert (node_error.value.field, node_error.value.value) == ("node_id", "node-y")
    assert "--node-id" in str(node_error.value)
    with pytest.raises(SourceProtocolError) as env_error:
        check.check("node-x", "dev")
    assert (env_error.value.field, env_error.value.value) == ("env", "dev")
    assert "--env" in str(env_error.value)


def test_a_read_may_take_max_pages_per_window_pages_and_no_more() -> None:
    check_page_count(MAX_PAGES_PER_WINDOW - 1)  # one more page is fine

    with pytest.raises(SourceProtocolError, match=f"more than {MAX_PAGES_PER_WINDOW} pages") as (
        caught
    ):
        check_page_count(MAX_PAGES_PER_WINDOW)
    assert caught.value.field == "page"
    assert MAX_PAGES_PER_WINDOW == 10_000
