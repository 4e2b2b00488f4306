"""The send loop: claim a batch, send it, record every answer, check the controls.

One batch is in flight at a time, shared out over the transport's connections (the
SMTP pool), so a crash can duplicate at most that one batch; the next one is claimed
(leased, not tried) while it is out (digest/delivery/leases.py). Between batches the loop
reads the issue's state (``digest pause`` / ``cancel`` take effect there), and while a
batch is out a heartbeat thread renews its lease, so only a dead worker's rows are
ever taken over. Transient answers go back to the queue with backoff and are retried
in the same run; throttling also slows the shared rate down.

An outage is different from a transient answer: when no recipient of a chunk reached
the server (connection refused, timeouts across the pool, a Maildir that cannot be
written), the rows go back to the queue untouched — no attempt is spent on them — and
the loop waits and tries again with backoff for up to ``DIGEST_OUTAGE_GRACE_SECONDS``;
then it pauses the issue with the reason, and ``digest resume`` sends them. A long
outage therefore never turns a list into ``failed`` rows.

The pause after ``DIGEST_PAUSE_AFTER_FAILURES`` permanent failures in a row holds
inside a batch too: failures past the threshold are given back to the queue instead of
being recorded (or suppressed), and the send pauses after that batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.core.clock import utcnow
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.delivery.leases import ClaimAhead, Heartbeat
from digest.delivery.limits import SendGate, make_buckets
from digest.delivery.outcomes import hold_back, record_results, release
from digest.delivery.pacing import AdaptivePacer, is_throttle
from digest.delivery.queue import (
    Progress,
    SendReport,
    issue_state,
    next_wakeup,
    set_issue_state,
    worker_id,
)
from digest.exceptions import SendStopped, TransientTransportError, TransportConfigError
from digest.mail.message import IssueMessage
from digest.store.models import IssueState, IssueVariant
from digest.transports.base import SendResult, SendStatus, Transport

logger = logging.getLogger(__name__)

#: Longest wait between two claims while deliveries are due later (retries, or rows
#: leased by another worker).
POLL_SECONDS = 1.0
#: How often a waiting worker reads the issue's state: another worker finishing the
#: issue, a pause or a cancel ends the wait at once rather than at the next claim.
STATE_POLL_SECONDS = 0.1
#: First wait after an outage; doubles per failed probe.
OUTAGE_FIRST_WAIT = 1.0
#: How a run that stops with deliveries still due later says so (not "stopped short").
PENDING = "deliveries pending"


class _Outage(Exception):
    """No recipient of a chunk reached the server; its rows are back in the queue."""


def outage_reason(error: str) -> str:
    return (
        f"paused: the transport is unreachable ({error[:200]}); nothing was spent on the "
        "unsent deliveries, they stay queued; `digest resume` sends them when it is back"
    )


class SendLoop:
    """One sender's run over one issue: claim, send, record, check the controls."""

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
        self.pacer = AdaptivePacer(settings.rate_limit)
        # A pooled transport paces each message itself; others are paced per chunk.
        self.paced_inside = transport.paces_each_message
        if self.paced_inside:
            transport.pacer = self.pacer
        # The limits every worker shares (digest/delivery/limits.py): the global rate is
        # reserved chunk by chunk in a bucket in the database (or Redis), which holds
        # it across processes and machines; the local pacer above still adapts to
        # throttling answers.
        self.gate = SendGate(settings, make_buckets(settings, engine), engine=engine)
        self.consecutive_failed = 0

    def _tick(self, n: int) -> None:
        if self.progress and n:
            self.progress(n)

    def _chunks(self, batch: list[Recipient]) -> list[tuple[int, list[Recipient]]]:
        """Runs of ``batch`` to hand to the transport: one variant each (a transport
        call carries one message), at most a quarter second's worth when paced."""
        size = self.transport.max_batch
        if self.pacer.rate is not None:
            # About a quarter second's worth per call keeps the pace smooth, and the
            # shared bucket is never more than that much ahead.
            size = max(1, min(size, int(self.pacer.rate / 4)))
        chunks: list[tuple[int, list[Recipient]]] = []
        start = 0
        while start < len(batch):
            variant = batch[start].variant_id
            end = start + 1
            while end < len(batch) and end - start < size and batch[end].variant_id == variant:
                end += 1
            chunks.append((start, batch[start:end]))
            start = end
        return chunks

    def _message_for(self, variant_id: int | None) -> IssueMessage:
        """The issue's message, or a reader variant's (compiled once per preference set,
        prepared once per run)."""
        if variant_id not in self.messages:
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

    def _admit(self, batch: list[Recipient]) -> list[Recipient]:
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
            )
            self.report.waiting += held
        return admission.now

    def send_batch(self, batch: list[Recipient]) -> str | None:
        """Send and record one claimed batch; returns a reason when the send must stop."""
        batch = sorted(self._admit(batch), key=lambda r: r.variant_id or 0)
        for start, chunk in self._chunks(batch):
            self.gate.pace(len(chunk))
            if not self.paced_inside:
                self.pacer.acquire(len(chunk))
            try:
                results = self.transport.send_batch(self._message_for(chunk[0].variant_id), chunk)
            except TransientTransportError as exc:
                if exc.retry_after is not None or is_throttle(str(exc)):
                    results = [SendResult.retry(r, str(exc), exc.retry_after) for r in chunk]
                else:  # the transport as a whole failed: nothing reached anyone
                    results = [SendResult.unreachable(r, str(exc)) for r in chunk]
            except SendStopped as exc:
                done = [r for r in exc.results if isinstance(r, SendResult)]
                self._record(done)
                tried = {id(r.recipient) for r in done}
                release(self.engine, [r for r in batch[start:] if id(r) not in tried])
                raise
            except TransportConfigError:
                release(self.engine, batch[start:])
                raise
            if results and all(r.outage for r in results):
                release(self.engine, batch[start:])
                raise _Outage(results[0].error or "the transport is unreachable")
            reason = self._record(results)
            if reason:
                release(self.engine, batch[start + len(chunk) :])
                return reason
        return None

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

    def _record(self, results: list[SendResult]) -> str | None:
        results, held = self._held_back(results)
        release(self.engine, held)
        sent, retried, failed = record_results(self.engine, results, self.settings, self.clock())
        report = self.report
        report.sent += sent
        report.retried += retried
        report.failed += failed
        self._tick(sent + failed)
        throttled = sum(1 for r in results if r.status is SendStatus.RETRY and is_throttle(r.error))
        if throttled:
            report.throttled += throttled
            self.pacer.throttle()
        elif sent:
            self.pacer.success(sent)
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

    def run(self, max_wait: float, stop: threading.Event | None = None) -> SendReport:
        report = self.report
        owner = worker_id(self.settings)
        started = time.monotonic()
        waited = 0.0
        outage_since: float | None = None
        outage_wait = OUTAGE_FIRST_WAIT
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
        )
        beat = Heartbeat(self.engine, self.settings.lease_seconds, ahead)
        with self.transport, beat, ahead:
            while True:
                if stop is not None and stop.is_set():
                    report.stopped = "worker stopping"
                    break
                state = issue_state(self.engine, self.issue_id)
                if state == IssueState.SENT:
                    break  # another sender of the same issue finished it: not stopped short
                if state != IssueState.SENDING:
                    report.stopped = f"issue is {state}"
                    break
                claim = ahead.take()
                report.skipped += claim.skipped
                self._tick(claim.skipped)
                if not claim.recipients:
                    if claim.skipped:
                        continue
                    wait = next_wakeup(self.engine, self.issue_id, self.clock())
                    if wait is None:
                        set_issue_state(self.engine, self.issue_id, IssueState.SENT)
                        break
                    if waited + wait > max_wait:
                        report.stopped = f"{PENDING}; the next is due in {wait:.0f}s"
                        logger.info("issue %s: %s", report.week, report.stopped)
                        break
                    waited += self._nap(min(wait, POLL_SECONDS) + 0.02)
                    continue
                report.batches += 1
                beat.lease = claim.lease
                ahead.ahead(claim)  # the next claim runs while this batch is out
                try:
                    reason = self.send_batch(claim.recipients)
                    outage_since, outage_wait = None, OUTAGE_FIRST_WAIT
                except _Outage as exc:
                    now = time.monotonic()
                    outage_since = now if outage_since is None else outage_since
                    if now - outage_since + outage_wait > self.settings.outage_grace_seconds:
                        reason = outage_reason(str(exc))
                    else:
                        logger.warning(
                            "issue %s: transport unreachable (%s); trying again in %.0fs",
                            report.week,
                            exc,
                            outage_wait,
                        )
                        self._nap(outage_wait)
                        outage_wait *= 2
                        continue
                except TransportConfigError as exc:
                    set_issue_state(self.engine, self.issue_id, IssueState.PAUSED, str(exc))
                    report.stopped = str(exc)
                    report.errors.append(str(exc))
                    report.elapsed = time.monotonic() - started
                    raise
                finally:
                    beat.lease = None
                if reason:
                    set_issue_state(self.engine, self.issue_id, IssueState.PAUSED, reason)
                    report.stopped = reason
                    logger.warning("issue %s: %s", report.week, reason)
                    break
        report.skipped += ahead.skipped_on_close
        self._tick(ahead.skipped_on_close)
        report.elapsed = time.monotonic() - started
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

    Returns when none is left open; when the issue is paused or cancelled (checked
    between batches) or pauses itself after ``DIGEST_PAUSE_AFTER_FAILURES`` permanent
    failures in a row; or when waiting for retries would exceed ``max_wait`` seconds
    (default: long enough for every attempt and for a dead worker's leases to expire;
    the next run picks up whatever is left). Raises
    :class:`TransportConfigError` (after pausing the issue) when the server refuses the
    login or the sender. ``stop`` (a long-running worker's SIGTERM) ends the loop after
    the batch in hand, which is recorded first.
    """
    if max_wait is None:
        # Long enough for every retry, and for a crashed worker's leases to run out.
        max_wait = settings.max_attempts * settings.retry_max_seconds + 2 * settings.lease_seconds
    loop = SendLoop(engine, issue_id, message, transport, settings, progress, clock)
    return loop.run(max_wait, stop)
