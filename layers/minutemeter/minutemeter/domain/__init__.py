"""The pure core: no I/O, no clocks, no environment; ``now`` is always an argument."""
