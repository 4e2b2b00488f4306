"""The review notice: when a draft is frozen for review, every console account gets an
email with the console link and, separately, a [TEST] copy of the issue itself."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.accounts.service import reviewers
from digest.core.clock import local_text
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.issue.freeze import issue_message, issue_rows
from digest.issue.history import record
from digest.issue.render import render_email
from digest.mail.oneoff import OneOffMessage
from digest.store.engine import session_scope
from digest.store.models import Issue
from digest.transports import Transport, make_transport
from digest.transports.base import SendStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoticeReport:
    notified: list[str]
    failed: list[str]


def console_url(settings: Settings, issue: Issue) -> str:
    return f"{settings.base_url}/console/issues/{issue.number}"


def _notice(settings: Settings, issue: Issue, comparisons: int) -> OneOffMessage:
    subject = f"Review issue #{issue.number}: {issue.subject}"
    if issue.scheduled_for is not None:
        when = f"It goes out {local_text(issue.scheduled_for, settings.tz)}."
    else:
        when = "It goes out with the next send."
    rule = (
        "It is sent only once an editor approves it."
        if settings.require_approval
        else "It goes out unless an editor holds it."
    )
    html, text = render_email(
        "email/review_notice",
        {
            "subject": subject,
            "preheader": f"{when} {rule}",
            "list_name": settings.list_name,
            "number": issue.number,
            "week": issue.week,
            "issue_subject": issue.subject,
            "comparisons": comparisons,
            "when": when,
            "rule": rule,
            "console_url": console_url(settings, issue),
        },
    )
    return OneOffMessage(settings, subject=subject, html=html, text=text)


def notify_reviewers(
    engine: Engine,
    settings: Settings,
    issue_id: int,
    transport: Transport | None = None,
    actor: str = "scheduler",
) -> NoticeReport:
    """Mail every console account the notice and a [TEST] copy of the issue."""
    with Session(engine) as session:
        issue = session.get(Issue, issue_id)
        assert issue is not None
        people = [u.email for u in reviewers(session)]
        notice = _notice(settings, issue, len(issue_rows(session, issue)))
        copy = issue_message(issue, settings, test=True)
    notified: list[str] = []
    failed: list[str] = []
    if people:
        transport = transport or make_transport(settings)
        with transport:
            for email in people:
                rcpt = Recipient(0, email, "")
                results = transport.send_batch(notice, [rcpt]) + transport.send_batch(copy, [rcpt])
                if all(r.status == SendStatus.SENT for r in results):
                    notified.append(email)
                else:
                    failed.append(email)
                    logger.warning(
                        "review notice to %s not accepted: %s",
                        email,
                        "; ".join(r.error or "" for r in results),
                    )
    with session_scope(engine) as session:
        record(session, issue_id, actor, "review-notice", notified=notified, failed=failed)
    return NoticeReport(notified, failed)
