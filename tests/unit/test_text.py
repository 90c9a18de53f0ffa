"""domain/text.py: untrusted or operator text kept short before it goes into a message or record."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from minutemeter.domain.text import clip, shorten


@given(st.text(max_size=2000), st.integers(min_value=0, max_value=1200))
def test_shorten_is_never_longer_than_its_limit_and_keeps_short_text(text: str, limit: int) -> None:
    short = shorten(text, limit)
    assert len(short) <= limit
    if len(text) <= limit:
        assert short == text
    else:
        assert limit < 3 or short.endswith(("...", f"...[{len(text)} chars]"))
        assert text.startswith(short[: max(0, len(short) - len(f"...[{len(text)} chars]"))])


def test_shorten_says_how_long_the_text_was() -> None:
    assert shorten("x" * 600_000, 60) == "x" * 43 + "...[600000 chars]"
    assert shorten("abcdef", 5) == "ab..."


def test_clip_keeps_the_start_and_counts_what_was_cut() -> None:
    assert clip("y" * 250, 200) == "y" * 200 + "...[50 more chars]"
    assert clip("short") == "short"
