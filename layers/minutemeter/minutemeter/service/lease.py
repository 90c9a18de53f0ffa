"""Holding a source's lease for the length of a run: acquire, heartbeat, check, release."""

from __future__ import annotations

import logging
import threading

from minutemeter.domain.errors import LeaseLostError, MinutemeterError
from minutemeter.domain.lease import heartbeat_interval, must_stop
from minutemeter.ports import Budget, Clock, LeaseGrant, LeaseStore

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """One run's lease on one source.

    ``acquire`` takes the lease (``LeaseHeldError`` if another runner has it) and starts a
    heartbeat thread that renews it every third of its length. ``check`` is called before each
    piece of work: it raises :class:`LeaseLostError` once a renewal was refused, and renews on
    the spot when less than ``margin`` is left by the monotonic clock (a heartbeat that fell
    behind); if that renewal fails too, the run stops. ``release`` frees the lease (the token is
    kept, so it only ever grows).

    With a ``budget``, the heartbeat stops renewing once the budget is spent
    (``remaining_seconds()`` not None and <= 0): a run stuck past its deadline then loses the
    lease when it runs out, another runner may take over, and fencing rejects the stuck run's
    writes, instead of it holding the source for as long as it hangs.
    """

    def __init__(
        self,
        store: LeaseStore,
        clock: Clock,
        source_id: str,
        holder: str,
        *,
        lease_seconds: int,
        margin_seconds: float,
        heartbeat: bool = True,
        budget: Budget | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._source_id = source_id
        self._holder = holder
        self._lease_seconds = lease_seconds
        self._margin = margin_seconds
        self._heartbeat = heartbeat
        self._budget = budget
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._grant: LeaseGrant | None = None
        self._valid_until = 0.0
        self._lost: LeaseLostError | None = None

    @property
    def grant(self) -> LeaseGrant:
        if self._grant is None:
            raise RuntimeError("lease not acquired")
        return self._grant

    @property
    def token(self) -> int:
        return self.grant.token

    def acquire(self) -> LeaseGrant:
        started = self._clock.monotonic()
        grant = self._store.acquire_lease(
            self._source_id,
            self._holder,
            now=self._clock.now(),
            lease_seconds=self._lease_seconds,
            margin_seconds=self._margin,
        )
        with self._lock:
            self._grant = grant
            self._valid_until = started + self._lease_seconds
        if self._heartbeat:
            self._thread = threading.Thread(
                target=self._beat, name=f"lease-{self._source_id}", daemon=True
            )
            self._thread.start()
        logger.info("lease acquired", extra={"source_id": self._source_id, "token": grant.token,
                                             "until": grant.until.isoformat()})
        return grant

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless this run may still write under its token."""
        if self._lost is not None:
            raise self._lost
        if must_stop(self._valid_until, self._clock.monotonic(), self._margin):
            self.renew()

    def renew(self) -> None:
        with self._lock:
            if self._lost is not None:
                raise self._lost
            started = self._clock.monotonic()
            try:
                self._grant = self._store.renew_lease(
                    self.grant, now=self._clock.now(), lease_seconds=self._lease_seconds
                )
            except LeaseLostError as exc:
                self._lost = exc
                raise
            self._valid_until = started + self._lease_seconds

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._grant is None:
            return
        try:
            released = self._store.release_lease(self._grant)
        except MinutemeterError:
            logger.exception("lease release failed; it expires by itself",
                             extra={"source_id": self._source_id})
            return
        if not released:
            logger.warning("lease was no longer ours at release",
                           extra={"source_id": self._source_id, "token": self._grant.token})

    def _beat(self) -> None:
        interval = heartbeat_interval(self._lease_seconds)
        while not self._stop.wait(interval):
            if self._budget_spent():
                logger.warning("budget spent: the heartbeat stops and the lease runs out",
                               extra={"source_id": self._source_id})
                return
            try:
                self.renew()
            except LeaseLostError:
                logger.error("lease lost: another runner took over; this run stops",
                             extra={"source_id": self._source_id})
                return
            except Exception:  # a failed renewal is retried; check() stops the run in time
                logger.exception("lease renewal failed", extra={"source_id": self._source_id})

    def _budget_spent(self) -> bool:
        if self._budget is None:
            return False
        remaining = self._budget.remaining_seconds()
        return remaining is not None and remaining <= 0
