"""The hand-over gate: whether the send loop may give the transport one more message.

Pause, cancel and an unsubscribe are read between messages, not between batches
(DESIGN.md §4.5). A transport asks :meth:`Handover.allows` before every message (the
SMTP pool before each session's next transaction; an API transport before each
request), so a stop takes effect within :data:`STATE_POLL_SECONDS` plus the messages
already in the transport's hands (at most one per SMTP connection or one provider
request), whatever the batch size and the rate. The rest of the claimed batch goes back
to the queue untouched, no attempt spent.

The gate is shut by:

- **the controls**: :class:`ControlWatch` reads the issue's state every
  :data:`STATE_POLL_SECONDS` (a pause, a cancel, another sender finishing it) and, every
  :data:`GONE_POLL_SECONDS`, which readers of the rows this worker holds are no longer
  active (an unsubscribe: only those readers are refused);
- **the database**: a failed read or write, or no answer for :data:`STALE_SECONDS` (a
  partition: the call hangs rather than fails). A worker that cannot record results
  stops handing out mail until it can (digest/store/outage.py);
- **the lease (self-fencing)**: a batch's rows go out only while its lease is known to
  be held: a lease is confirmed when it is claimed and each time the heartbeat renews it,
  and past :data:`FENCE_FRACTION` of ``DIGEST_LEASE_SECONDS`` after its last
  confirmation the rows are the worker's no longer. Another worker can take them over
  only once the lease has run out, so the two never send the same rows at the same
  time; the half lease left is the margin for the messages already handed over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Self

from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.core.recipient import Recipient
from digest.delivery.queue import D, I, S
from digest.store.models import DeliveryState, IssueState
from digest.store.outage import describe, is_unreachable
from digest.store.subscriber_models import SubscriberStatus

logger = logging.getLogger(__name__)

#: How often the issue's state is read while a send runs.
STATE_POLL_SECONDS = 0.1
#: How often the readers of the held rows are checked for unsubscribes.
GONE_POLL_SECONDS = 0.5
#: A database that has not answered the state read for this long is treated as gone
#: (a partition: the call hangs rather than fails; a restart fails at once).
STALE_SECONDS = 2.0
#: Rows of a lease are handed over only this share of DIGEST_LEASE_SECONDS after the
#: lease was last confirmed (claimed or renewed).
FENCE_FRACTION = 0.5


class Why(StrEnum):
    """Why the gate is shut."""

    #: paused, cancelled, or sent by another worker: for the rest of this run
    STOP = "stop"
    #: the database cannot be reached (or did not answer): until it answers again
    DATABASE = "database"
    #: the current batch's lease can no longer be vouched for: for that batch
    LEASE = "lease"


@dataclass(frozen=True)
class Shut:
    why: Why
    reason: str


class Handover:
    """The gate's state. Thread-safe: written by the watch, the heartbeat and the loop,
    read by the transport's sessions before every message."""

    def __init__(self, lease_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stop: str | None = None
        #: database trouble by who saw it ("watch", "loop"); each clears its own
        self._db: dict[str, str] = {}
        self._fresh_until = float("inf")
        self._confirmed: dict[str, float] = {}
        self._lost: set[str] = set()
        self._gone: set[int] = set()
        #: the lease of the batch being handed over now
        self.lease: str | None = None

    # ------------------------------------------------------------ written by the others

    def stop(self, reason: str) -> None:
        with self._lock:
            self._stop = self._stop or reason
        self._changed.set()

    def db_failed(self, source: str, reason: str) -> None:
        with self._lock:
            self._db[source] = reason
        self._changed.set()

    def db_ok(self, source: str) -> None:
        with self._lock:
            self._db.pop(source, None)

    def answered(self, at: float) -> None:
        """The watch heard from the database (its read started at ``at``)."""
        with self._lock:
            self._fresh_until = at + STALE_SECONDS
            self._db.pop("watch", None)

    def claimed(self, lease: str, at: float) -> None:
        """A batch was leased by a claim that started at ``at`` (monotonic)."""
        with self._lock:
            self._confirmed[lease] = max(self._confirmed.get(lease, at), at)

    def renewed(self, leases: Collection[str], at: float) -> None:
        """The heartbeat renewed ``leases`` in a statement that started at ``at``.

        A renewal that lands after a lease's fence (the database was away) vouches for
        nothing: some of its rows may have been taken over meanwhile, and the renewal
        only extended the rest, so the lease stays lost and its batch goes back."""
        fence = self.lease_seconds * FENCE_FRACTION
        with self._lock:
            for lease in leases:
                confirmed = self._confirmed.get(lease)
                if confirmed is None or lease in self._lost:
                    continue
                if at > confirmed + fence:
                    self._lost.add(lease)
                else:
                    self._confirmed[lease] = max(confirmed, at)

    def forget(self, lease: str) -> None:
        """The batch of ``lease`` is settled: nothing of it is held any more."""
        with self._lock:
            self._confirmed.pop(lease, None)
            self._lost.discard(lease)

    def left(self, delivery_ids: Collection[int]) -> None:
        """These held rows' readers are no longer active: never hand them over."""
        with self._lock:
            self._gone.update(delivery_ids)

    # ------------------------------------------------------------ read by everyone

    def held(self) -> list[str]:
        """The leases whose rows this worker holds (the heartbeat renews them)."""
        with self._lock:
            return [lease for lease in self._confirmed if lease not in self._lost]

    def gone(self, delivery_id: int | None) -> bool:
        with self._lock:
            return delivery_id in self._gone

    def shut(self) -> Shut | None:
        """Why nothing may be handed over now, or None."""
        with self._lock:
            if self._stop is not None:
                return Shut(Why.STOP, self._stop)
            for reason in self._db.values():
                return Shut(Why.DATABASE, reason)
            now = self.clock()
            if now > self._fresh_until:
                quiet = now - self._fresh_until + STALE_SECONDS
                return Shut(Why.DATABASE, f"the database has not answered for {quiet:.1f}s")
            lease = self.lease
            if lease is None:
                return None
            if lease in self._lost:
                return Shut(Why.LEASE, f"lease {lease} is no longer held")
            confirmed = self._confirmed.get(lease)
            if confirmed is not None and now > confirmed + self.lease_seconds * FENCE_FRACTION:
                self._lost.add(lease)
                logger.warning(
                    "lease %s not renewed for %.0fs: its rows are no longer handed over",
                    lease,
                    now - confirmed,
                )
                return Shut(Why.LEASE, f"lease {lease} is no longer held")
        return None

    def is_open(self) -> bool:
        return self.shut() is None

    def allows(self, recipient: Recipient) -> bool:
        return self.shut() is None and not self.gone(recipient.delivery_id)

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; ends early (False) once the gate shuts."""
        end = self.clock() + seconds
        while (left := end - self.clock()) > 0:
            if self.shut() is not None:
                return False
            self._changed.wait(min(left, STATE_POLL_SECONDS / 2))
            self._changed.clear()
        return self.shut() is None


class Background:
    """A daemon thread that runs :meth:`_run` while the ``with`` block lasts; ``_run``
    loops until ``_halt`` is set."""

    #: how long leaving the block waits for the thread; a call stuck on a partitioned
    #: connection ends with the socket's own timeout, and the thread holds nothing the
    #: loop needs
    join_seconds = 2.0

    def __init__(self, name: str) -> None:
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._halt.set()
        self._thread.join(timeout=self.join_seconds)


class ControlWatch(Background):
    """A thread that reads the issue's state and the held readers' status while the
    loop sends, and shuts the :class:`Handover` gate accordingly."""

    def __init__(self, engine: Engine, issue_id: int, handover: Handover) -> None:
        super().__init__("control-watch")
        self.engine = engine
        self.issue_id = issue_id
        self.handover = handover

    def _look(self, gone_too: bool) -> tuple[str, list[int]]:
        with self.engine.connect() as conn:
            state = conn.execute(select(I.c.state).where(I.c.id == self.issue_id)).scalar_one()
            held = self.handover.held() if gone_too else []
            if not held:
                return str(state), []
            gone = conn.execute(
                select(D.c.id)
                .join(S, S.c.id == D.c.subscriber_id)
                .where(
                    D.c.lease_owner.in_(held),
                    D.c.state == DeliveryState.SENDING.value,
                    S.c.status != SubscriberStatus.ACTIVE.value,
                )
            ).scalars()
            return str(state), list(gone)

    def _run(self) -> None:
        last_gone = float("-inf")
        while not self._halt.wait(STATE_POLL_SECONDS):
            started = time.monotonic()
            gone_too = started - last_gone >= GONE_POLL_SECONDS
            try:
                state, gone = self._look(gone_too)
            except Exception as exc:  # the watch must outlive any error
                if is_unreachable(exc):
                    self.handover.db_failed("watch", describe(exc))
                else:
                    logger.warning("control watch: %s", describe(exc))
                continue
            if gone_too:
                last_gone = started
            self.handover.answered(started)
            if state != IssueState.SENDING:
                self.handover.stop(f"issue is {state}")
            if gone:
                self.handover.left(gone)

    def __enter__(self) -> Self:
        self.handover.answered(time.monotonic())
        return super().__enter__()
