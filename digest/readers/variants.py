"""The issue as each preference set among its recipients gets it, compiled once per set.

When an issue starts sending, the active readers are grouped by what they chose
(topics, frequency). For every group the issue's comparisons are filtered to the
group's topics — keeping the editor's order and full cards — and compiled once into
an :class:`~digest.store.models.IssueVariant`; a group whose topics have nothing this time
gets no email (its rows are ``skipped`` with the reason). Readers who want every topic
every week get the issue itself, as before.

Monthly readers get only the **round-up**: the first issue that starts in a calendar
month (in ``DIGEST_TIMEZONE``) carries, for them, every comparison that the issues of
the month before featured, filtered to their topics. Other issues skip them.

Planning is idempotent: a variant is found by (issue, preference set) before one is
compiled, so a resumed or joined send compiles nothing twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from digest.core.settings import Settings
from digest.delivery.queue import Audience
from digest.issue.clicks import linker
from digest.issue.freeze import issue_rows, issue_takes
from digest.issue.history import record
from digest.issue.render import render_issue
from digest.readers.words import copy_words
from digest.store.models import (
    Comparison,
    Delivery,
    DeliveryState,
    Issue,
    IssueComparison,
    IssueVariant,
)
from digest.store.subscriber_models import Subscriber
from subscribers.preferences import (
    MONTHLY,
    WEEKLY,
    PreferenceSet,
    comparison_topics,
    preference_sets,
    topics_list,
)

logger = logging.getLogger(__name__)

S = Subscriber.__table__  # type: ignore[attr-defined]

NOTHING_IN_TOPICS = "nothing in your topics this time: no email rather than an empty one"
MONTHLY_ONLY = "monthly reader: this comes in the month's round-up"


@dataclass(frozen=True)
class Slice:
    """One preference set's share of the audience: its variant, or why it gets nothing."""

    preferences: PreferenceSet
    variant_id: int | None
    skipped: str | None = None

    def where(self) -> tuple[object, ...]:
        topics = self.preferences.topics
        return (
            S.c.topics.is_(None) if topics is None else S.c.topics == topics,
            S.c.frequency == self.preferences.frequency,
        )

    def audience(self) -> Audience:
        if self.skipped:
            return Audience(self.where(), state=DeliveryState.SKIPPED, note=self.skipped)
        return Audience(self.where(), variant_id=self.variant_id)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def is_roundup(
    session: Session, settings: Settings, issue: Issue, started: datetime | None = None
) -> bool:
    """The first issue to start in its local calendar month (``started``: when a draft
    would start, for its preview)."""
    started = started or issue.started_at
    if started is None:
        return False
    tz = settings.tz
    first = datetime.combine(_month_start(started.astimezone(tz).date()), time(0), tzinfo=tz)
    earlier = session.exec(
        select(Issue.id).where(
            col(Issue.started_at) >= first,
            col(Issue.started_at) < started,
            Issue.id != issue.id,
        )
    ).first()
    return earlier is None


def roundup_rows(
    session: Session, settings: Settings, issue: Issue, started: datetime | None = None
) -> tuple[str, list[tuple[Comparison, bool]]]:
    """The month before the issue's, and the comparisons its issues featured (newest
    first; the first ``DIGEST_FULL_CARDS`` get cards)."""
    started = started or issue.started_at
    assert started is not None
    tz = settings.tz
    this_month = _month_start(started.astimezone(tz).date())
    last_month = _month_start(this_month - timedelta(days=1))
    start = datetime.combine(last_month, time(0), tzinfo=tz)
    end = datetime.combine(this_month, time(0), tzinfo=tz)
    featured = session.exec(
        select(Comparison)
        .join(IssueComparison, col(IssueComparison.comparison_id) == Comparison.id)
        .join(Issue, col(Issue.id) == IssueComparison.issue_id)
        .where(col(Issue.started_at) >= start, col(Issue.started_at) < end)
        .order_by(col(Comparison.published_at).desc())
    ).all()
    unique = list({c.id: c for c in featured}.values())
    label = f"{last_month:%B %Y}"
    return label, [(c, i < settings.full_cards) for i, c in enumerate(unique)]


def filtered(
    rows: list[tuple[Comparison, bool]], topics: list[str] | None
) -> list[tuple[Comparison, bool]]:
    if topics is None:
        return rows
    wanted = set(topics)
    kept = [(c, full) for c, full in rows if comparison_topics(c) & wanted]
    if kept and not any(full for _c, full in kept):
        kept[0] = (kept[0][0], True)  # a reader's issue leads with a card
    return kept


