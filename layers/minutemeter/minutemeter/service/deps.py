"""What a billing run (a collect or a reconcile) is given, and how it spends its time budget."""

from __future__ import annotations

from dataclasses import dataclass

from minutemeter.ports import (
    Budget,
    CheckpointStore,
    Clock,
    ClockVerdictStore,
    LedgerStore,
    ProfileStore,
    ReconcileStore,
    RecordStore,
    SourceReaders,
    SourceStore,
    StateStores,
    SyncStore,
)
from minutemeter.settings import Settings


@dataclass(frozen=True)
class BillingDeps:
    """What a billing run needs, a collect (``service.collect.collect_source``) or a reconcile
    (``service.reconcile``); built once by ``bootstrap`` (``App.billing_deps``).

    Both read a source and write the ledger under the source's lease; of the state stores,
    only collect writes ``records`` and only reconcile uses ``reconciles``."""

    settings: Settings
    clock: Clock
    readers: SourceReaders  # the reader of each source kind
    ledger: LedgerStore
    sources: SourceStore
    sync: SyncStore
    checkpoints: CheckpointStore
    profiles: ProfileStore
    records: RecordStore
    reconciles: ReconcileStore
    verdicts: ClockVerdictStore
    lease_heartbeat: bool = True

    @classmethod
    def from_stores(
        cls, settings: Settings, clock: Clock, readers: SourceReaders, ledger: LedgerStore,
        state: StateStores, *, lease_heartbeat: bool = True,
    ) -> BillingDeps:
        """The deps of a billing run over ``ledger`` and every store of the state table."""
        return cls(
            settings=settings,
            clock=clock,
            readers=readers,
            ledger=ledger,
            sources=state.sources,
            sync=state.sync,
            checkpoints=state.checkpoints,
            profiles=state.profiles,
            records=state.records,
            reconciles=state.reconciles,
            verdicts=state.verdicts,
            lease_heartbeat=lease_heartbeat,
        )


def fetch_time_left(deps: BillingDeps, budget: Budget | None) -> float | None:
    """Seconds an exporter request may take: what is left of the budget less half the deadline
    margin (a run starts no chunk inside the margin; a fetch already under way may use half of
    it, the other half is kept for committing and recording). ``None`` without a budget."""
    remaining = budget.remaining_seconds() if budget is not None else None
    if remaining is None:
        return None
    return remaining - deps.settings.deadline_margin_seconds / 2


def time_for(deps: BillingDeps, budget: Budget | None, estimate_seconds: float) -> bool:
    """Whether ``estimate_seconds`` of work still fits before the deadline, keeping
    ``deadline_margin_seconds`` to spare (no budget: always)."""
    remaining = budget.remaining_seconds() if budget is not None else None
    if remaining is None:
        return True
    return remaining > deps.settings.deadline_margin_seconds + estimate_seconds
