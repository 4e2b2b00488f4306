"""Editors' say over a draft: approve it, hold it, or release a hold.

A draft goes out at its scheduled time unless an editor held it; with
``DIGEST_REQUIRE_APPROVAL=true`` only once an editor approved it. Editing an approved
draft withdraws the approval (digest/issue/freeze.py), so what was approved is what is sent.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.exceptions import IssueStateError
from digest.issue.history import record
from digest.store.models import Issue, IssueState, ReviewState

logger = logging.getLogger(__name__)


def _draft(issue: Issue, verb: str) -> None:
    if issue.state != IssueState.DRAFT:
        raise IssueStateError(f"issue {issue.label} is {issue.state}; only a draft can be {verb}")


def _set(session: Session, issue: Issue, review: ReviewState, actor: str, note: str) -> None:
    assert issue.id is not None
    previous = issue.review
    issue.review = review.value
    issue.reviewed_by = actor[:320]
    issue.reviewed_at = utcnow()
    issue.review_note = note[:1000] or None
    if review is not ReviewState.HELD:
        issue.state_reason = None  # a "waiting for approval" or "held" reason is now stale
    session.add(issue)
    session.flush()
    record(session, issue.id, actor, review.value, previous=previous, note=note)


def approve(session: Session, issue: Issue, actor: str, note: str = "") -> None:
    """Approve a draft (this also lifts a hold)."""
    _draft(issue, "approved")
    _set(session, issue, ReviewState.APPROVED, actor, note)


def hold(session: Session, issue: Issue, actor: str, reason: str = "") -> None:
    """Stop a draft from going out until an editor approves or releases it."""
    _draft(issue, "held")
    _set(session, issue, ReviewState.HELD, actor, reason)
    issue.state_reason = f"held by {actor}" + (f": {reason}" if reason else "")
    session.add(issue)


def release(session: Session, issue: Issue, actor: str) -> None:
    """Lift a hold without approving: the draft goes out at its time again (unless
    approval is required)."""
    _draft(issue, "released")
    if issue.review != ReviewState.HELD:
        raise IssueStateError(f"issue {issue.label} is not held")
    _set(session, issue, ReviewState.PENDING, actor, "hold released")


def blocked_reason(issue: Issue, settings: Settings) -> str | None:
    """Why a draft may not be sent now, or None when it may."""
    if issue.review == ReviewState.HELD:
        who = f" by {issue.reviewed_by}" if issue.reviewed_by else ""
        note = f": {issue.review_note}" if issue.review_note else ""
        return f"held{who}{note}; `digest approve` or `digest hold --release` lets it go"
    if settings.require_approval and issue.review != ReviewState.APPROVED:
        return (
            "waiting for an editor's approval (DIGEST_REQUIRE_APPROVAL=true); "
            f"`digest approve --issue {issue.number}` or the console's Approve button"
        )
    return None
