"""The week's newest comparisons (DESIGN §4.1).

An issue for ISO week W features comparisons published in the seven days before its
cutoff (Monday 00:00 of W in ``DIGEST_TIMEZONE``) that no other issue featured, newest
first; the first ``DIGEST_FULL_CARDS`` get full cards, the rest compact links.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists
from sqlmodel import Session, col, select

from digest.config import Settings
from digest.models import Comparison, Issue, IssueComparison
from digest.timeutil import window

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    week: str
    start: datetime
    cutoff: datetime
    full: list[Comparison]
    links: list[Comparison]

    @property
    def all(self) -> list[Comparison]:
        return [*self.full, *self.links]


def select_comparisons(session: Session, week: str, settings: Settings) -> Selection:
    start, cutoff = window(week, settings.tz)
    featured_elsewhere = exists().where(
        col(IssueComparison.comparison_id) == col(Comparison.id),
        col(IssueComparison.issue_id) == col(Issue.id),
        col(Issue.week) != week,
    )
    rows = session.exec(
        select(Comparison)
        .where(col(Comparison.published_at) >= start)
        .where(col(Comparison.published_at) < cutoff)
        .where(~featured_elsewhere)
        .order_by(col(Comparison.published_at).desc(), col(Comparison.id).desc())
        .limit(settings.max_comparisons)
    ).all()
    chosen = list(rows)
    logger.info("week %s: %d comparisons between %s and %s", week, len(chosen), start, cutoff)
    return Selection(
        week=week,
        start=start,
        cutoff=cutoff,
        full=chosen[: settings.full_cards],
        links=chosen[settings.full_cards :],
    )
