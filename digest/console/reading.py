"""What the console shows of the per-reader digest: an issue's variants (one compile
per preference set) and local-time waves, its clicks per comparison, and which
comparisons readers opened most over the last issues. Counts only: no table says
which reader clicked what, so editors see these too."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlmodel import Session

from digest.console.svg import hbar_chart
from digest.core.settings import Settings
from digest.core.wording import plural
from digest.delivery.queue import OPEN_STATES
from digest.issue.clicks import clicks_by_comparison, most_read
from digest.readers.variants import variant_summary
from digest.readers.waves import waves
from digest.store.models import DeliveryState, Issue, IssueState
from subscribers.preferences import preference_sets, topics_list

logger = logging.getLogger(__name__)

CLICK_COLOR, READ_COLOR = "#1d4ed8", "#15803d"
RECENT_ISSUES = 8
PENDING = {state.value for state in OPEN_STATES}


@dataclass(frozen=True)
class Wave:
    at: datetime
    zones: list[str]
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def sent(self) -> int:
        return self.counts.get(DeliveryState.SENT.value, 0)

    @property
    def to_come(self) -> int:
        return sum(n for state, n in self.counts.items() if state in PENDING)


@dataclass
class Reading:
    variants: list[dict[str, Any]] = field(default_factory=list)
    waves: list[Wave] = field(default_factory=list)
    clicks: list[dict[str, Any]] = field(default_factory=list)
    clicks_chart: Markup | None = None
    #: a draft's readers by preference set: what its start will compile
    preference_sets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_clicks(self) -> int:
        return sum(int(c["clicks"]) for c in self.clicks)


def issue_reading(session: Session, issue: Issue, settings: Settings) -> Reading:
    assert issue.id is not None
    conn = session.connection()
    reading = Reading(
        variants=variant_summary(session, issue.id),
        waves=[
            Wave(
                datetime.fromisoformat(str(w["at"])),
                [z or f"{settings.tz.key} (default)" for z in w["zones"]],
                dict(w["counts"]),
            )
            for w in waves(conn, issue.id)
        ],
        clicks=clicks_by_comparison(conn, issue.id),
    )
    if issue.state == IssueState.DRAFT:
        reading.preference_sets = [
            {"topics": topics_list(p.topics), "frequency": p.frequency, "readers": p.readers}
            for p in sorted(preference_sets(conn), key=lambda p: (-p.readers, p.key))
        ]
    if reading.total_clicks:
        reading.clicks_chart = hbar_chart(
            "clicks",
            f"Clicks per comparison, issue #{issue.number}",
            f"{plural(reading.total_clicks, 'click')} on issue #{issue.number}'s links, by "
            "comparison (every link to it counted together).",
            [c["title"] for c in reading.clicks],
            [c["clicks"] for c in reading.clicks],
            CLICK_COLOR,
        )
    return reading


def most_read_chart(session: Session) -> tuple[list[dict[str, Any]], Markup | None]:
    """The comparisons readers opened most over the last issues, and its chart."""
    rows = most_read(session.connection(), RECENT_ISSUES)
    if not rows:
        return rows, None
    chart = hbar_chart(
        "most-read",
        f"Most read over the last {RECENT_ISSUES} issues",
        f"The {plural(len(rows), 'comparison')} readers clicked most across the last "
        f"{RECENT_ISSUES} issues; {rows[0]['title']} leads with {rows[0]['clicks']:,}.",
        [r["title"] for r in rows],
        [r["clicks"] for r in rows],
        READ_COLOR,
    )
    return rows, chart
