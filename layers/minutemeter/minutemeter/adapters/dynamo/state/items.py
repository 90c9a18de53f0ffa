"""Values of state items: the number conversions DynamoDB needs, and job summaries clipped.

Records are stored in ``json_values.to_json``'s record form (times fixed-width, enums by value,
Decimals as DynamoDB numbers; :func:`_stored`). DynamoDB numbers are ``Decimal`` both ways:
floats are refused on the way in (:func:`_decimals`) and integers come back as ``Decimal``
(:func:`_plain` makes them ``int`` again). Free text of a job result is clipped before it is
stored (:func:`stored_job`): an item is at most 400 KB, and an exporter's error message can be
any size.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from minutemeter.domain.text import shorten
from minutemeter.json_values import map_leaves, to_json

MAX_ERROR_CHARS = 1000
MAX_NOTES = 20
MAX_NOTE_CHARS = 500


def _stored(value: Any) -> Any:
    """One value of a stored record: times fixed-width (microseconds), enums by value,
    Decimals kept (DynamoDB numbers)."""
    return to_json(value, times="microsecond", decimals="number")


def _decimals(value: Any) -> Any:
    """Floats (a failure rate) as Decimal: DynamoDB numbers refuse floats."""
    return map_leaves(value, _float_as_decimal)


def _float_as_decimal(value: Any) -> Any:
    return Decimal(str(value)) if isinstance(value, float) else value


def stored_job(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A job summary (``presenters.job_to_dict``) with its free text clipped to a bounded size:
    ``error`` and ``error_type`` to ``MAX_ERROR_CHARS``, at most ``MAX_NOTES`` notes of at most
    ``MAX_NOTE_CHARS`` each (the last note then says how many were left out)."""
    out = dict(summary)
    for name in ("error", "error_type"):
        if isinstance(out.get(name), str):
            out[name] = shorten(out[name], MAX_ERROR_CHARS)
    notes = out.get("notes")
    if isinstance(notes, list):
        kept = [shorten(str(n), MAX_NOTE_CHARS) for n in notes[:MAX_NOTES]]
        if len(notes) > MAX_NOTES:
            kept[-1] = f"... and {len(notes) - MAX_NOTES + 1} more notes"
        out["notes"] = kept
    return out


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; integers become int again."""
    return map_leaves(value, _whole_as_int)


def _whole_as_int(value: Any) -> Any:
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value
