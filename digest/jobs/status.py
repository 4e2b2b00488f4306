"""What ``digest status`` and the web console show about an issue."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from digest.core.clock import utcnow
from digest.delivery.queue import OPEN_STATES, D, counts
from digest.issue.freeze import target_issue
from digest.readers.variants import variant_summary
from digest.readers.waves import waves
from digest.store.models import DeliveryState, IssueState
from digest.webhooks.events import provider_events

logger = logging.getLogger(__name__)

#: The rate is measured over the last minute of sending (or since the start, if shorter).
RATE_WINDOW_SECONDS = 60
OPEN = tuple(state.value for state in OPEN_STATES)


def send_rate(
    conn: Connection, issue_id: int, started_at: datetime | None, now: datetime | None = None
) -> float:
    """Messages per second recently accepted for ``issue_id``."""
    now = now or utcnow()
    since = now - timedelta(seconds=RATE_WINDOW_SECONDS)
    if started_at is not None:
        started = started_at if started_at.tzinfo else started_at.replace(tzinfo=now.tzinfo)
        since = max(since, started)
    window = (now - since).total_seconds()
    if window <= 0:
        return 0.0
    sent = conn.execute(
        select(func.count()).where(
            D.c.issue_id == issue_id,
            D.c.state == DeliveryState.SENT.value,
            D.c.sent_at >= since,
        )
    ).scalar_one()
    return float(sent) / window


def issue_status(
    engine: Engine, week: str | None = None, *, number: int | None = None
) -> dict[str, Any] | None:
    """The issue's number, week, state and delivery counts by state; None when there is
    no issue. Without ``week`` or ``number``: the open issue, else the newest.

    While the issue is sending, also ``rate`` (messages/s over the last minute),
    ``remaining`` and ``eta_seconds`` (None until there is a rate).
    """
    with Session(engine) as session:
        issue = target_issue(session, number=number, week=week)
        if issue is None:
            return None
        assert issue.id is not None
        conn = session.connection()
        by_state = counts(conn, issue.id)
        remaining = sum(by_state.get(s, 0) for s in OPEN)
        rate: float | None = None
        eta: float | None = None
        if issue.state == IssueState.SENDING:
            rate = round(send_rate(conn, issue.id, issue.started_at), 2)
            eta = round(remaining / rate, 1) if rate > 0 else None
        return {
            "number": issue.number,
            "week": issue.week,
            "state": issue.state,
            "state_reason": issue.state_reason,
            "review": issue.review,
            "reviewed_by": issue.reviewed_by,
            "subject": issue.subject,
            "cutoff": issue.cutoff.isoformat(),
            "scheduled_for": issue.scheduled_for.isoformat() if issue.scheduled_for else None,
            "started_at": issue.started_at.isoformat() if issue.started_at else None,
            "finished_at": issue.finished_at.isoformat() if issue.finished_at else None,
            "total": sum(by_state.values()),
            "counts": by_state,
            "remaining": remaining,
            "rate": rate,
            "eta_seconds": eta,
            "variants": variant_summary(session, issue.id),
            "waves": waves(conn, issue.id),
            **provider_events(conn, issue.id),
        }
