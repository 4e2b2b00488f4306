"""``digest worker``: a long-running sender that claims batches of whichever issue is
sending, on this machine or any other sharing the database.

Any number of workers may run at once: each claims leased batches (PostgreSQL's
``SKIP LOCKED`` on a shared server; SQLite's write lock on one machine), records every
answer, and renews its lease while it sends. Pause, cancel and an unsubscribe are read
between messages (digest/delivery/handover.py), so they reach every worker within a second. A
worker that cannot reach the database waits for it (DIGEST_DB_OUTAGE_GRACE_SECONDS),
and one that cannot renew its lease stops handing out that batch before the lease can
run out. SIGTERM (or SIGINT) finishes and records the
batch in hand, then exits: nothing is released twice, and a worker killed outright
leaves its batch to the others once the lease runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from digest.core.settings import Settings
from digest.core.wording import plural
from digest.delivery.queue import SendReport
from digest.delivery.send_loop import PENDING, deliver
from digest.issue.freeze import issue_message
from digest.store.models import Issue, IssueState
from digest.store.outage import ride_out
from digest.transports import Transport, make_transport

logger = logging.getLogger(__name__)


@dataclass
class WorkerReport:
    """What one worker did over its life."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    batches: int = 0
    issues: list[str] = field(default_factory=list)
    stopped: str | None = None

    def add(self, report: SendReport) -> None:
        self.sent += report.sent
        self.failed += report.failed
        self.skipped += report.skipped
        self.retried += report.retried
        self.batches += report.batches
        if report.week not in self.issues:
            self.issues.append(report.week)

    def summary(self) -> str:
        line = (
            f"worker: {self.sent} sent, {self.failed} failed, {self.skipped} skipped, "
            f"{plural(self.retried, 'retry', 'retries')} in "
            f"{plural(self.batches, 'batch', 'batches')}"
        )
        if self.issues:
            line += f" ({', '.join(self.issues)})"
        return line + (f"; {self.stopped}" if self.stopped else "")


def sending_issue(engine: Engine, number: int | None = None) -> Issue | None:
    """The issue a worker should work on: ``number`` while it is sending, else any
    issue that is sending (the oldest first)."""
    with Session(engine) as session:
        query = select(Issue).where(Issue.state == IssueState.SENDING.value)
        if number is not None:
            query = query.where(Issue.number == number)
        return session.exec(query.order_by(col(Issue.number))).first()


class Worker:
    """Claims and sends batches until stopped (or, with ``until_done``, until its issue
    is no longer sending)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        transport_factory: Callable[[Settings], Transport] = make_transport,
        number: int | None = None,
        poll_seconds: float = 2.0,
        stop: threading.Event | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.transport_factory = transport_factory
        self.number = number
        self.poll_seconds = poll_seconds
        self.stop = stop or threading.Event()
        self.progress = progress
        self.report = WorkerReport()

    def run(self, *, until_done: bool = False) -> WorkerReport:
        idle_since = time.monotonic()
        while not self.stop.is_set():
            issue = ride_out(
                lambda: sending_issue(self.engine, self.number),
                self.settings.db_outage_grace_seconds,
                "worker",
                stop=self.stop,
            )
            if issue is None:
                if until_done:
                    break
                self.stop.wait(self.poll_seconds)
                continue
            assert issue.id is not None
            logger.info("worker: sending issue %s", issue.label)
            report = deliver(
                self.engine,
                issue.id,
                issue_message(issue, self.settings),
                self.transport_factory(self.settings),
                self.settings,
                progress=self.progress,
                # A long-running worker comes back for retries itself; a bounded wait
                # keeps it free to notice the next issue and the stop signal.
                max_wait=self.poll_seconds * 30 if not until_done else None,
                stop=self.stop,
            )
            self.report.add(report)
            idle_since = time.monotonic()
            if until_done and (report.stopped is None or PENDING not in report.stopped):
                break
        if self.stop.is_set():
            self.report.stopped = "stopped by a signal after its batch in hand"
        logger.info("%s (idle %.0fs)", self.report.summary(), time.monotonic() - idle_since)
        return self.report
