"""What the next issue features (DESIGN §4.1).

An issue features every comparison that no issue featured and that was published within
``DIGEST_MAX_AGE_DAYS`` before its cutoff — the moment it is frozen — newest first, up
to ``DIGEST_MAX_COMPARISONS``; the first ``DIGEST_FULL_CARDS`` get full cards, the rest
compact links. Because the window ends at the freeze and reaches back further than a
week, a missed week or a late import is caught up by the next issue, a manual send at
any time sends what is new, and nothing older than the max age is dumped on readers.

A comparison counts as featured while an issue lists it, unless that issue was
cancelled before anyone was sent it (a scrapped draft gives its comparisons back).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Exists, and_, exists, or_
from sqlmodel import Session, col, select

from digest.core.settings import Settings
from digest.issue.screen import Skipped, screen
from digest.store.models import Comparison, Issue, IssueComparison, IssueState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    since: datetime
    cutoff: datetime
    full: list[Comparison]
    links: list[Comparison]
    #: New comparisons left out because they cannot be rendered (digest/issue/screen.py).
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def all(self) -> list[Comparison]:
        return [*self.full, *self.links]


def window_start(cutoff: datetime, settings: Settings) -> datetime:
    """``DIGEST_MAX_AGE_DAYS`` local calendar days before ``cutoff`` (a DST change in
    between moves the instant by an hour, not the wall-clock time)."""
    local = cutoff.astimezone(settings.tz)
    return (local - timedelta(days=settings.max_age_days)).astimezone(cutoff.tzinfo)


def _featured(issue_id: int | None = None) -> Exists:
    """SQL: the comparison is listed by an issue that counts (see the module doc)."""
    counts = or_(col(Issue.state) != IssueState.CANCELLED.value, col(Issue.started_at).is_not(None))
    conditions = [
        col(IssueComparison.comparison_id) == col(Comparison.id),
        col(IssueComparison.issue_id) == col(Issue.id),
        counts,
    ]
    if issue_id is not None:
        conditions.append(col(IssueComparison.issue_id) != issue_id)
    return exists().where(and_(*conditions))


def unfeatured(
    session: Session,
    settings: Settings,
    *,
    since: datetime,
    until: datetime | None = None,
    besides: int | None = None,
    limit: int | None = None,
) -> list[Comparison]:
    """Comparisons no issue (other than ``besides``) features, published in
    ``[since, until]``, newest first."""
    query = select(Comparison).where(col(Comparison.published_at) >= since)
    if until is not None:
        query = query.where(col(Comparison.published_at) <= until)
    query = query.where(~_featured(besides)).order_by(
        col(Comparison.published_at).desc(), col(Comparison.id).desc()
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def select_comparisons(session: Session, cutoff: datetime, settings: Settings) -> Selection:
    """The comparisons an issue frozen at ``cutoff`` features."""
    since = window_start(cutoff, settings)
    # Unlimited, then screened: a comparison that cannot be rendered must not take one
    # of the issue's places week after week (the window bounds the list).
    chosen, skipped = screen(unfeatured(session, settings, since=since, until=cutoff))
    chosen = chosen[: settings.max_comparisons]
    logger.info("%d new comparisons between %s and %s", len(chosen), since, cutoff)
    return Selection(
        since=since,
        cutoff=cutoff,
        full=chosen[: settings.full_cards],
        links=chosen[settings.full_cards :],
        skipped=skipped,
    )


def addable(session: Session, settings: Settings, now: datetime) -> list[Comparison]:
    """What an editor may add to a draft: comparisons no issue features, published
    within the max age of now (later than the draft's cutoff too: the editor chose)."""
    return screen(unfeatured(session, settings, since=window_start(now, settings)))[0]
