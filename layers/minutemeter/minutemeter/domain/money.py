"""The precision and range of billing profiles, chosen so that pricing is always exact.

An entry's amount is ``billable_bytes * price_per_byte * multiplier`` (``domain.rating.price``),
computed with 38 significant digits (what a DynamoDB number holds) and trapping any rounding.
The digits of a product are at most the sum of the digits of its factors, so with

- ``price_per_byte``: at most :data:`PRICE_DIGITS` (12) significant digits and
  :data:`PRICE_PLACES` (18) decimal places, within ``[0, 10**6]``;
- ``multiplier``: at most :data:`MULTIPLIER_DIGITS` (6) significant digits and
  :data:`MULTIPLIER_PLACES` (6) decimal places, within ``[0, 10**6]``;
- ``|billable_bytes| <= MAX_BILLABLE_BYTES`` (``10**20 - 1``: 20 digits, over 86 times
  ``max_counter_bytes``' default of ``2**60``),

an amount has at most 20 + 12 + 6 = 38 digits, a magnitude under ``10**32`` and no digit
below ``10**-24``: never ``Inexact``, never outside DynamoDB's range. ``included_bytes`` is
within ``[0, 2**63]``. Values are kept in a canonical form: trailing zeros after the decimal
point dropped (``1.50`` is stored as ``1.5``), ``-0`` as ``0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal, InvalidOperation

from minutemeter.domain.errors import InputError
from minutemeter.domain.model import BillingProfile

PRICE_DIGITS, PRICE_PLACES = 12, 18
MULTIPLIER_DIGITS, MULTIPLIER_PLACES = 6, 6
MAX_PRICE = MAX_MULTIPLIER = Decimal(10**6)
MAX_INCLUDED_BYTES = 2**63
MAX_BILLABLE_BYTES = 10**20 - 1
MAX_VERSION_CHARS = 100


def parse_decimal(text: str, what: str) -> Decimal:
    """``text`` as a finite Decimal; raises :class:`InputError` naming ``what``."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError) as exc:
        raise InputError(f"{what} must be a decimal number, got {shown!r}") from exc
    if not value.is_finite():
        raise InputError(f"{what} must be a finite number, got {shown!r}")
    return value


def canonical(value: Decimal) -> Decimal:
    """``value`` without trailing fractional zeros and without a negative zero."""
    if value.is_zero():
        return Decimal(0)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def check_amount(
    value: Decimal, what: str, *, digits: int, places: int, maximum: Decimal
) -> Decimal:
    """``value`` in canonical form if it is finite, in ``[0, maximum]``, with at most
    ``digits`` significant digits and ``places`` decimal places; else :class:`InputError`."""
    if not value.is_finite():
        raise InputError(f"{what} must be a finite number")
    if not 0 <= value <= maximum:
        raise InputError(f"{what} must be between 0 and {maximum}")
    value = canonical(value)
    _, coefficient, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    if len(coefficient) > digits:
        raise InputError(f"{what} must have at most {digits} significant digits")
    if -exponent > places:
        raise InputError(f"{what} must have at most {places} decimal places")
    return value


CLI_NAMES = {
    "included_bytes": "--included-bytes",
    "price_per_byte": "--price-per-byte",
    "multiplier": "--multiplier",
    "pricing_rule_version": "--pricing-version",
}


def check_profile(
    profile: BillingProfile, names: Mapping[str, str] = CLI_NAMES
) -> BillingProfile:
    """``profile`` with its money in canonical form, if it is within the bounds of the module
    doc; else :class:`InputError` that calls each field by ``names`` (the CLI's options by
    default; settings would pass their variable names)."""
    if not 0 <= profile.included_bytes <= MAX_INCLUDED_BYTES:
        raise InputError(f"{names['included_bytes']} must be between 0 and 2**63")
    price = check_amount(profile.price_per_byte, names["price_per_byte"], digits=PRICE_DIGITS,
                         places=PRICE_PLACES, maximum=MAX_PRICE)
    multiplier = check_amount(profile.multiplier, names["multiplier"], digits=MULTIPLIER_DIGITS,
                              places=MULTIPLIER_PLACES, maximum=MAX_MULTIPLIER)
    version = profile.pricing_rule_version
    if not version.strip() or len(version) > MAX_VERSION_CHARS:
        raise InputError(f"{names['pricing_rule_version']} must be 1-{MAX_VERSION_CHARS} "
                         "characters, not blank")
    return replace(profile, price_per_byte=price, multiplier=multiplier)
