"""``weekly_job()``: the one function the scheduler, the CLI and the web console call.

find or freeze the issue → check review and preflight → enqueue → deliver, each step
idempotent: running it twice sends nobody anything twice.

Which issue: ``issue`` (a number) or ``week`` (the newest issue labelled so; frozen
as of the end of that week when there is none) name one; otherwise the open issue
(draft, sending or paused), else a new one frozen now from what no issue featured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from digest.core.clock import local_text, utcnow, week_of
from digest.core.recipient import Recipient
from digest.core.settings import Settings, get_settings
from digest.core.wording import plural
from digest.delivery.pool import run_local_workers
from digest.delivery.queue import EVERYONE, OPEN_STATES, SendReport, counts, enqueue
from digest.delivery.send_loop import deliver
from digest.editorial.preflight import (
    EXEMPT_TRANSPORTS,
    PreflightReport,
    fetch_health,
    preflight,
)
from digest.editorial.review import blocked_reason
from digest.exceptions import IssueStateError, PreflightError
from digest.issue.freeze import (
    cutoff_for,
    find_issue,
    freeze_next,
    issue_message,
    nothing_new_message,
    open_issue,
    started_in_week,
)
from digest.issue.history import record
from digest.issue.screen import render_screened
from digest.issue.selection import select_comparisons
from digest.readers.variants import plan
from digest.readers.waves import in_waves
from digest.store.engine import make_engine, migrate, session_scope
from digest.store.models import Issue, IssueState
from digest.store.outage import ride_out
from digest.store.subscriber_models import Subscriber, SubscriberStatus
from digest.transports import Transport, make_transport

logger = logging.getLogger(__name__)


class ProgressSink(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, n: int) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


#: Outcomes that mean "this issue could not go out now" (the CLI exits 3 for them).
STOPPED_SHORT = frozenset({"paused", "held", "awaiting-approval"})


@dataclass
class JobResult:
    outcome: str
    week: str | None = None
    number: int | None = None
    issue_id: int | None = None
    enqueued: int = 0
    enqueue_seconds: float = 0.0
    recipients: int = 0
    report: SendReport | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    preflight: PreflightReport | None = None

    @property
    def label(self) -> str:
        if self.number is not None:
            return f"issue #{self.number} ({self.week})"
        return f"week {self.week}" if self.week else "next issue"

    def summary(self) -> str:
        if self.outcome == "nothing-new":
            return f"{self.reason or 'nothing new'}; no issue, nothing sent"
        if self.outcome == "dry-run":
            return (
                f"{self.label}: dry run — the issue would go to "
                f"{plural(self.recipients, 'subscriber')}; nothing sent, nothing recorded"
            )
        if self.outcome == "test-sent":
            return f"{self.label}: test copy sent ({self.reason}); recorded as a test"
        if self.outcome == "paused":
            why = f" ({self.reason})" if self.reason else ""
            return f"{self.label}: issue is paused{why}; `digest resume` continues it"
        if self.outcome in ("already-sent", "cancelled"):
            state = self.outcome.replace("already-", "")
            return f"{self.label}: issue is {state}; nothing to send"
        if self.report is not None:
            line = self.report.summary()
            if self.enqueued >= 10_000:  # worth saying on a big list
                line += f"; enqueued {self.enqueued:,} in {self.enqueue_seconds:.1f}s"
            return line
        if self.reason:
            return f"{self.label}: {self.reason}"
        return f"{self.label}: {self.outcome}"


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


def _result(outcome: str, issue: Issue, **extra: object) -> JobResult:
    return JobResult(
        outcome=outcome,
        week=issue.week,
        number=issue.number,
        issue_id=issue.id,
        **extra,  # type: ignore[arg-type]
    )


def check_preflight(
    issue: Issue, settings: Settings, transport: Transport, *, probe: bool = True
) -> PreflightReport:
    """The issue's preflight report for ``transport``; PreflightError when it has
    errors and the transport reaches real people."""
    real = transport.name not in EXEMPT_TRANSPORTS
    report = preflight(
        issue_message(issue, settings),
        settings,
        preheader=issue.preheader,
        real=real,
        health=fetch_health if real and probe else None,
    )
    if real and not report.passed:
        raise PreflightError(issue.label, report)
    return report


def weekly_job(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    transport: Transport | None = None,
    issue: int | None = None,
    week: str | None = None,
    dry_run: bool = False,
    test_to: str | None = None,
    now: datetime | None = None,
    progress: ProgressSink | None = None,
    scheduled: bool = False,
    again: bool = False,
    actor: str = "cli",
    workers: int = 1,
    clock: Callable[[], datetime] | None = None,
    max_wait: float | None = None,
    start_only: bool = False,
) -> JobResult:
    """Send the issue (see the module doc) to every active subscriber.

    ``workers`` > 1 sends through that many local processes (digest/delivery/pool.py).
    ``start_only`` stops once the issue is sending and its deliveries are queued
    (outcome ``queued``): the console does that before its background send starts, so
    its progress is right from the moment Send is pressed.

    ``scheduled`` is the scheduler's run: a draft goes out only once its scheduled time
    has come, and never as a second issue in one ISO week. By hand (``again``) an
    operator may send a second one after confirming it.
    """
    settings = settings or get_settings()
    engine = engine or open_store(settings)
    now = now or utcnow()
    progress = progress or _NoProgress()

    if dry_run:
        return _dry_run(engine, settings, issue, week, now)

    with session_scope(engine) as session:
        target, stop = _target(session, settings, issue, week, now, scheduled, actor)
        if stop is not None:
            return stop
        assert target is not None
        assert target.id is not None

        if test_to is not None:
            transport = transport or make_transport(settings)
            message = issue_message(target, settings, test=True)
            with transport:
                results = transport.send_batch(message, [Recipient(0, test_to, "")])
            if results[0].status != "sent":
                raise IssueStateError(
                    f"test copy to {test_to} was not accepted: {results[0].error}"
                )
            record(session, target.id, actor, "test", to=test_to)
            return _result("test-sent", target, reason=f"to {test_to}")

        if target.state == IssueState.SENT:
            return _result("already-sent", target)
        if target.state in (IssueState.CANCELLED, IssueState.PAUSED):
            return _result(str(target.state), target, reason=target.state_reason)

        transport = transport or make_transport(settings)
        if target.state == IssueState.DRAFT:
            stop = _may_not_start(session, settings, target, now, scheduled=scheduled, again=again)
            if stop is not None:
                return stop
        report = check_preflight(target, settings, transport)
        # The Maildir demo and tests reach nobody: their rig warnings would only be noise.
        real = transport.name not in EXEMPT_TRANSPORTS
        warnings = [c.line() for c in report.warnings] if real else []
        if target.state == IssueState.DRAFT:
            target.state = IssueState.SENDING
            target.started_at = now
            target.state_reason = None
            session.add(target)
            record(session, target.id, actor, "send", preflight=report.summary())
        message = issue_message(target, settings)
        issue_id = target.id
        result = _result("sent", target, warnings=warnings, preflight=report)

    for line in warnings:
        logger.warning("%s: %s", result.label, line)
    enqueue_started = time.monotonic()

    def queue() -> tuple[int, int]:
        # Safe to repeat (ON CONFLICT DO NOTHING): a database restart here is waited out.
        added = enqueue_audience(engine, settings, issue_id, now, actor)
        with engine.connect() as conn:
            by_state = counts(conn, issue_id)
        return added, sum(n for s, n in by_state.items() if s in {o.value for o in OPEN_STATES})

    added, open_now = ride_out(queue, settings.db_outage_grace_seconds, result.label)
    progress.start(open_now)
    result.enqueued = added
    result.enqueue_seconds = time.monotonic() - enqueue_started
    if start_only:
        result.outcome = "queued"
        result.reason = f"{plural(open_now, 'delivery', 'deliveries')} queued"
        return result
    if workers > 1:
        assert result.number is not None
        result.report = run_local_workers(
            settings,
            engine,
            issue_id,
            result.number,
            message.label,
            workers,
            progress=progress.advance,
        )
        return result
    result.report = deliver(
        engine,
        issue_id,
        message,
        transport,
        settings,
        progress=progress.advance,
        clock=clock or utcnow,
        max_wait=max_wait,
    )
    return result


def enqueue_audience(
    engine: Engine, settings: Settings, issue_id: int, now: datetime, actor: str
) -> int:
    """Queue every active reader not yet queued: with the variant of their preference
    set (compiled once per set, digest/readers/variants.py), skipped when their topics
    have nothing, waiting for their local time with DIGEST_SEND_LOCAL_TIME."""
    for attempt in range(2):
        try:
            with session_scope(engine) as session:
                issue = session.get(Issue, issue_id)
                assert issue is not None
                slices = plan(session, settings, issue, actor)
                audience = list(EVERYONE) if slices is None else [s.audience() for s in slices]
                conn = session.connection()
                audience = in_waves(audience, settings, issue.started_at or now, conn)
                return enqueue(conn, issue_id, audience)
        except IntegrityError:
            # Another sender compiled the same variant a moment ago: use theirs.
            if attempt:
                raise
    raise AssertionError("unreachable")


def _target(
    session: Session,
    settings: Settings,
    number: int | None,
    week: str | None,
    now: datetime,
    scheduled: bool,
    actor: str,
) -> tuple[Issue | None, JobResult | None]:
    """The issue to act on, or a result saying why there is none."""
    if number is not None or week is not None:
        target = find_issue(session, number=number, week=week)
        if target is not None:
            return target, None
        if number is not None:
            raise IssueStateError(f"there is no issue #{number}")
    else:
        target = open_issue(session)
        if target is not None:
            return target, None
        already = started_in_week(session, settings, now) if scheduled else None
        if already is not None:
            # One week, one scheduled issue: freezing now would leave a draft whose
            # cutoff is a week old by the next scheduled send.
            reason = (
                f"issue #{already.number} already went out this week; the next issue is "
                "frozen for the next scheduled send"
            )
            return None, _result("already-this-week", already, reason=reason)
    frozen = freeze_next(session, settings, now=now, week=week, actor=actor)
    if frozen.issue is None:
        logger.info("%s", frozen.nothing_new)
        result = JobResult(
            outcome="nothing-new",
            week=week or current_week(settings, now),
            reason=frozen.nothing_new,
        )
        return None, result
    return frozen.issue, None


def _may_not_start(
    session: Session,
    settings: Settings,
    issue: Issue,
    now: datetime,
    *,
    scheduled: bool,
    again: bool,
) -> JobResult | None:
    """Why a draft does not start sending now (a result to return), or None."""
    if scheduled and issue.scheduled_for is not None and issue.scheduled_for > now:
        return _result(
            "not-due",
            issue,
            reason=f"scheduled for {local_text(issue.scheduled_for, settings.tz)}",
        )
    blocked = blocked_reason(issue, settings)
    if blocked is not None:
        if issue.state_reason != blocked:
            issue.state_reason = blocked
            session.add(issue)
        outcome = "held" if blocked.startswith("held") else "awaiting-approval"
        return _result(outcome, issue, reason=blocked)
    already = started_in_week(session, settings, now)
    if already is not None and already.id != issue.id and (scheduled or not again):
        if scheduled:
            reason = (
                f"issue #{already.number} already went out this week; #{issue.number} goes "
                "with the next scheduled send"
            )
            if issue.state_reason != reason:
                issue.state_reason = reason
                session.add(issue)
            return _result("already-this-week", issue, reason=reason)
        return _result(
            "needs-confirmation",
            issue,
            reason=f"issue #{already.number} already went out this week "
            f"({week_of(now, settings.tz)}); sending #{issue.number} too needs a confirmation "
            "(`digest send --yes --again`)",
        )
    return None


def _dry_run(
    engine: Engine, settings: Settings, number: int | None, week: str | None, now: datetime
) -> JobResult:
    with Session(engine) as session:
        issue = (
            find_issue(session, number=number, week=week) if number or week else open_issue(session)
        )
        if issue is None and number is not None:
            raise IssueStateError(f"there is no issue #{number}")
        if issue is None:
            selection = select_comparisons(session, cutoff_for(week, settings, now), settings)
            if not selection.all:
                return JobResult(
                    outcome="nothing-new",
                    week=week or current_week(settings, now),
                    reason=nothing_new_message(session, settings, selection),
                )
            render_screened(
                week=week or current_week(settings, now),
                number=None,
                full=selection.full,
                links=selection.links,
                settings=settings,
            )
            return JobResult(
                outcome="dry-run",
                week=week or current_week(settings, now),
                recipients=active_count(session),
            )
        return _result("dry-run", issue, recipients=active_count(session))
