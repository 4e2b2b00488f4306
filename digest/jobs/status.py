"""What ``digest status`` and the web console show about an issue."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.core.settings import Settings, get_settings
from digest.delivery.progress import send_progress
from digest.issue.freeze import target_issue
from digest.jobs.schedule import send_plan
from digest.readers.previews import copies
from digest.store.models import IssueState
from digest.webhooks.events import provider_events

logger = logging.getLogger(__name__)


def issue_status(
    engine: Engine,
    week: str | None = None,
    *,
    number: int | None = None,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """The issue's number, week, state and delivery counts by state; None when there is
    no issue. Without ``week`` or ``number``: the open issue, else the newest.

    While the issue is sending, also ``rate`` (messages/s over the last minute),
    ``remaining`` and ``eta_seconds`` (None until there is a rate): the figures the
    console and ``/metrics`` show too (digest/delivery/progress.py).

    ``review`` and ``schedule`` (``next_send``, ``why_not``, ``text``) come from
    :func:`digest.jobs.schedule.send_plan`, as on the console's pages.

    ``variants``: every copy the send produces, with its subject and readers — for a
    draft the copies it would produce now (digest/readers/previews.py), once sending
    the ones compiled.
    """
    settings = settings or get_settings()
    with Session(engine) as session:
        issue = target_issue(session, number=number, week=week)
        if issue is None:
            return None
        assert issue.id is not None
        conn = session.connection()
        progress = send_progress(conn, issue.id, str(issue.state), issue.started_at)
        plan = send_plan(session, settings, issue, now)
        from digest.readers.variants import variant_summary
        from digest.readers.waves import waves

        return {
            "number": issue.number,
            "week": issue.week,
            "state": issue.state,
            "state_reason": issue.state_reason,
            "review": plan.review,
            "reviewed_by": issue.reviewed_by,
            "subject": issue.subject,
            "cutoff": issue.cutoff.isoformat(),
            "scheduled_for": issue.scheduled_for.isoformat() if issue.scheduled_for else None,
            "schedule": {k: v for k, v in plan.as_dict().items() if k not in ("state", "review")},
            "started_at": issue.started_at.isoformat() if issue.started_at else None,
            "finished_at": issue.finished_at.isoformat() if issue.finished_at else None,
            **progress.as_dict(),
            "variants": (
                [c.as_dict() for c in copies(session, settings, issue)]
                if issue.state == IssueState.DRAFT
                else variant_summary(session, issue.id, issue.subject)
            ),
            "waves": waves(conn, issue.id),
            **provider_events(conn, issue.id),
        }
