"""Domain values as JSON: the one conversion behind the CLI, the API, the logs and stored records.

:func:`to_json` turns a value into what ``json.dumps`` takes as is (a "JSON-ready" value):

- a ``datetime`` becomes RFC 3339 UTC text, at the precision ``times`` names:
  ``"second"`` (``2026-11-22T10:00:15Z``, ``timeutil.format_second``): the documents people and
  the API read; ``"microsecond"`` (``2026-11-22T10:00:15.000000Z``, fixed width,
  ``timeutil.format_instant``): stored records and job results, which DynamoDB compares as text;
- a ``Decimal`` becomes exact decimal text (``decimals="text"``, :func:`decimal_text`: the
  spec's amounts), or stays a ``Decimal`` (``decimals="number"``: a DynamoDB number);
- an enum becomes its value;
- a dataclass becomes a dict of its fields, a mapping a dict with text keys, a list or tuple a
  list, each converted in turn (:func:`map_leaves`);
- anything else (text, ``int``, ``float``, ``bool``, ``None``) is left as it is.

Every ``to_json`` in minutemeter answers such a value (a dict, for a record); ``to_json_text``
answers it as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from minutemeter.domain.timeutil import format_instant, format_second

Times = Literal["second", "microsecond"]
Decimals = Literal["text", "number"]

_TIME_TEXT: dict[str, Callable[[datetime], str]] = {
    "second": format_second,
    "microsecond": format_instant,
}


def decimal_text(value: Decimal) -> str:
    """Plain positional notation (``0.000000001``, never ``1E-9``), exact."""
    return format(value, "f")


def to_json(value: Any, *, times: Times, decimals: Decimals = "text") -> Any:
    """``value`` as a JSON-ready value (module doc): times RFC 3339 at the precision ``times``
    names, Decimals as exact text (or kept, ``decimals="number"``), enums by value, dataclasses,
    mappings, lists and tuples converted all the way down."""
    time_text = _TIME_TEXT[times]

    def leaf(item: Any) -> Any:
        if isinstance(item, datetime):
            return time_text(item)
        if isinstance(item, Decimal):
            return decimal_text(item) if decimals == "text" else item
        if isinstance(item, Enum):
            return item.value
        return item

    return map_leaves(value, leaf)


def to_json_text(value: Any, *, times: Times, indent: int | None = None) -> str:
    """:func:`to_json` of ``value`` (decimals as text) as JSON text: one compact line
    (``{"a":1}``), or ``indent`` spaces a level (``"a": 1``). NaN and infinities are not JSON:
    they raise ``ValueError``."""
    separators = (",", ":") if indent is None else (",", ": ")
    return json.dumps(to_json(value, times=times), indent=indent, separators=separators,
                      allow_nan=False)


def map_leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` rebuilt with ``leaf`` applied to everything that is not a container: a
    dataclass becomes a dict of its fields, a mapping a dict with ``str`` keys, a list or tuple
    a list. The walk of :func:`to_json`, and of the number conversions DynamoDB needs."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: map_leaves(getattr(value, f.name), leaf) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): map_leaves(v, leaf) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [map_leaves(v, leaf) for v in value]
    return leaf(value)
