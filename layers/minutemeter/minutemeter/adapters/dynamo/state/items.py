"""JSON-ish values of state items: job summaries, and the number conversions DynamoDB needs.

DynamoDB numbers are ``Decimal`` both ways: floats are refused on the way in
(:func:`_decimals`) and integers come back as ``Decimal`` (:func:`_plain` makes them ``int``
again). Free text of a job result is clipped before it is stored (:func:`stored_job`): an item
is at most 400 KB, and an exporter's error message can be any size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from minutemeter.domain.model import JobResult, JobStatus
from minutemeter.domain.text import shorten
from minutemeter.domain.timeutil import format_instant

MAX_ERROR_CHARS = 1000
MAX_NOTES = 20
MAX_NOTE_CHARS = 500


def _decimals(value: Any) -> Any:
    """Floats (a failure rate) as Decimal: DynamoDB numbers refuse floats."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def job_to_dict(job: JobResult) -> dict[str, Any]:
    """A job result as plain JSON-friendly values (times RFC 3339)."""
    out: dict[str, Any] = {}
    for name, value in asdict(job).items():
        if isinstance(value, datetime):
            out[name] = format_instant(value)
        elif isinstance(value, JobStatus):
            out[name] = value.value
        else:
            out[name] = value
    return out


def stored_job(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A job summary (:func:`job_to_dict`) with its free text clipped to a bounded size:
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
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _stored(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, StrEnum):
        return value.value
    return value
