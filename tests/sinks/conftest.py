"""Fixtures for the sink adapters: the local billing systems on 127.0.0.1, clocks pinned."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from minutemeter.local.lago_server import LocalLago
from minutemeter.local.stripe_server import LocalStripe
from tests.sinks.support import CUSTOMER, LAGO_KEY, METER, NOW, STRIPE_KEY


@pytest.fixture
def stripe_server() -> Iterator[LocalStripe]:
    with LocalStripe(api_key=STRIPE_KEY, customers={CUSTOMER, "cus_local_2"},
                     meters={METER}, clock=lambda: NOW) as server:
        yield server


@pytest.fixture
def lago_server() -> Iterator[LocalLago]:
    with LocalLago(api_key=LAGO_KEY, clock=lambda: NOW) as server:
        yield server
