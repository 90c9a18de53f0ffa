"""Typed errors. Handlers and the CLI map these types to statuses; never match on message text."""

from __future__ import annotations


class MinutemeterError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(MinutemeterError):
    """A setting or a source configuration is invalid."""


class InputError(MinutemeterError):
    """An operator's or caller's input is invalid (bad flag, malformed time, ...)."""


class SourceNotFoundError(MinutemeterError):
    """No source with this id is registered."""

    def __init__(self, source_id: str) -> None:
        super().__init__(f"source {source_id!r} is not registered")
        self.source_id = source_id


class SourceDisabledError(MinutemeterError):
    """The source exists but is disabled."""

    def __init__(self, source_id: str) -> None:
        super().__init__(f"source {source_id!r} is disabled")
        self.source_id = source_id


class ExporterError(MinutemeterError):
    """The exporter could not be read (transport failure, non-2xx after retries)."""


class SourceProtocolError(ExporterError):
    """The exporter broke the window API contract; ``field`` and ``value`` say where."""

    def __init__(self, message: str, *, field: str, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class StoreError(MinutemeterError):
    """A storage call failed in a way the service cannot resolve by itself."""


class ConcurrentUpdateError(StoreError):
    """An optimistic update kept losing to other writers; the run can be retried safely."""


class DeadlineError(MinutemeterError):
    """Not enough time is left before the invocation deadline to start more work."""


class QuotaConflictError(StoreError):
    """Another writer changed the quota item between our read and our reservation."""


class LeaseHeldError(MinutemeterError):
    """Another runner holds the source's lease: this run is skipped, not failed."""

    def __init__(self, source_id: str, holder: str | None, until: str | None) -> None:
        super().__init__(f"source {source_id!r} is leased by {holder!r} until {until}")
        self.source_id = source_id
        self.holder = holder
        self.until = until


class LeaseLostError(MinutemeterError):
    """This runner's lease was taken over (or could not be renewed in time): it must not commit.

    Raised by every fenced write whose fencing token is no longer the source's current one.
    """

    def __init__(self, source_id: str, token: int, detail: str = "") -> None:
        text = f"lease on source {source_id!r} with token {token} is no longer ours"
        super().__init__(f"{text}: {detail}" if detail else text)
        self.source_id = source_id
        self.token = token


class UnknownSinkError(InputError):
    """No billing sink with this name is registered (a bad argument: exit 2)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"sink {name!r} is not registered")
        self.name = name
