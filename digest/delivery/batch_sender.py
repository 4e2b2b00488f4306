"""One claimed batch, handed to the transport message by message while the gate is
open, and what became of it written under the batch's lease.

The send loop (:mod:`digest.delivery.send_loop`) claims batches and decides when to stop; a
:class:`BatchSender` sends each one: it cuts the batch into chunks for the transport
(one variant each, a quarter second's worth when paced), asks the hand-over gate
(:mod:`digest.delivery.handover`) before each chunk (the transport asks before each message),
and keeps every result, every reader who left and every row not handed over until they
are written (:meth:`BatchSender.settle`). A database that fails a write keeps them in
memory: the loop waits for it and settles again (digest/store/outage.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.delivery.handover import STATE_POLL_SECONDS, Handover, Why
from digest.delivery.limits import SendGate, make_buckets
from digest.delivery.outcomes import hold_back, record_results, release
from digest.delivery.pacing import AdaptivePacer, is_throttle
from digest.delivery.queue import Claim, SendReport, skip_inactive
from digest.exceptions import SendStopped, TransientTransportError
from digest.mail.message import IssueMessage
from digest.transports.base import SendResult, SendStatus, Transport

logger = logging.getLogger(__name__)


class Outage(Exception):
    """No recipient of a chunk reached the server; its rows are back in the queue."""


class DatabaseTrouble(Exception):
    """The gate shut because the database does not answer: wait for it."""


class BatchSender:
    """Sends the batches of one run of the send loop; see the module doc."""

    def __init__(
        self,
        engine: Engine,
        message: IssueMessage,
        transport: Transport,
        settings: Settings,
        report: SendReport,
        tick: Callable[[int], None],
        clock: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        self.message = message
        self.transport = transport
        self.settings = settings
        self.report = report
        self._tick = tick
        self.clock = clock
        self.messages: dict[int | None, IssueMessage] = {None: message}
        self.pacer = AdaptivePacer(settings.rate_limit)
        # Asked before every message: pause, cancel, unsubscribes, the database, the lease.
        self.handover = Handover(settings.lease_seconds)
        transport.handover = self.handover
        # A pooled transport paces each message itself; others are paced per chunk.
        self.paced_inside = transport.paces_each_message
        if self.paced_inside:
            transport.pacer = self.pacer
        # The limits every worker shares (digest/scale/limits.py): the global rate is
        # reserved chunk by chunk in a bucket in the database (or Redis), which holds
        # it across processes and machines; the local pacer above still adapts to
        # throttling answers. Its waits end early when the gate shuts.
        self.gate = SendGate(
            settings, make_buckets(settings, engine), engine=engine, sleep=self.handover.sleep
        )
        self.consecutive_failed = 0
        # What is done but not yet written, by lease: kept across a database outage.
        self.unrecorded: list[tuple[str, list[SendResult]]] = []
        self.to_skip: list[tuple[str, list[Recipient]]] = []
        self.to_release: list[tuple[str, list[Recipient]]] = []
        self.finished: list[str] = []

    @property
    def unrecorded_sent(self) -> int:
        """Messages that went out and are not written yet."""
        return sum(1 for _, rs in self.unrecorded for r in rs if r.status is SendStatus.SENT)

    def _chunk(self, rest: list[Recipient]) -> list[Recipient]:
        """The next run of ``rest`` to hand to the transport: one variant (a transport
        call carries one message), at most a quarter second's worth when paced."""
        size = self.transport.max_batch
        if self.pacer.rate is not None:
            # About a quarter second's worth per call keeps the pace smooth, and the
            # shared bucket is never more than that much ahead.
            size = max(1, min(size, int(self.pacer.rate / 4)))
        variant = rest[0].variant_id
        end = 1
        while end < len(rest) and end < size and rest[end].variant_id == variant:
            end += 1
        return rest[:end]

    def _message_for(self, variant_id: int | None) -> IssueMessage:
        """The issue's message, or a reader variant's (compiled once per preference set,
        prepared once per run)."""
        if variant_id not in self.messages:
            from digest.store.models import IssueVariant

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

    def send(self, claim: Claim) -> str | None:
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
                        raise DatabaseTrouble(shut.reason)
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
                # A wait cut short by the gate must not let the chunk go early when the
                # gate opens again at once: the chunk waits its turn anew.
                if not self.gate.pace(len(chunk)):
                    continue
                if not self.paced_inside and not self.pacer.acquire(
                    len(chunk), sleep=self.handover.sleep
                ):
                    continue
                if self.handover.shut() is not None:
                    continue
                results = self._hand_over(lease, chunk, rest)
                rest = rest[len(chunk) :]
                untried = [r.recipient for r in results if r.untried]
                results = [r for r in results if not r.untried]
                if results and all(r.outage for r in results):
                    rest = [r.recipient for r in results] + untried + rest
                    raise Outage(results[0].error or "the transport is unreachable")
                left = [r for r in untried if self.handover.gone(r.delivery_id)]
                if left:
                    self.to_skip.append((lease, left))
                rest = [r for r in untried if not self.handover.gone(r.delivery_id)] + rest
                reason = self._keep(lease, results)
                self.settle()
                if reason:
                    break
        finally:
            self.handover.lease = None
            if rest:
                self.to_release.append((lease, rest))
            self.finished.append(lease)
        self.settle()
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

    def settle(self) -> None:
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
