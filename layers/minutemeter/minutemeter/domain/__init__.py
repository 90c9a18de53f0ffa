"""The pure core: no I/O, no clocks, no environment. Every function takes ``now`` when it needs it."""
