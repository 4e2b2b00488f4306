"""Every copy a send will produce, before it starts: for the console's side-by-side
previews, ``digest status --json`` and preflight.

The same division as :func:`digest.readers.variants.plan` — one copy per preference
set among the active readers, the issue itself for those who want everything every
week — but nothing is stored: a draft's copies follow its edits and its readers.
A draft that has no scheduled time is previewed as if it started now.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.issue.clicks import linker
from digest.issue.freeze import issue_rows, issue_takes
from digest.issue.render import RenderedIssue, render_issue
from digest.readers.variants import (
    MONTHLY_ONLY,
    NOTHING_IN_TOPICS,
    filtered,
    is_roundup,
    roundup_rows,
)
from digest.readers.words import Words, copy_words
from digest.store.models import Comparison, Issue
from subscribers.preferences import MONTHLY, WEEKLY, preference_sets, topics_list

logger = logging.getLogger(__name__)

ISSUE_KEY = f"{WEEKLY}|*"


@dataclass(frozen=True)
class Copy:
    """One copy the send will produce (or why a preference set gets none)."""

    key: str
    frequency: str
    topics: list[str] | None
    readers: int
    rows: list[tuple[Comparison, bool]]
    words: Words
    month: str | None = None
    skipped: str | None = None

    @property
    def ident(self) -> str:
        """A short, URL-safe name for the copy (its key hashed)."""
        return hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:12]

    @property
    def is_issue(self) -> bool:
        return self.key == ISSUE_KEY

    @property
    def label(self) -> str:
        topics = ", ".join(self.topics) if self.topics else "every topic"
        if self.frequency == MONTHLY:
            return f"Monthly round-up · {topics}"
        return "The issue itself · every topic, weekly" if self.is_issue else f"Weekly · {topics}"

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for c, _ in self.rows]

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "label": self.label,
            "frequency": self.frequency,
            "topics": self.topics,
            "recipients": self.readers,
            "subject": None if self.skipped else self.words.subject,
            "preheader": None if self.skipped else self.words.preheader,
            "comparisons": [c.slug for c in self.comparisons],
            "own_words": list(self.words.own),
            "skipped": self.skipped,
        }


def copies(
    session: Session, settings: Settings, issue: Issue, start: datetime | None = None
) -> list[Copy]:
    """Each copy of ``issue`` in the order: the issue itself, weekly sets, monthly sets."""
    start = start or issue.started_at or issue.scheduled_for or utcnow()
    rows = issue_rows(session, issue)
    sets = preference_sets(session.connection())
    roundup = any(s.frequency == MONTHLY for s in sets) and is_roundup(
        session, settings, issue, start
    )
    month, monthly_rows = roundup_rows(session, settings, issue, start) if roundup else ("", [])
    everyone = sum(s.readers for s in sets if s.frequency == WEEKLY and s.topics is None)
    out = [
        Copy(
            ISSUE_KEY,
            WEEKLY,
            None,
            everyone,
            rows,
            copy_words(issue, ISSUE_KEY, [c for c, _ in rows]),
        )
    ]
    for preferences in sorted(sets, key=lambda s: (s.frequency != WEEKLY, s.key)):
        monthly = preferences.frequency == MONTHLY
        if preferences.key == ISSUE_KEY:
            continue
        topics = topics_list(preferences.topics)
        kept = filtered(monthly_rows if monthly else rows, topics) if roundup or not monthly else []
        why = MONTHLY_ONLY if monthly and not roundup else None if kept else NOTHING_IN_TOPICS
        out.append(
            Copy(
                preferences.key,
                preferences.frequency,
                topics,
                preferences.readers,
                kept,
                copy_words(issue, preferences.key, [c for c, _ in kept], month if monthly else None)
                if kept
                else Words("", "", None, ""),
                month=month if monthly else None,
                skipped=why,
            )
        )
    return out


def render_copy(session: Session, settings: Settings, issue: Issue, copy: Copy) -> RenderedIssue:
    """The copy compiled as the send would compile it."""
    assert issue.id is not None
    return render_issue(
        week=issue.week,
        number=issue.number,
        full=[c for c, full in copy.rows if full],
        links=[c for c, full in copy.rows if not full],
        settings=settings,
        subject=copy.words.subject,
        preheader=copy.words.preheader,
        intro=copy.words.intro,
        linker=linker(session, settings, issue.id),
        note=copy.words.note,
        takes=issue_takes(session, issue) if copy.month is None else None,
    )
