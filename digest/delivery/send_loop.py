"""The send loop: claim a batch, hand it to the transport message by message, record
every answer, and stop within a second when told to. Each batch is sent by a
:class:`~digest.delivery.batch_sender.BatchSender`; this module claims, reads the controls,
waits out outages and decides when the run is over.

One batch is in flight at a time, shared out over the transport's connections (the
SMTP pool), so a crash can duplicate at most that one batch; the next one is claimed
(leased, not tried) while it is out (digest/delivery/leases.py). Pause, cancel and an
unsubscribe are read between messages, not between batches: the transport asks the
hand-over gate (digest/delivery/handover.py) before every message, so they take effect within
a second plus the messages already in its hands, and the rest of the batch goes back
untouched. While a batch is out, a heartbeat renews its lease; the gate stops handing
out a batch's rows half a lease after the lease was last confirmed, so a worker that
cannot renew (a partition) fences itself before another worker can take the rows over,
and every result is recorded only under the lease it was sent under (digest/delivery/outcomes.py).

The database going away (a restart, a failover, a SQLite file locked past the busy
timeout) is ridden out: the gate shuts, the results in hand stay in memory, the loop
waits for the database with backoff for up to ``DIGEST_DB_OUTAGE_GRACE_SECONDS``,
records them and carries on (digest/store/outage.py). Past the grace it pauses the issue
(when it can still write that) and raises DatabaseUnavailable.

Transient answers go back to the queue with backoff and are retried in the same run;
throttling also slows the shared rate down. An outage of the transport is different
from a transient answer: when no recipient of a chunk reached the server (connection
refused, timeouts across the pool, a Maildir that cannot be written), the rows go back
to the queue untouched — no attempt is spent on them — and the loop waits and tries
again with backoff for up to ``DIGEST_OUTAGE_GRACE_SECONDS``; then it pauses the issue
with the reason, and ``digest resume`` sends them. A long outage therefore never turns
a list into ``failed`` rows.

The pause after ``DIGEST_PAUSE_AFTER_FAILURES`` permanent failures in a row holds
inside a batch too: failures past the threshold are given back to the queue instead of
being recorded (or suppressed), and the send pauses after that batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.delivery.batch_sender import BatchSender, DatabaseTrouble, Outage
from digest.delivery.handover import STATE_POLL_SECONDS, ControlWatch, Why
from digest.delivery.leases import ClaimAhead, Heartbeat
from digest.delivery.queue import (
    Progress,
    SendReport,
    issue_state,
    next_wakeup,
    set_issue_state,
    worker_id,
)
from digest.exceptions import (
    DatabaseUnavailable,
    TransientTransportError,
    TransportConfigError,
)
from digest.mail.message import IssueMessage
from digest.store.models import IssueState
from digest.store.outage import OutageTimer, describe, is_unreachable
from digest.transports.base import OPEN_GATE, Transport

logger = logging.getLogger(__name__)

#: Longest wait between two claims while deliveries are due later (retries, or rows
#: leased by another worker).
POLL_SECONDS = 1.0
#: First wait after an outage; doubles per failed probe.
OUTAGE_FIRST_WAIT = 1.0
#: How a run that stops with deliveries still due later says so (not "stopped short").
PENDING = "deliveries pending"


def outage_reason(error: str) -> str:
    return (
        f"paused: the transport is unreachable ({error[:200]}); nothing was spent on the "
        "unsent deliveries, they stay queued; `digest resume` sends them when it is back"
    )


def database_reason(why: str) -> str:
    return f"paused: {why}; `digest resume` continues the send once it is back"


@dataclass
class _Waits:
    """What one run has waited for so far."""

    max_wait: float
    waited: float = 0.0
    outage_since: float | None = None
    outage_wait: float = OUTAGE_FIRST_WAIT


class SendLoop:
    def __init__(
        self,
        engine: Engine,
        issue_id: int,
        message: IssueMessage,
        transport: Transport,
        settings: Settings,
        progress: Progress | None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.clock = clock
        self.engine = engine
        self.issue_id = issue_id
        self.transport = transport
        self.settings = settings
        self.progress = progress
        self.report = SendReport(week=message.label)
        self.batches = BatchSender(
            engine, message, transport, settings, self.report, self._tick, clock
        )
        self.handover = self.batches.handover
        self.db = OutageTimer(settings.db_outage_grace_seconds, f"issue {message.label}")

    def _tick(self, n: int) -> None:
        if self.progress and n:
            self.progress(n)

    def _nap(self, seconds: float) -> float:
        """Sleep up to ``seconds`` in short steps, ending early when the issue is no
        longer sending (sent by another worker, paused, cancelled); the time slept."""
        start = time.monotonic()
        end = start + seconds
        while (left := end - time.monotonic()) > 0:
            if issue_state(self.engine, self.issue_id) != IssueState.SENDING:
                break
            time.sleep(min(left, STATE_POLL_SECONDS))
        return time.monotonic() - start

    def _wait_for_database(self, exc: BaseException, stop: threading.Event | None) -> None:
        """Nothing goes out until the database answers again (reads and writes); then
        whatever was done meanwhile is recorded. DatabaseUnavailable past the grace."""
        self.handover.db_failed("loop", describe(exc))
        while True:
            try:
                wait = self.db.failed(exc)
            except DatabaseUnavailable as gone:
                raise self._give_up(str(gone)) from None
            if stop is not None and stop.is_set():
                raise self._give_up(f"stopped by a signal while {describe(exc)}") from None
            time.sleep(wait)
            try:
                self.batches.settle()
                issue_state(self.engine, self.issue_id)
            except Exception as again:
                if not is_unreachable(again):
                    raise
                exc = again
                continue
            shut = self.handover.shut()
            if shut is not None and shut.why is Why.DATABASE:
                exc = DatabaseTrouble(shut.reason)
                continue
            self.db.ok()
            return

    def _give_up(self, why: str) -> DatabaseUnavailable:
        """Past the grace: pause the issue if the database takes that write, and say
        what could not be recorded; the error to raise."""
        reason = database_reason(why)
        self.report.stopped = reason
        lost = self.batches.unrecorded_sent
        if lost:
            logger.warning(
                "issue %s: %d messages went out but could not be recorded; their readers "
                "may get a second copy (same Message-ID) when the send is resumed",
                self.report.week,
                lost,
            )
        try:
            set_issue_state(self.engine, self.issue_id, IssueState.PAUSED, reason)
        except Exception as exc:  # down is what we are reporting
            logger.debug("could not pause the issue: %s", describe(exc))
        return DatabaseUnavailable(reason)

    def _step(
        self, ahead: ClaimAhead, beat: Heartbeat, stop: threading.Event | None, waits: _Waits
    ) -> bool:
        """One turn of the loop: settle, read the controls, claim, send. True: done."""
        report = self.report
        self.batches.settle()
        if stop is not None and stop.is_set():
            report.stopped = "worker stopping"
            return True
        state = issue_state(self.engine, self.issue_id)
        if state == IssueState.SENT:
            return True  # another sender of the same issue finished it: not stopped short
        if state != IssueState.SENDING:
            report.stopped = f"issue is {state}"
            return True
        claim = ahead.take()
        report.skipped += claim.skipped
        self._tick(claim.skipped)
        if not claim.recipients:
            if claim.skipped:
                return False
            wait = next_wakeup(self.engine, self.issue_id, self.clock())
            if wait is None:
                set_issue_state(self.engine, self.issue_id, IssueState.SENT)
                return True
            if waits.waited + wait > waits.max_wait:
                report.stopped = f"{PENDING}; the next is due in {wait:.0f}s"
                logger.info("issue %s: %s", report.week, report.stopped)
                return True
            waits.waited += self._nap(min(wait, POLL_SECONDS) + 0.02)
            return False
        report.batches += 1
        beat.lease = claim.lease
        ahead.ahead(claim)  # the next claim runs while this batch is out
        try:
            reason = self.batches.send(claim)
            waits.outage_since, waits.outage_wait = None, OUTAGE_FIRST_WAIT
        except Outage as exc:
            now = time.monotonic()
            waits.outage_since = now if waits.outage_since is None else waits.outage_since
            elapsed = now - waits.outage_since
            if elapsed + waits.outage_wait <= self.settings.outage_grace_seconds:
                logger.warning(
                    "issue %s: transport unreachable (%s); trying again in %.0fs",
                    report.week,
                    exc,
                    waits.outage_wait,
                )
                self.batches.settle()
                self._nap(waits.outage_wait)
                waits.outage_wait *= 2
                return False
            reason = outage_reason(str(exc))
        except TransportConfigError as exc:
            self.batches.settle()
            set_issue_state(self.engine, self.issue_id, IssueState.PAUSED, str(exc))
            report.stopped = str(exc)
            report.errors.append(str(exc))
            raise
        finally:
            beat.lease = None
        if reason:
            self.batches.settle()
            set_issue_state(self.engine, self.issue_id, IssueState.PAUSED, reason)
            report.stopped = reason
            logger.warning("issue %s: %s", report.week, reason)
            return True
        return False

    def run(self, max_wait: float, stop: threading.Event | None = None) -> SendReport:
        report = self.report
        owner = worker_id(self.settings)
        started = time.monotonic()
        try:
            self.transport.open()
        except TransientTransportError as exc:  # e.g. a Maildir that cannot be created
            report.stopped = outage_reason(str(exc))
            set_issue_state(self.engine, self.issue_id, IssueState.PAUSED, report.stopped)
            logger.warning("issue %s: %s", report.week, report.stopped)
            return report
        ahead = ClaimAhead(
            self.engine,
            self.issue_id,
            owner,
            self.settings.batch_size,
            self.settings.lease_seconds,
            self.clock,
            on_claim=lambda claim: self.handover.claimed(claim.lease, claim.claimed_at),
        )
        beat = Heartbeat(self.engine, self.settings.lease_seconds, ahead, self.handover)
        watch = ControlWatch(self.engine, self.issue_id, self.handover)
        waits = _Waits(max_wait)
        try:
            with self.transport, watch, beat, ahead:
                while True:
                    try:
                        if self._step(ahead, beat, stop, waits):
                            break
                    except DatabaseTrouble as exc:
                        self._wait_for_database(exc, stop)
                    except Exception as exc:
                        if not is_unreachable(exc):
                            raise
                        self._wait_for_database(exc, stop)
        finally:
            report.elapsed = time.monotonic() - started
            # The transport may outlive this run (a console's test copy): open again.
            self.transport.handover = OPEN_GATE
        report.skipped += ahead.skipped_on_close
        self._tick(ahead.skipped_on_close)
        logger.info(report.summary())
        return report


def deliver(
    engine: Engine,
    issue_id: int,
    message: IssueMessage,
    transport: Transport,
    settings: Settings,
    *,
    progress: Progress | None = None,
    max_wait: float | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> SendReport:
    """Send every open delivery of ``issue_id``.

    Returns when none is left open; when the issue is paused or cancelled (read
    between messages: within a second) or pauses itself after
    ``DIGEST_PAUSE_AFTER_FAILURES`` permanent failures in a row; or when waiting for
    retries would exceed ``max_wait`` seconds (default: long enough for every attempt
    and for a dead worker's leases to expire; the next run picks up whatever is left). Raises
    :class:`TransportConfigError` (after pausing the issue) when the server refuses the
    login or the sender, and DatabaseUnavailable (after pausing the issue when the
    database takes that write) when the database stayed away past
    ``DIGEST_DB_OUTAGE_GRACE_SECONDS``. ``stop`` (a long-running worker's SIGTERM) ends
    the loop after the batch in hand, which is recorded first.
    """
    if max_wait is None:
        # Long enough for every retry, and for a crashed worker's leases to run out.
        max_wait = settings.max_attempts * settings.retry_max_seconds + 2 * settings.lease_seconds
    loop = SendLoop(engine, issue_id, message, transport, settings, progress, clock)
    return loop.run(max_wait, stop)
