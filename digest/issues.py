"""Issues: freeze a week's selection and its compiled email; let editors adjust it.

What an editor previews is byte-for-byte what is sent: the HTML and text are stored on
the issue, and editing subject, preheader or intro re-compiles them.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from digest.config import Settings
from digest.exceptions import IssueStateError
from digest.message import IssueMessage
from digest.models import Comparison, Issue, IssueComparison, IssueState
from digest.render import render_issue
from digest.selection import select_comparisons
from digest.timeutil import utcnow

logger = logging.getLogger(__name__)


def find_issue(session: Session, week: str) -> Issue | None:
    return session.exec(select(Issue).where(Issue.week == week)).first()


def latest_issue(session: Session) -> Issue | None:
    return session.exec(select(Issue).order_by(col(Issue.week).desc())).first()


def issue_comparisons(session: Session, issue: Issue) -> tuple[list[Comparison], list[Comparison]]:
    rows = session.exec(
        select(Comparison, IssueComparison.full)
        .join(IssueComparison, col(IssueComparison.comparison_id) == Comparison.id)
        .where(IssueComparison.issue_id == issue.id)
        .order_by(col(IssueComparison.position))
    ).all()
    return [c for c, full in rows if full], [c for c, full in rows if not full]


def freeze_issue(session: Session, week: str, settings: Settings) -> Issue | None:
    """The issue for ``week``: the stored one, or a new draft; None if nothing is new."""
    existing = find_issue(session, week)
    if existing is not None:
        return existing
    selection = select_comparisons(session, week, settings)
    if not selection.all:
        return None
    rendered = render_issue(
        week=week, full=selection.full, links=selection.links, settings=settings
    )
    issue = Issue(
        week=week,
        cutoff=selection.cutoff,
        subject=rendered.subject,
        preheader=rendered.preheader,
        intro="",
        html=rendered.html,
        text=rendered.text,
    )
    session.add(issue)
    try:
        session.flush()
    except IntegrityError:
        # Another process froze the same week a moment ago: use theirs.
        session.rollback()
        return find_issue(session, week)
    assert issue.id is not None  # flushed above
    for position, comparison in enumerate(selection.all):
        assert comparison.id is not None  # loaded from the store
        session.add(
            IssueComparison(
                issue_id=issue.id,
                comparison_id=comparison.id,
                position=position,
                full=position < len(selection.full),
            )
        )
    session.flush()
    logger.info("froze issue %s with %d comparisons", week, len(selection.all))
    return issue


def edit_issue(
    session: Session,
    issue: Issue,
    settings: Settings,
    *,
    subject: str | None = None,
    preheader: str | None = None,
    intro: str | None = None,
) -> Issue:
    """Change an unsent issue's words and re-compile it."""
    if issue.state != IssueState.DRAFT:
        raise IssueStateError(f"issue {issue.week} is {issue.state}; only drafts can be edited")
    full, links = issue_comparisons(session, issue)
    rendered = render_issue(
        week=issue.week,
        full=full,
        links=links,
        settings=settings,
        subject=subject or issue.subject,
        preheader=preheader or issue.preheader,
        intro=intro if intro is not None else (issue.intro or None),
    )
    issue.subject, issue.preheader = rendered.subject, rendered.preheader
    if intro is not None:
        issue.intro = intro
    issue.html, issue.text = rendered.html, rendered.text
    issue.updated_at = utcnow()
    session.add(issue)
    session.flush()
    return issue


def issue_message(issue: Issue, settings: Settings, *, test: bool = False) -> IssueMessage:
    assert issue.id is not None
    return IssueMessage(
        issue_id=issue.id,
        week=issue.week,
        subject=issue.subject,
        html=issue.html,
        text=issue.text,
        settings=settings,
        date=issue.started_at or utcnow(),
        test=test,
    )
