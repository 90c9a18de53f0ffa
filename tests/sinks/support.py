"""Shared values and builders of the sink tests."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

from minutemeter.domain.delivery import DeliveryEvent, SinkConfig, SinkKind, SinkValue

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STRIPE_KEY = "sk_test_SECRET_stripe_0123456789"
LAGO_KEY = "lago_SECRET_key_0123456789"
CUSTOMER = "cus_local_1"
METER = "minutemeter_bytes"
CLIENT_TIMEOUT = 0.5  # seconds; every stall below holds its answer longer than this
STALL_SECONDS = 3.0


def event(
    n: int,
    value: int = 1000,
    *,
    at: datetime | None = None,
    customer: str = CUSTOMER,
    kind: str = "usage",
    corrects: str | None = None,
) -> DeliveryEvent:
    """The n-th test event: ledger id ``led-<n>``, at ``NOW - 1 h + n minutes`` by default."""
    return DeliveryEvent(
        ledger_id=f"led-{n:04d}",
        account_id="acct-1",
        customer=customer,
        timestamp=at if at is not None else NOW - timedelta(hours=1) + timedelta(minutes=n),
        value=value,
        kind=kind,
        corrects=corrects,
    )


def sink_config(kind: SinkKind, url: str, meter: str = METER) -> SinkConfig:
    return SinkConfig(name=f"{kind.value}-test", kind=kind, url=url, meter=meter,
                      value=SinkValue.BILLABLE, api_key_env="SINK_KEY")


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
