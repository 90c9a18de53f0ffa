"""The state table: one adapter per store port of :mod:`minutemeter.ports`, all over one
:class:`DynamoTable` (:func:`dynamo_state_stores` wires them).

- :mod:`.keys`: every key layout of the table (the table of items is there);
- :mod:`.sources`: the source registry (``SourceStore``);
- :mod:`.sync`: sync state, lease and job results (``SyncStore``), one item and one fence;
- :mod:`.fencing`: the lease-token conditions that sync-state and checkpoint writes share;
- :mod:`.checkpoints`, :mod:`.profiles`, :mod:`.records`, :mod:`.reconcile`, :mod:`.clock`:
  ``CheckpointStore``, ``ProfileStore``, ``RecordStore``, ``ReconcileStore`` and
  ``ClockVerdictStore``;
- :mod:`.deliveries`: billing sinks and delivery records (``DeliveryStore``);
- :mod:`.items`: JSON-ish item values (job summaries, numbers to and from ``Decimal``).
"""

from __future__ import annotations

from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.state.checkpoints import DynamoCheckpointStore
from minutemeter.adapters.dynamo.state.clock import DynamoClockVerdictStore
from minutemeter.adapters.dynamo.state.deliveries import DynamoDeliveryStore
from minutemeter.adapters.dynamo.state.profiles import DynamoProfileStore
from minutemeter.adapters.dynamo.state.reconcile import DynamoReconcileStore
from minutemeter.adapters.dynamo.state.records import DynamoRecordStore
from minutemeter.adapters.dynamo.state.sources import DynamoSourceStore
from minutemeter.adapters.dynamo.state.sync import DynamoSyncStore
from minutemeter.ports import StateStores

__all__ = [
    "DynamoCheckpointStore",
    "DynamoClockVerdictStore",
    "DynamoDeliveryStore",
    "DynamoProfileStore",
    "DynamoReconcileStore",
    "DynamoRecordStore",
    "DynamoSourceStore",
    "DynamoSyncStore",
    "dynamo_state_stores",
]


def dynamo_state_stores(table: DynamoTable) -> StateStores:
    """Every store of the state table on ``table`` (shared: one client, one capacity meter)."""
    return StateStores(
        sources=DynamoSourceStore(table),
        sync=DynamoSyncStore(table),
        checkpoints=DynamoCheckpointStore(table),
        profiles=DynamoProfileStore(table),
        records=DynamoRecordStore(table),
        reconciles=DynamoReconcileStore(table),
        verdicts=DynamoClockVerdictStore(table),
        deliveries=DynamoDeliveryStore(table),
    )
