"""What ``digest status`` and the web console show about an issue."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.delivery import counts
from digest.issues import find_issue, latest_issue


def issue_status(engine: Engine, week: str | None = None) -> dict[str, Any] | None:
    """The issue's week, state and delivery counts by state; None when there is no issue."""
    with Session(engine) as session:
        issue = find_issue(session, week) if week else latest_issue(session)
        if issue is None:
            return None
        assert issue.id is not None
        by_state = counts(session.connection(), issue.id)
        return {
            "week": issue.week,
            "state": issue.state,
            "state_reason": issue.state_reason,
            "subject": issue.subject,
            "started_at": issue.started_at.isoformat() if issue.started_at else None,
            "finished_at": issue.finished_at.isoformat() if issue.finished_at else None,
            "total": sum(by_state.values()),
            "counts": by_state,
        }
