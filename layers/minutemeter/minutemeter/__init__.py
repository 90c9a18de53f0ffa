"""minutemeter: cumulative exporter counters to an exactly-once minute ledger."""

__version__ = "0.1.0"
