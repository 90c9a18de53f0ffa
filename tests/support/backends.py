"""Store backends for the functional tests: in-memory fakes, moto, and DynamoDB Local."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.ledger import DynamoLedgerStore
from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.dynamo.state import dynamo_state_stores
from minutemeter.adapters.dynamo.wire import CapacityMeter
from minutemeter.ports import LedgerStore, StateStores
from minutemeter.settings import Settings


@dataclass
class Backend:
    name: str
    ledger: LedgerStore
    state: StateStores  # one store per aggregate of the state table
    settings: Settings
    client: Any = None
    meter: CapacityMeter | None = None


def dynamo_backend(name: str, client: Any, **settings: Any) -> Backend:
    """Fresh, uniquely named tables on ``client`` and the real adapters on them."""
    suffix = uuid.uuid4().hex[:10]
    config = Settings(ledger_table=f"ledger-{suffix}", state_table=f"state-{suffix}", **settings)
    create_tables(client, ledger_table=config.ledger_table, state_table=config.state_table)
    meter = CapacityMeter()
    return Backend(
        name=name,
        ledger=DynamoLedgerStore(DynamoTable(client, config.ledger_table, meter)),
        state=dynamo_state_stores(DynamoTable(client, config.state_table, meter)),
        settings=config,
        client=client,
        meter=meter,
    )
