"""Adapters: the real implementations of the ports (AWS, HTTP, system clock)."""
