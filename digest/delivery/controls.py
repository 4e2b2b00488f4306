"""Operator controls: pause, resume and cancel an issue's send; re-queue its failures.

The state lives in the database (``issue.state``); a running sender reads it between
messages (digest/handover.py) and stops within a second: the messages already in the
transport's hands are finished and recorded, the rest of its batch goes back untouched. Every
change is one conditional UPDATE, so two operators (or an operator and the sender
pausing itself) cannot interleave into a state nobody asked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.core.clock import utcnow
from digest.exceptions import IssueStateError
from digest.issue.freeze import target_issue
from digest.issue.history import record
from digest.store.engine import session_scope
from digest.store.models import Delivery, DeliveryState, Issue, IssueState
from digest.store.subscriber_models import Subscriber, SubscriberStatus

logger = logging.getLogger(__name__)

D = Delivery.__table__  # type: ignore[attr-defined]
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741
S = Subscriber.__table__  # type: ignore[attr-defined]

PAUSABLE = (IssueState.DRAFT, IssueState.SENDING)
CANCELLABLE = (IssueState.DRAFT, IssueState.SENDING, IssueState.PAUSED)
RETRYABLE = (IssueState.SENT, IssueState.PAUSED, IssueState.SENDING)


@dataclass(frozen=True)
class ControlResult:
    #: how people name the issue: "#12 (2026-W47)"
    label: str
    previous: str
    state: str
    detail: str = ""
    number: int | None = None

    def summary(self) -> str:
        line = f"issue {self.label}: {self.previous} → {self.state}"
        return f"{line}; {self.detail}" if self.detail else line


def _target(engine: Engine, week: str | None, number: int | None) -> Issue:
    """Issue ``number``, the newest labelled ``week``, or (with neither) the open issue,
    else the newest."""
    with Session(engine) as session:
        issue = target_issue(session, number=number, week=week)
    if issue is None:
        if number is not None:
            raise IssueStateError(f"there is no issue #{number}")
        raise IssueStateError(f"no issue for week {week}" if week else "no issue yet")
    return issue


def _move(
    engine: Engine,
    week: str | None,
    number: int | None,
    allowed: tuple[IssueState, ...],
    to: IssueState,
    reason: str | None,
    verb: str,
    actor: str,
) -> tuple[int, ControlResult]:
    issue = _target(engine, week, number)
    assert issue.id is not None
    issue_id, name, state = issue.id, issue.label, str(issue.state)
    now = utcnow()
    values: dict[str, object] = {"state": to.value, "state_reason": reason, "updated_at": now}
    with engine.begin() as conn:
        changed = conn.execute(
            update(I)
            .where(I.c.id == issue_id, I.c.state.in_([s.value for s in allowed]))
            .values(**values)
        ).rowcount
        if not changed:
            current = conn.execute(select(I.c.state).where(I.c.id == issue_id)).scalar_one()
            can = " or ".join(s.value for s in allowed)
            raise IssueStateError(f"issue {name} is {current}; only a {can} issue can be {verb}")
        if to is IssueState.SENDING:
            conn.execute(
                update(I).where(I.c.id == issue_id, I.c.started_at.is_(None)).values(started_at=now)
            )
    with session_scope(engine) as session:
        record(session, issue_id, actor, verb, previous=state, reason=reason)
    logger.info("issue %s: %s → %s (%s)", name, state, to.value, reason or verb)
    return issue_id, ControlResult(name, state, to.value, number=issue.number)


def pause_issue(
    engine: Engine,
    week: str | None = None,
    reason: str = "paused by the operator",
    *,
    number: int | None = None,
    actor: str = "cli",
) -> ControlResult:
    """Stop sending within a second (after the messages already in the transport's
    hands); ``resume`` continues where it stopped."""
    _, result = _move(engine, week, number, PAUSABLE, IssueState.PAUSED, reason, "paused", actor)
    return replace(result, detail="every sender stops within a second")


def resume_issue(
    engine: Engine, week: str | None = None, *, number: int | None = None, actor: str = "cli"
) -> ControlResult:
    """Let a paused issue send again (the caller then runs the send loop).

    An issue still marked ``sending`` is taken as it is: a sender that gave up on an
    unreachable database could not record its pause (docs/delivery.md), and resuming
    is how the operator continues it."""
    allowed = (IssueState.PAUSED, IssueState.SENDING)
    _, result = _move(engine, week, number, allowed, IssueState.SENDING, None, "resumed", actor)
    if result.previous == IssueState.SENDING:
        return replace(result, detail="it was still sending; this continues it")
    return result


def cancel_issue(
    engine: Engine, week: str | None = None, *, number: int | None = None, actor: str = "cli"
) -> ControlResult:
    """Stop for good: every delivery not yet sent is marked skipped."""
    issue_id, result = _move(
        engine,
        week,
        number,
        CANCELLABLE,
        IssueState.CANCELLED,
        f"cancelled by {actor}",
        "cancelled",
        actor,
    )
    now = utcnow()
    with engine.begin() as conn:
        # In-flight rows of a live sender are left to it (it records what the server
        # said); rows of a dead one, and everything still queued, are skipped.
        skipped = conn.execute(
            update(D)
            .where(
                D.c.issue_id == issue_id,
                or_(
                    D.c.state.in_(
                        [
                            DeliveryState.QUEUED.value,
                            DeliveryState.RETRY.value,
                            DeliveryState.WAITING.value,
                        ]
                    ),
                    and_(D.c.state == DeliveryState.SENDING.value, D.c.lease_expires_at < now),
                ),
            )
            .values(
                state=DeliveryState.SKIPPED.value,
                last_error="issue cancelled",
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
        ).rowcount
    return replace(result, detail=f"{skipped or 0} unsent deliveries skipped")


def retry_failed(
    engine: Engine, week: str | None = None, *, number: int | None = None, actor: str = "cli"
) -> ControlResult:
    """Put the ``failed`` deliveries of an issue back in the queue, on purpose (after an
    outage that outlasted the retries, or a content refusal that has been fixed).

    Only rows whose subscriber is still ``active`` are re-queued — never anyone
    suppressed since (bounced, unsubscribed, complained). Attempts start again from
    zero. A ``sent`` issue goes back to ``sending`` (the caller then runs the send
    loop); a paused one stays paused until ``resume``.
    """
    issue = _target(engine, week, number)
    assert issue.id is not None
    issue_id, name, state = issue.id, issue.label, str(issue.state)
    if state not in RETRYABLE:
        can = " or ".join(s.value for s in RETRYABLE)
        raise IssueStateError(f"issue {name} is {state}; only a {can} issue has failures to retry")
    now = utcnow()
    active = select(S.c.id).where(S.c.status == SubscriberStatus.ACTIVE.value)
    with engine.begin() as conn:
        requeued = (
            conn.execute(
                update(D)
                .where(
                    D.c.issue_id == issue_id,
                    D.c.state == DeliveryState.FAILED.value,
                    D.c.subscriber_id.in_(active),
                )
                .values(
                    state=DeliveryState.QUEUED.value,
                    attempts=0,
                    next_attempt_at=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            ).rowcount
            or 0
        )
        new_state = state
        if requeued and state == IssueState.SENT:
            conn.execute(
                update(I)
                .where(I.c.id == issue_id, I.c.state == IssueState.SENT.value)
                .values(
                    state=IssueState.SENDING.value,
                    state_reason=f"{requeued} failed deliveries re-queued",
                    finished_at=None,
                    updated_at=now,
                )
            )
            new_state = IssueState.SENDING.value
    with session_scope(engine) as session:
        record(session, issue_id, actor, "retry-failed", requeued=requeued)
    logger.info("issue %s: %d failed deliveries re-queued", name, requeued)
    return ControlResult(
        name, state, str(new_state), f"{requeued} failed deliveries re-queued", issue.number
    )
