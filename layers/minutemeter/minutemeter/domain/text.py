"""Keeping untrusted text short before it goes into an error message, a log line or a record.

An exporter is not ours (shared/spec/exporter-api.md): any string it sends (a node id, a cursor,
an error body, a URL carrying its cursor) may be megabytes long. Every such string is clipped
before it is embedded in a message, so an error stays one readable line.
"""

from __future__ import annotations

import reprlib

CLIP_LIMIT = 200

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxstring = 60
_SHORT_REPR.maxother = 60
_SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxdict = 8
_SHORT_REPR.maxset = _SHORT_REPR.maxfrozenset = 8
_SHORT_REPR.maxlong = 60


def clip(text: str, limit: int = CLIP_LIMIT) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit`` characters
    followed by a note of how many were cut (so the result is at most ``limit + 40`` long).
    The characters kept are unchanged: embed the result with ``!r`` to show control characters,
    or use :func:`clip_line` for text that goes into a message as it is."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more chars]"


def shorten(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and how much was cut,
    never longer than ``limit``: for text repeated in a message or kept in a record whose size
    must stay bounded (an operator's input echoed back, a stored error)."""
    if len(text) <= limit:
        return text
    suffix = f"...[{len(text)} chars]"
    if limit < 3:
        return text[:limit]
    if len(suffix) >= limit:
        return text[: limit - 3] + "..."
    return text[: limit - len(suffix)] + suffix


# Line breaks and tabs become spaces, other control characters "?".
_ONE_LINE = {**{code: "?" for code in (*range(32), 127)}, 9: " ", 10: " ", 13: " "}


def clip_line(text: str, limit: int = CLIP_LIMIT) -> str:
    """:func:`clip`, then control characters replaced, so that a message stays one line (an
    error body embedded in an exception message, a URL in a transport error)."""
    return clip(text, limit).translate(_ONE_LINE)


def clip_value(value: object, limit: int = CLIP_LIMIT) -> object:
    """A short stand-in for an untrusted value stored on an error (``SourceProtocolError.value``).

    ``None``, booleans, numbers and short strings are kept as they are; a long string is
    clipped; a container is kept if its bounded repr shows all of it, else replaced by that
    bounded repr (a string of at most about ``limit`` characters).
    """
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 256 else clip(_SHORT_REPR.repr(value), limit)
    if isinstance(value, str):
        return clip(value, limit)
    short = _SHORT_REPR.repr(value)
    if "..." in short or len(short) > limit:
        return clip(short, limit)
    return value
