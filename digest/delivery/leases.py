"""The leases a worker holds: the heartbeat that renews them, and the batch claimed
ahead while the current one is out.

A worker's SMTP sessions used to wait while it claimed its next batch (about 7% of a
send on SQLite: 34 ms per 500 rows). :class:`ClaimAhead` makes that claim in a thread
while the batch before it is sent. What stays true:

- Only one batch is ever *sent but not recorded*: the batch claimed ahead is leased,
  not tried, so a worker killed outright still duplicates at most one batch; the rows
  claimed ahead simply wait for their lease to run out, like any dead worker's rows.
- The :class:`Heartbeat` renews both leases (:attr:`ClaimAhead.lease`).
- Pause, cancel and a stop signal are read before the claimed-ahead batch is used; if
  it is not, its rows go back untouched (:meth:`ClaimAhead.close`).
- An unsubscribe still reaches the next batch: just before it is sent, the batch
  claimed ahead is checked again and readers who left are skipped
  (:func:`still_active`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.core.clock import utcnow
from digest.delivery.handover import Background, Handover
from digest.delivery.outcomes import release
from digest.delivery.queue import Claim, S, claim_leased, new_lease, renew_lease, skip_inactive
from digest.store.outage import describe
from digest.store.subscriber_models import SubscriberStatus

logger = logging.getLogger(__name__)


def still_active(engine: Engine, claim: Claim, now: datetime | None = None) -> Claim:
    """``claim`` as it stands now: recipients who left since it was made are skipped,
    as they would have been had the batch been claimed now."""
    ids = {r.subscriber_id for r in claim.recipients}
    if not ids:
        return claim
    with engine.begin() as conn:
        active = set(
            conn.execute(
                select(S.c.id).where(S.c.id.in_(ids), S.c.status == SubscriberStatus.ACTIVE.value)
            ).scalars()
        )
        gone = [r.delivery_id for r in claim.recipients if r.subscriber_id not in active]
        skip_inactive(conn, [i for i in gone if i is not None], now or utcnow())
    if not gone:
        return claim
    kept = [r for r in claim.recipients if r.subscriber_id in active]
    return Claim(kept, claim.skipped + len(gone), claim.lease, claim.claimed_at)


class ClaimAhead:
    """Claims for one worker on one issue: :meth:`take` the batch to send now (the one
    claimed ahead when there is one), :meth:`ahead` to start claiming the next."""

    def __init__(
        self,
        engine: Engine,
        issue_id: int,
        owner: str,
        size: int,
        lease_seconds: int,
        clock: Callable[[], datetime],
        on_claim: Callable[[Claim], None] | None = None,
    ) -> None:
        self.engine = engine
        #: told of every batch leased (the hand-over gate starts vouching for it)
        self.on_claim = on_claim
        self.issue_id = issue_id
        self.owner = owner
        self.size = size
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._next: Future[Claim] | None = None
        self._next_lease: str | None = None
        #: rows of the batch given back by :meth:`close` that were skipped (final)
        self.skipped_on_close = 0

    def __enter__(self) -> ClaimAhead:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _claim(self, lease: str | None = None) -> Claim:
        claim = claim_leased(
            self.engine,
            self.issue_id,
            self.owner,
            self.size,
            self.lease_seconds,
            self.clock(),
            lease=lease,
        )
        if self.on_claim is not None and (claim.recipients or claim.skipped):
            self.on_claim(claim)
        return claim

    @property
    def lease(self) -> str | None:
        """The lease of the batch being claimed or held ahead (the heartbeat renews it)."""
        return self._next_lease

    def take(self) -> Claim:
        """The batch to send now."""
        if self._next is None:
            return self._claim()
        future, self._next, self._next_lease = self._next, None, None
        claim = still_active(self.engine, future.result(), self.clock())
        if claim.recipients or claim.skipped:
            return claim
        # Claimed ahead and found nothing: rows may have come due since; look again.
        return self._claim()

    def ahead(self, claim: Claim) -> None:
        """Start claiming the batch after ``claim`` when ``claim`` was a full one (a
        short one means the queue is drained for now: nothing to claim ahead)."""
        if self._next is not None or len(claim.recipients) + claim.skipped < self.size:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="claim-ahead")
        self._next_lease = new_lease(self.owner)
        self._next = self._pool.submit(self._claim, self._next_lease)

    def close(self) -> None:
        """Give a batch claimed ahead and not taken back, untouched (its skipped rows
        are final: :attr:`skipped_on_close` counts them)."""
        future, self._next, self._next_lease = self._next, None, None
        if future is not None:
            try:
                claim = future.result()
                release(self.engine, claim.recipients, lease=claim.lease)
            except Exception as exc:
                # The rows were not leased, or their lease runs out by itself and they
                # go back to the queue then: worth a line, never a traceback.
                logger.warning("the batch claimed ahead was not given back: %s", describe(exc))
            else:
                self.skipped_on_close += claim.skipped
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class Heartbeat(Background):
    """Renews the leases this worker holds (``handover.held()``: the batch being sent
    and any batch not yet settled) and the lease of the batch claimed ahead, every
    quarter of their length, in a thread; each renewal that lands is reported to the
    hand-over gate, which stops handing a lease's rows over half a lease after its last
    confirmation (digest/delivery/handover.py). A failed renewal is tried again within a second."""

    def __init__(
        self,
        engine: Engine,
        lease_seconds: int,
        ahead: ClaimAhead | None = None,
        handover: Handover | None = None,
    ) -> None:
        super().__init__("lease-heartbeat")
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.lease: str | None = None
        self.ahead = ahead
        self.handover = handover

    def _held(self) -> list[str]:
        leases = [self.lease, self.ahead.lease if self.ahead is not None else None]
        if self.handover is not None:
            leases += self.handover.held()
        return list(dict.fromkeys(lease for lease in leases if lease is not None))

    def _run(self) -> None:
        every = max(self.lease_seconds / 4, 0.2)
        wait, failing = every, False
        while not self._halt.wait(wait):
            held = self._held()
            if not held:
                continue
            started = time.monotonic()
            try:
                renew_lease(self.engine, held, self.lease_seconds)
            except Exception as exc:  # the heartbeat must outlive any error
                # The gate stops handing these rows over before the lease can run out.
                # Said once per outage; tried again every second meanwhile.
                log = logger.debug if failing else logger.warning
                log("could not renew leases %s: %s", ", ".join(held), describe(exc))
                wait, failing = min(every, 1.0), True
                continue
            wait, failing = every, False
            if self.handover is not None:
                self.handover.renewed(held, started)
