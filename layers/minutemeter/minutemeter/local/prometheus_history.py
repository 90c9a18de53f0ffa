"""Deterministic Prometheus history for the tests, the demo and the bench.

A :class:`NodeHistory` is the scrapes of one simulated node: per scrape, its timestamp (ms) and
each series' value as Prometheus would store it (text of a float64). :func:`openmetrics` writes
histories for ``promtool tsdb create-blocks-from openmetrics``
(:func:`minutemeter.local.prometheus.load_history`). The tests bill them against an oracle of
their own (``tests/prometheus/history.py``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from minutemeter.local.prometheus_node import METRIC  # a counter family: samples METRIC_total


@dataclass
class NodeHistory:
    node: str
    # (ms, {(account, pod): value text}); pods let one account's counter change series
    scrapes: list[tuple[int, dict[tuple[str, str], str]]] = field(default_factory=list)


def build_node(node: str, accounts: list[str], *, start_ms: int, scrapes: int,
               interval_ms: int, offset_ms: int, seed: int, restart_at: int | None = None,
               gap: range = range(0), late: dict[str, int] | None = None,
               absent: dict[str, range] | None = None,
               odd_values: dict[int, tuple[str, str]] | None = None) -> NodeHistory:
    """``scrapes`` scrapes every ``interval_ms`` from ``start_ms + offset_ms``. At scrape index
    ``restart_at`` every counter restarts from zero under a new pod label; scrapes in ``gap``
    are missing; an account in ``late`` first appears at that index; an account in ``absent``
    has no sample in that index range; ``odd_values`` puts a raw value text at an index."""
    rng = random.Random(seed)
    totals = dict.fromkeys(accounts, 0)
    pod = "p1"
    history = NodeHistory(node)
    for index in range(scrapes):
        if index == restart_at:
            totals = dict.fromkeys(accounts, 0)
            pod = "p2"
        for account in accounts:
            if index >= (late or {}).get(account, 0):
                totals[account] += rng.choice((0, 0, 1, 7, 4096, 65_536, 1_000_003))
        if index in gap:
            continue
        values = {(a, pod): str(totals[a]) for a in accounts
                  if index >= (late or {}).get(a, 0) and index not in (absent or {}).get(a, ())}
        if index in (odd_values or {}):
            account, text = (odd_values or {})[index]
            values[(account, pod)] = text
        history.scrapes.append((start_ms + offset_ms + index * interval_ms, values))
    return history


def openmetrics(histories: Iterable[NodeHistory]) -> str:
    """The histories as OpenMetrics text: one counter family, series after series."""
    series: dict[tuple[str, str, str], list[tuple[int, str]]] = defaultdict(list)
    for history in histories:
        for ms, values in history.scrapes:
            for (account, pod), text in values.items():
                series[(history.node, account, pod)].append((ms, text))
    lines = [f"# TYPE {METRIC} counter"]
    for (node, account, pod), points in series.items():
        labels = f'node="{node}",bucket="{account}",pod="{pod}"'
        lines += [f"{METRIC}_total{{{labels}}} {text} {ms // 1000}.{ms % 1000:03d}"
                  for ms, text in points]
    return "\n".join([*lines, "# EOF"]) + "\n"


def expected_minutes(history: NodeHistory, *, start_ms: int,
                     until_ms: int) -> dict[tuple[str, int], int]:
    """What a source over ``history`` bills for ``[start_ms, until_ms)``, per (account, minute
    start in ms): the demo's check (the tests have an oracle of their own). The first scrape is
    the baseline, a new account counts from zero, a drop counts from zero, a value that is not
    a whole number from 0 to 2**53 is skipped."""
    usage: dict[tuple[str, int], int] = defaultdict(int)
    last: dict[str, int] = {}
    scrapes = [(ms, values) for ms, values in history.scrapes if start_ms <= ms < until_ms]
    for index, (ms, values) in enumerate(scrapes):
        for (account, _pod), text in values.items():
            try:
                number = float(text)
            except ValueError:
                continue
            if not (number.is_integer() and 0 <= number <= 2**53):
                continue
            value = int(number)
            if index:
                before = last.get(account, 0)
                usage[(account, ms // 60_000 * 60_000)] += value - before if value >= before \
                    else value
            last[account] = value
    return {key: count for key, count in usage.items() if count}
