"""``weekly_job()``: the one function the scheduler, the CLI and the web console call.

select → freeze → enqueue → deliver, each step idempotent: running it twice for one
week sends nobody anything twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from digest.config import Settings, get_settings
from digest.db import make_engine, migrate, session_scope
from digest.delivery import SendReport, counts, enqueue
from digest.exceptions import IssueStateError
from digest.issues import find_issue, freeze_issue, issue_message
from digest.message import Recipient
from digest.models import IssueState
from digest.render import render_issue
from digest.selection import select_comparisons
from digest.timeutil import utcnow, week_of
from digest.transports import Transport, make_transport
from digest.workers import deliver
from subscribers.models import Subscriber, SubscriberStatus

logger = logging.getLogger(__name__)


class ProgressSink(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, n: int) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass
class JobResult:
    week: str
    outcome: str
    issue_id: int | None = None
    enqueued: int = 0
    recipients: int = 0
    report: SendReport | None = None
    reason: str | None = None

    def summary(self) -> str:
        if self.outcome == "nothing-new":
            return f"week {self.week}: no new comparisons, no issue (nothing sent)"
        if self.outcome == "dry-run":
            return (
                f"week {self.week}: dry run — the issue would go to {self.recipients} "
                "subscribers; nothing sent, nothing recorded"
            )
        if self.outcome == "test-sent":
            return f"week {self.week}: test copy sent; nothing recorded"
        if self.outcome == "paused":
            why = f" ({self.reason})" if self.reason else ""
            return f"week {self.week}: issue is paused{why}; `digest resume` continues it"
        if self.outcome in ("already-sent", "cancelled"):
            state = self.outcome.replace("already-", "")
            return f"week {self.week}: issue is {state}; nothing to send"
        if self.report is not None:
            return self.report.summary()
        return f"week {self.week}: {self.outcome}"


def open_store(settings: Settings) -> Engine:
    """An engine on ``DIGEST_DATABASE_URL`` with the schema upgraded to the newest."""
    engine = make_engine(settings.database_url, settings.db_busy_timeout)
    migrate(engine)
    return engine


def current_week(settings: Settings, now: datetime | None = None) -> str:
    return week_of(now or utcnow(), settings.tz)


def active_count(session: Session) -> int:
    return int(
        session.exec(  # type: ignore[call-overload]
            select(func.count()).where(col(Subscriber.status) == SubscriberStatus.ACTIVE.value)
        ).one()[0]
    )


def weekly_job(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    transport: Transport | None = None,
    week: str | None = None,
    dry_run: bool = False,
    test_to: str | None = None,
    now: datetime | None = None,
    progress: ProgressSink | None = None,
) -> JobResult:
    """Build (or reuse) the issue for ``week`` and send it to every active subscriber."""
    settings = settings or get_settings()
    engine = engine or open_store(settings)
    week = week or current_week(settings, now)
    progress = progress or _NoProgress()

    if dry_run:
        return _dry_run(engine, settings, week)

    with session_scope(engine) as session:
        issue = freeze_issue(session, week, settings)
        if issue is None:
            logger.info("week %s: no new comparisons; no issue", week)
            return JobResult(week=week, outcome="nothing-new")
        assert issue.id is not None
        issue_id, state, reason = issue.id, issue.state, issue.state_reason
        if test_to is not None:
            transport = transport or make_transport(settings)
            message = issue_message(issue, settings, test=True)
            with transport:
                results = transport.send_batch(message, [Recipient(0, test_to, "")])
            if results[0].status != "sent":
                raise IssueStateError(
                    f"test copy to {test_to} was not accepted: {results[0].error}"
                )
            return JobResult(week=week, outcome="test-sent", issue_id=issue_id)
        if state == IssueState.SENT:
            return JobResult(week=week, outcome="already-sent", issue_id=issue_id)
        if state in (IssueState.CANCELLED, IssueState.PAUSED):
            return JobResult(week=week, outcome=str(state), issue_id=issue_id, reason=reason)
        if state == IssueState.DRAFT:
            issue.state = IssueState.SENDING
            issue.started_at = utcnow()
            session.add(issue)
        message = issue_message(issue, settings)

    with engine.begin() as conn:
        added = enqueue(conn, issue_id)
        by_state = counts(conn, issue_id)
        open_now = sum(n for s, n in by_state.items() if s in ("queued", "retry", "sending"))
    progress.start(open_now)
    report = deliver(
        engine,
        issue_id,
        message,
        transport or make_transport(settings),
        settings,
        progress=progress.advance,
    )
    return JobResult(week=week, outcome="sent", issue_id=issue_id, enqueued=added, report=report)


def _dry_run(engine: Engine, settings: Settings, week: str) -> JobResult:
    with Session(engine) as session:
        issue = find_issue(session, week)
        if issue is None:
            selection = select_comparisons(session, week, settings)
            if not selection.all:
                return JobResult(week=week, outcome="nothing-new")
            render_issue(week=week, full=selection.full, links=selection.links, settings=settings)
        return JobResult(week=week, outcome="dry-run", recipients=active_count(session))