def _compile(
    session: Session,
    settings: Settings,
    issue: Issue,
    preferences: PreferenceSet,
    rows: list[tuple[Comparison, bool]],
    month: str | None,
) -> IssueVariant:
    assert issue.id is not None
    comparisons = [c for c, _ in rows]
    words = copy_words(issue, preferences.key, comparisons, month)
    rendered = render_issue(
        week=issue.week,
        number=issue.number,
        full=[c for c, full in rows if full],
        links=[c for c, full in rows if not full],
        settings=settings,
        subject=words.subject,
        preheader=words.preheader,
        intro=words.intro,
        linker=linker(session, settings, issue.id),
        note=words.note,
        takes=issue_takes(session, issue) if month is None else None,
    )
    variant = IssueVariant(
        issue_id=issue.id,
        key=preferences.key,
        topics=preferences.topics,
        frequency=preferences.frequency,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        comparisons=json.dumps([c.slug for c in comparisons]),
        recipients=preferences.readers,
    )
    session.add(variant)
    session.flush()
    return variant


def plan(
    session: Session, settings: Settings, issue: Issue, actor: str = "cli"
) -> list[Slice] | None:
    """How the issue's audience divides, compiling any variant not compiled yet; None
    when every active reader wants everything every week (the issue as it is)."""
    conn = session.connection()
    sets = preference_sets(conn)
    if all(s.topics is None and s.frequency == WEEKLY for s in sets):
        return None
    assert issue.id is not None
    known = {
        v.key: v
        for v in session.exec(select(IssueVariant).where(IssueVariant.issue_id == issue.id))
    }
    weekly_rows = issue_rows(session, issue)
    roundup = is_roundup(session, settings, issue)
    month, monthly_rows = roundup_rows(session, settings, issue) if roundup else ("", [])
    slices: list[Slice] = []
    compiled = 0
    for preferences in sets:
        monthly = preferences.frequency == MONTHLY
        if monthly and not roundup:
            slices.append(Slice(preferences, None, MONTHLY_ONLY))
            continue
        if not monthly and preferences.topics is None:
            slices.append(Slice(preferences, None))  # the issue itself
            continue
        rows = filtered(monthly_rows if monthly else weekly_rows, topics_list(preferences.topics))
        if not rows:
            slices.append(Slice(preferences, None, NOTHING_IN_TOPICS))
            continue
        variant = known.get(preferences.key)
        if variant is None:
            variant = _compile(
                session, settings, issue, preferences, rows, month if monthly else None
            )
            compiled += 1
        slices.append(Slice(preferences, variant.id))
    if compiled:
        record(
            session,
            issue.id,
            actor,
            "variants",
            compiled=compiled,
            sets=len(sets),
            roundup=roundup,
        )
    logger.info(
        "issue %s: %d preference sets, %d variants compiled now", issue.label, len(sets), compiled
    )
    return slices


def variant_summary(
    session: Session, issue_id: int, subject: str | None = None
) -> list[dict[str, object]]:
    """For status and the console: each compiled variant and how many of the issue's
    deliveries it is (the issue itself is the variant ``null``)."""
    D = Delivery.__table__  # type: ignore[attr-defined]
    conn = session.connection()
    per_variant: dict[int | None, int] = dict(
        conn.execute(
            select(D.c.variant_id, func.count())
            .where(D.c.issue_id == issue_id, D.c.state != DeliveryState.SKIPPED.value)
            .group_by(D.c.variant_id)
        ).all()
    )
    rows = session.exec(
        select(IssueVariant).where(IssueVariant.issue_id == issue_id).order_by(col(IssueVariant.id))
    ).all()
    variants: list[dict[str, object]] = [
        {
            "id": v.id,
            "frequency": v.frequency,
            "topics": topics_list(v.topics),
            "recipients": int(per_variant.get(v.id, 0)),
            "comparisons": json.loads(v.comparisons),
            "subject": v.subject,
        }
        for v in rows
    ]
    if per_variant.get(None):
        variants.insert(
            0,
            {
                "id": None,
                "frequency": WEEKLY,
                "topics": None,
                "recipients": int(per_variant[None]),
                "comparisons": None,
                "subject": subject,
            },
        )
    return variants
