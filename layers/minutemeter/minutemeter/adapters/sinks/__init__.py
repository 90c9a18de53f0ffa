"""Billing-system sinks (:class:`minutemeter.ports.Sink`), one module per system, each through
the system's official client: Stripe Billing Meter Events and Lago events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from minutemeter.adapters.sinks.lago_sink import LAGO_PROPERTY, LagoSink
from minutemeter.adapters.sinks.stripe_sink import StripeSink

if TYPE_CHECKING:  # each adapter fits the port, checked by mypy
    from minutemeter.ports import Sink

    _STRIPE: type[Sink] = StripeSink
    _LAGO: type[Sink] = LagoSink

__all__ = ["LAGO_PROPERTY", "LagoSink", "StripeSink"]
