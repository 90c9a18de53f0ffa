"""A source's counter identity: the (node, env) whose counters its checkpoints hold.

shared/spec/exporter-api.md: a counter belongs to its (source, node, env). When an operator
points a source at another node or env, the counters it reads are new ones: they start from a
fresh baseline, and no usage is ever computed against a value read from another node.
"""

from __future__ import annotations

from minutemeter.domain.model import SourceConfig, SyncState


def identity_change(source: SourceConfig, state: SyncState) -> str | None:
    """Why the source's configured identity differs from the one its baseline was read from,
    or ``None`` when it does not (or no baseline was taken yet: the first one records it)."""
    if state.baseline_taken_at is None:
        return None
    if source.node_id and state.node_id and source.node_id != state.node_id:
        return f"node_id changed from {state.node_id!r} to {source.node_id!r}"
    if source.env and state.env and source.env != state.env:
        return f"env changed from {state.env!r} to {source.env!r}"
    return None
