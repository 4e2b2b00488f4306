"""The send loop: claim a batch, hand it to the transport message by message, record
every answer, and stop within a second when told to.

One batch is in flight at a time, shared out over the transport's connections (the
SMTP pool), so a crash can duplicate at most that one batch; the next one is claimed
(leased, not tried) while it is out (digest/leases.py). Pause, cancel and an
unsubscribe are read between messages, not between batches: the transport asks the
hand-over gate (digest/handover.py) before every message, so they take effect within
a second plus the messages already in its hands, and the rest of the batch goes back
untouched. While a batch is out, a heartbeat renews its lease; the gate stops handing
out a batch's rows half a lease after the lease was last confirmed, so a worker that
cannot renew (a partition) fences itself before another worker can take the rows over,
and every result is recorded only under the lease it was sent under (digest/outcomes.py).

The database going away (a restart, a failover, a SQLite file locked past the busy
timeout) is ridden out: the gate shuts, the results in hand stay in memory, the loop
waits for the database with backoff for up to ``DIGEST_DB_OUTAGE_GRACE_SECONDS``,
records them and carries on (digest/db_outage.py). Past the grace it pauses the issue
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
from sqlmodel import Session

from digest.config import Settings
from digest.db_outage import OutageTimer, describe, is_unreachable
from digest.delivery import (
    Claim,
    Progress,
    SendReport,
    issue_state,
    next_wakeup,
    set_issue_state,
    skip_inactive,
    worker_id,
)
from digest.exceptions import (
    DatabaseUnavailable,
    SendStopped,
    TransientTransportError,
    TransportConfigError,
)
from digest.handover import STATE_POLL_SECONDS, ControlWatch, Handover, Why
from digest.leases import ClaimAhead, Heartbeat
from digest.message import IssueMessage, Recipient
from digest.models import IssueState
from digest.outcomes import hold_back, record_results, release
from digest.ratelimit import RateLimiter, is_throttle
from digest.scale.limits import SendGate, make_buckets
from digest.timeutil import utcnow
from digest.transports.base import SendResult, SendStatus, Transport

logger = logging.getLogger(__name__)

#: Longest wait between two claims while deliveries are due later (retries, or rows
#: leased by another worker).
POLL_SECONDS = 1.0
#: First wait after an outage; doubles per failed probe.
OUTAGE_FIRST_WAIT = 1.0
#: How a run that stops with deliveries still due later says so (not "stopped short").
PENDING = "deliveries pending"


class _Outage(Exception):
    """No recipient of a chunk reached the server; its rows are back in the queue."""


class _DatabaseTrouble(Exception):
    """The gate shut because the database does not answer: wait for it."""


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


class _Loop:
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
        self.message = message
        self.transport = transport
        self.settings = settings
        self.progress = progress
        self.report = SendReport(week=message.label)
        self.messages: dict[int | None, IssueMessage] = {None: message}
        self.limiter = RateLimiter(settings.rate_limit)
        # Asked before every message: pause, cancel, unsubscribes, the database, the lease.
        self.handover = Handover(settings.lease_seconds)
        transport.handover = self.handover
        # A pooled transport paces each message itself; others are paced per chunk.
        self.paced_inside = hasattr(transport, "rate_limiter")
        if self.paced_inside:
            transport.rate_limiter = self.limiter  # type: ignore[attr-defined]
        # The limits every worker shares (digest/scale/limits.py): the global rate is
        # reserved chunk by chunk in a bucket in the database (or Redis), which holds
        # it across processes and machines; the local limiter above still adapts to
        # throttling answers. Its waits end early when the gate shuts.
        self.gate = SendGate(
            settings, make_buckets(settings, engine), engine=engine, sleep=self.handover.sleep
        )
        self.consecutive_failed = 0
        self.db = OutageTimer(settings.db_outage_grace_seconds, f"issue {message.label}")
        # What is done but not yet written, by lease: kept across a database outage.
        self.unrecorded: list[tuple[str, list[SendResult]]] = []
        self.to_skip: list[tuple[str, list[Recipient]]] = []
        self.to_release: list[tuple[str, list[Recipient]]] = []
        self.finished: list[str] = []

    def _tick(self, n: int) -> None:
        if self.progress and n:
            self.progress(n)

    def _chunk(self, rest: list[Recipient]) -> list[Recipient]:
        """The next run of ``rest`` to hand to the transport: one variant (a transport
        call carries one message), at most a quarter second's worth when paced."""
        size = self.transport.max_batch
        if self.limiter.rate is not None:
            # About a quarter second's worth per call keeps the pace smooth, and the
            # shared bucket is never more than that much ahead.
            size = max(1, min(size, int(self.limiter.rate / 4)))
        variant = rest[0].variant_id
        end = 1
        while end < len(rest) and end < size and rest[end].variant_id == variant:
            end += 1
        return rest[:end]

    def _message_for(self, variant_id: int | None) -> IssueMessage:
        """The issue's message, or a reader variant's (compiled once per preference set,
        prepared once per run)."""
        if variant_id not in self.messages:
            from digest.models import IssueVariant

            with Session(self.engine) as session:
                variant = session.get(IssueVariant, variant_id)
            if variant is None:
                raise LookupError(f"issue variant {variant_id} is gone")
            self.messages[variant_id] = IssueMessage(
                issue_id=self.message.issue_id,
                week=self.message.week,
                number=self.message.number,
                subject=variant.subject,
                html=variant.html,
                text=variant.text,
                settings=self.settings,
                date=self.message.date,
            )
        return self.messages[variant_id]

    def _admit(self, batch: list[Recipient], lease: str) -> list[Recipient]:
        """Who of a claimed batch may go now; the rest wait (domain limits, warm-up)."""
        if not self.gate.active:
            return batch
        admission = self.gate.admit(batch)
        if admission.later:
            held = hold_back(
                self.engine,
                admission.later,
                "waiting: a recipient-domain limit (DIGEST_DOMAIN_LIMITS) or the day's "
                "warm-up allowance (DIGEST_WARMUP)",
                self.clock(),
                lease=lease,
            )
            self.report.waiting += held
        return admission.now

    def send_batch(self, claim: Claim) -> str | None:
        """Hand one claimed batch over, message by message while the gate is open, and
        record every answer; what was not handed over goes back to the queue. Returns a
        reason when the send must pause."""
        lease = claim.lease
        self.handover.claimed(lease, claim.claimed_at)
        self.handover.lease = lease
        rest = list(claim.recipients)
        reason = None
        try:
            rest = sorted(self._admit(rest, lease), key=lambda r: r.variant_id or 0)
            while rest:
                shut = self.handover.shut()
                if shut is not None:
                    if shut.why is Why.DATABASE:
                        raise _DatabaseTrouble(shut.reason)
                    logger.info("issue %s: %s; the batch goes back", self.report.week, shut.reason)
                    if shut.why is Why.STOP:
                        time.sleep(STATE_POLL_SECONDS)  # the loop's next read sees it too
                    break
                chunk = self._chunk(rest)
                left = [r for r in chunk if self.handover.gone(r.delivery_id)]
                if left:  # unsubscribed since the claim: never handed over
                    self.to_skip.append((lease, left))
                    rest = [r for r in rest if r not in left]
                    continue
                self.gate.pace(len(chunk))
                if not self.paced_inside:
                    self.limiter.acquire(len(chunk), sleep=self.handover.sleep)
                if self.handover.shut() is not None:
                    continue
                results = self._hand_over(lease, chunk, rest)
                rest = rest[len(chunk) :]
                untried = [r.recipient for r in results if r.untried]
                results = [r for r in results if not r.untried]
                if results and all(r.outage for r in results):
                    rest = [r.recipient for r in results] + untried + rest
                    raise _Outage(results[0].error or "the transport is unreachable")
                left = [r for r in untried if self.handover.gone(r.delivery_id)]
                if left:
                    self.to_skip.append((lease, left))
                rest = [r for r in untried if not self.handover.gone(r.delivery_id)] + rest
                reason = self._keep(lease, results)
                self._settle()
                if reason:
                    break
        finally:
            self.handover.lease = None
            if rest:
                self.to_release.append((lease, rest))
            self.finished.append(lease)
        self._settle()
        return reason

    def _hand_over(
        self, lease: str, chunk: list[Recipient], rest: list[Recipient]
    ) -> list[SendResult]:
        """The transport's results for ``chunk``; a refused login or sender keeps what
        was done and stops the send (``rest`` then holds only what was not tried)."""
        try:
            return self.transport.send_batch(self._message_for(chunk[0].variant_id), chunk)
        except TransientTransportError as exc:
            if exc.retry_after is not None or is_throttle(str(exc)):
                return [SendResult.retry(r, str(exc), exc.retry_after) for r in chunk]
            # the transport as a whole failed: nothing reached anyone
            return [SendResult.unreachable(r, str(exc)) for r in chunk]
        except SendStopped as exc:
            done = [r for r in exc.results if isinstance(r, SendResult)]
            tried = {id(r.recipient) for r in done}
            rest[:] = [r for r in rest if id(r) not in tried]
            self._keep(lease, done)
            raise

    def _held_back(self, results: list[SendResult]) -> tuple[list[SendResult], list[Recipient]]:
        """Split off the permanent failures past the pause threshold: they go back to
        the queue unrecorded (the server refusing everything is not a verdict on them)."""
        count, limit = self.consecutive_failed, self.settings.pause_after_failures
        keep: list[SendResult] = []
        held: list[Recipient] = []
        for result in results:
            if count >= limit and result.status is SendStatus.FAILED:
                held.append(result.recipient)
                continue
            keep.append(result)
            if result.status is SendStatus.FAILED:
                count += 1
            elif result.status is SendStatus.SENT:
                count = 0
        return keep, held

    def _keep(self, lease: str, results: list[SendResult]) -> str | None:
        """Take in a chunk's results (pace, failure streak) and queue them to be
        recorded; returns a reason when the send must pause."""
        results, held = self._held_back(results)
        if held:
            self.to_release.append((lease, held))
        self.unrecorded.append((lease, results))
        throttled = sum(1 for r in results if r.status is SendStatus.RETRY and is_throttle(r.error))
        sent = sum(1 for r in results if r.status is SendStatus.SENT)
        if throttled:
            self.report.throttled += throttled
            self.limiter.throttle()
        elif sent:
            self.limiter.success(sent)
        last_error = ""
        for result in results:
            if result.status is SendStatus.FAILED:
                self.consecutive_failed += 1
                last_error = result.error or ""
            elif result.status is SendStatus.SENT:
                self.consecutive_failed = 0
        limit = self.settings.pause_after_failures
        if self.consecutive_failed >= limit:
            return (
                f"paused after {self.consecutive_failed} permanent failures in a row "
                f"(last: {last_error[:200]}); check the list or the server, then "
                "`digest resume`"
            )
        return None

    def _settle(self) -> None:
        """Write what is done: results (under their lease), readers who left, rows given
        back. Raises on a database error with everything not yet written kept."""
        report = self.report
        while self.unrecorded:
            lease, results = self.unrecorded[0]
            sent, retried, failed = record_results(
                self.engine, results, self.settings, self.clock(), lease=lease
            )
            self.unrecorded.pop(0)
            report.sent += sent
            report.retried += retried
            report.failed += failed
            self._tick(sent + failed)
        while self.to_skip:
            lease, left = self.to_skip[0]
            with self.engine.begin() as conn:
                ids = [r.delivery_id for r in left if r.delivery_id is not None]
                skip_inactive(conn, ids, self.clock(), lease)
            self.to_skip.pop(0)
            report.skipped += len(left)
            self._tick(len(left))
        while self.to_release:
            lease, rows = self.to_release[0]
            release(self.engine, rows, lease=lease)
            self.to_release.pop(0)
        for lease in self.finished:
            self.handover.forget(lease)
        self.finished.clear()
        self.handover.db_ok("loop")

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
                self._settle()
                issue_state(self.engine, self.issue_id)
            except Exception as again:
                if not is_unreachable(again):
                    raise
                exc = again
                continue
            shut = self.handover.shut()
            if shut is not None and shut.why is Why.DATABASE:
                exc = _DatabaseTrouble(shut.reason)
                continue
            self.db.ok()
            return

    def _give_up(self, why: str) -> DatabaseUnavailable:
        """Past the grace: pause the issue if the database takes that write, and say
        what could not be recorded; the error to raise."""
        reason = database_reason(why)
        self.report.stopped = reason
        lost = sum(
            1 for _, results in self.unrecorded for r in results if r.status is SendStatus.SENT
        )
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
        self._settle()
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
            reason = self.send_batch(claim)
            waits.outage_since, waits.outage_wait = None, OUTAGE_FIRST_WAIT
        except _Outage as exc:
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
                self._settle()
                self._nap(waits.outage_wait)
                waits.outage_wait *= 2
                return False
            reason = outage_reason(str(exc))
        except TransportConfigError as exc:
            self._settle()
            set_issue_state(self.engine, self.issue_id, IssueState.PAUSED, str(exc))
            report.stopped = str(exc)
            report.errors.append(str(exc))
            raise
        finally:
            beat.lease = None
        if reason:
            self._settle()
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
                    except _DatabaseTrouble as exc:
                        self._wait_for_database(exc, stop)
                    except Exception as exc:
                        if not is_unreachable(exc):
                            raise
                        self._wait_for_database(exc, stop)
        finally:
            report.elapsed = time.monotonic() - started
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
    between messages: within a second) or pauses itself after ``DIGEST_PAUSE_AFTER_FAILURES`` permanent
    failures in a row; or when waiting for retries would exceed ``max_wait`` seconds
    (default: long enough for every attempt and for a dead worker's leases to expire;
    the next run picks up whatever is left). Raises
    :class:`TransportConfigError` (after pausing the issue) when the server refuses the
    login or the sender, and DatabaseUnavailable (after pausing the issue when the
    database takes that write) when the database stayed away past
    ``DIGEST_DB_OUTAGE_GRACE_SECONDS``. ``stop`` (a long-running worker's SIGTERM) ends
    the loop after the batch in hand, which is recorded first.
    """
    if max_wait is None:
        # Long enough for every retry, and for a crashed worker's leases to run out.
        max_wait = settings.max_attempts * settings.retry_max_seconds + 2 * settings.lease_seconds
    loop = _Loop(engine, issue_id, message, transport, settings, progress, clock)
    return loop.run(max_wait, stop)
