"""Issues: freeze the next one, find one, and let editors adjust a draft.

Issues are numbered #1, #2, … in the order they are frozen, and at most one issue is
open (draft, sending or paused) at a time: the next one is frozen only when the last
one has been sent or cancelled. Freezing takes a lock first (an UPDATE of the one
``issue_counter`` row), so two schedulers or senders at once freeze one issue between
them, on SQLite and PostgreSQL alike.

What an editor previews is byte-for-byte what is sent: the HTML and text are stored on
the issue, and every edit re-compiles them and is written to the issue's history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from digest.core.clock import local_text, utcnow, week_bounds, week_of
from digest.core.settings import Settings
from digest.exceptions import IssueStateError
from digest.issue.clicks import linker
from digest.issue.history import record
from digest.issue.render import default_intro
from digest.issue.screen import Skipped, render_screened
from digest.issue.selection import Selection, select_comparisons
from digest.mail.message import IssueMessage
from digest.store.models import (
    OPEN_ISSUE_STATES,
    Comparison,
    Issue,
    IssueComparison,
    IssueCounter,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- finding issues


def find_issue(
    session: Session, *, number: int | None = None, week: str | None = None
) -> Issue | None:
    """Issue ``number``, or the newest issue labelled ``week``."""
    query = select(Issue)
    if number is not None:
        query = query.where(Issue.number == number)
    if week is not None:
        query = query.where(Issue.week == week)
    return session.exec(query.order_by(col(Issue.number).desc())).first()


def latest_issue(session: Session) -> Issue | None:
    return session.exec(select(Issue).order_by(col(Issue.number).desc())).first()


def open_issue(session: Session) -> Issue | None:
    """The issue that is a draft, sending or paused, if any (there is at most one)."""
    return session.exec(
        select(Issue)
        .where(col(Issue.state).in_([s.value for s in OPEN_ISSUE_STATES]))
        .order_by(col(Issue.number).desc())
    ).first()


def target_issue(
    session: Session, *, number: int | None = None, week: str | None = None
) -> Issue | None:
    """What a command without ``--issue``/``--week`` acts on: the open issue, else the
    newest; with one of them, that issue (None if there is none)."""
    if number is not None or week is not None:
        return find_issue(session, number=number, week=week)
    return open_issue(session) or latest_issue(session)


def issue_rows(session: Session, issue: Issue) -> list[tuple[Comparison, bool]]:
    """The issue's comparisons in order, each with whether it has a full card."""
    rows = session.exec(
        select(Comparison, IssueComparison.full)
        .join(IssueComparison, col(IssueComparison.comparison_id) == Comparison.id)
        .where(IssueComparison.issue_id == issue.id)
        .order_by(col(IssueComparison.position))
    ).all()
    return [(c, bool(full)) for c, full in rows]


def issue_takes(session: Session, issue: Issue) -> dict[str, str]:
    """The editor's one-line take per comparison slug (only those that have one)."""
    rows = session.exec(
        select(Comparison.slug, IssueComparison.take)
        .join(IssueComparison, col(IssueComparison.comparison_id) == Comparison.id)
        .where(IssueComparison.issue_id == issue.id)
    ).all()
    return {slug: take for slug, take in rows if take}


def issue_comparisons(session: Session, issue: Issue) -> tuple[list[Comparison], list[Comparison]]:
    rows = issue_rows(session, issue)
    return [c for c, full in rows if full], [c for c, full in rows if not full]


def started_in_week(session: Session, settings: Settings, moment: datetime) -> Issue | None:
    """An issue whose send started in the local ISO week of ``moment``."""
    start, end = week_bounds(week_of(moment, settings.tz), settings.tz)
    return session.exec(
        select(Issue)
        .where(col(Issue.started_at) >= start, col(Issue.started_at) < end)
        .order_by(col(Issue.number).desc())
    ).first()


# ---------------------------------------------------------------- freezing


@dataclass(frozen=True)
class Frozen:
    """What :func:`freeze_next` found or made: ``issue`` (None when nothing is new, and
    then ``nothing_new`` names the window it looked at) and whether it is new."""

    issue: Issue | None
    created: bool = False
    nothing_new: str | None = None
    #: New comparisons left out because they cannot be rendered, with the reason.
    skipped: tuple[Skipped, ...] = ()


def _lock(session: Session) -> int:
    """Serialise freezes; returns the last number handed out."""
    locked = session.exec(
        update(IssueCounter)
        .where(col(IssueCounter.id) == 1)
        .values(last_number=IssueCounter.last_number)
    ).rowcount
    if not locked:  # a database created before the counter existed
        highest = session.exec(select(func.max(Issue.number))).one() or 0
        session.add(IssueCounter(id=1, last_number=highest))
        session.flush()
        return int(highest)
    return int(session.exec(select(IssueCounter.last_number).where(IssueCounter.id == 1)).one())


def nothing_new_message(session: Session, settings: Settings, selection: Selection) -> str:
    said = _nothing_new(session, settings, selection)
    if selection.skipped:
        said += "; " + "; ".join(str(s) for s in selection.skipped)
    return said


def _nothing_new(session: Session, settings: Settings, selection: Selection) -> str:
    last = latest_issue(session)
    if last is not None:
        return (
            f"nothing new since issue #{last.number}, frozen "
            f"{local_text(last.cutoff, settings.tz)}: no comparison published since "
            f"{local_text(selection.since, settings.tz)} that no issue featured"
        )
    return (
        f"nothing new: no comparison published between {local_text(selection.since, settings.tz)}"
        f" and {local_text(selection.cutoff, settings.tz)} (DIGEST_MAX_AGE_DAYS="
        f"{settings.max_age_days})"
    )


def cutoff_for(week: str | None, settings: Settings, now: datetime) -> datetime:
    """When an issue frozen ``now`` stops looking: now, or the end of ``week``."""
    if week is None:
        return now
    start, end = week_bounds(week, settings.tz)
    if start > now:
        raise IssueStateError(f"week {week} has not begun; an issue is frozen from what is new")
    return min(now, end)


def freeze_next(
    session: Session,
    settings: Settings,
    *,
    now: datetime | None = None,
    week: str | None = None,
    scheduled_for: datetime | None = None,
    actor: str = "cli",
) -> Frozen:
    """The open issue, or a new draft frozen now from what is new.

    ``week`` (a past or the current ISO week) freezes as of the end of that week and
    labels the issue with it, for catching up by hand; otherwise the label is the week
    it is scheduled for (or frozen in). Raises IssueStateError when ``week`` names
    another week than the open issue's.
    """
    now = now or utcnow()
    cutoff = cutoff_for(week, settings, now)
    last_number = _lock(session)
    current = open_issue(session)
    if current is not None:
        if week is not None and current.week != week:
            raise IssueStateError(
                f"issue {current.label} is still {current.state}; send or cancel it before "
                f"freezing one for {week}"
            )
        return Frozen(current)
    selection = select_comparisons(session, cutoff, settings)
    if not selection.all:
        return Frozen(
            None,
            nothing_new=nothing_new_message(session, settings, selection),
            skipped=tuple(selection.skipped),
        )
    number = last_number + 1
    label = week or week_of(scheduled_for or cutoff, settings.tz)
    issue = Issue(
        number=number,
        week=label,
        cutoff=cutoff,
        subject="",
        preheader="",
        # Stored as rendered, so the edit form shows it and emptying it means none.
        intro=default_intro(selection.all),
        scheduled_for=scheduled_for,
        created_at=now,
        updated_at=now,
    )
    session.add(issue)
    session.flush()  # its id names the counted links it renders with
    assert issue.id is not None
    done = render_screened(
        week=label,
        number=number,
        full=selection.full,
        links=selection.links,
        settings=settings,
        linker=linker(session, settings, issue.id),
    )
    skipped = (*selection.skipped, *done.skipped)
    if done.rendered is None:
        session.delete(issue)
        session.flush()
        left = replace(selection, full=[], links=[], skipped=list(skipped))
        return Frozen(
            None, nothing_new=nothing_new_message(session, settings, left), skipped=skipped
        )
    rendered = done.rendered
    issue.subject, issue.preheader = rendered.subject, rendered.preheader
    issue.html, issue.text = rendered.html, rendered.text
    session.add(issue)
    arrange(session, issue.id, [*((c, True) for c in done.full), *((c, False) for c in done.links)])
    session.exec(update(IssueCounter).where(col(IssueCounter.id) == 1).values(last_number=number))
    record(
        session,
        issue.id,
        actor,
        "frozen",
        cutoff=cutoff.isoformat(),
        comparisons=[c.slug for c in (*done.full, *done.links)],
        full_cards=len(done.full),
        **({"skipped": [str(s) for s in skipped]} if skipped else {}),
    )
    logger.info("froze issue %s with %d comparisons", issue.label, len(done.full) + len(done.links))
    return Frozen(issue, created=True, skipped=skipped)


def freeze_issue(session: Session, week: str, settings: Settings) -> Issue | None:
    """The newest issue labelled ``week``, or one frozen now as of the end of that week
    (catching up by hand); None when nothing is new."""
    return find_issue(session, week=week) or freeze_next(session, settings, week=week).issue


def arrange(
    session: Session,
    issue_id: int,
    rows: Sequence[tuple[Comparison, bool]],
    takes: dict[str, str] | None = None,
) -> None:
    """Store the issue's comparisons in this order (with the editor's takes)."""
    takes = takes or {}
    session.exec(delete(IssueComparison).where(col(IssueComparison.issue_id) == issue_id))
    for position, (comparison, full) in enumerate(rows):
        assert comparison.id is not None
        session.add(
            IssueComparison(
                issue_id=issue_id,
                comparison_id=comparison.id,
                position=position,
                full=full,
                take=takes.get(comparison.slug) or None,
            )
        )
    session.flush()


def issue_message(issue: Issue, settings: Settings, *, test: bool = False) -> IssueMessage:
    assert issue.id is not None
    return IssueMessage(
        issue_id=issue.id,
        week=issue.week,
        number=issue.number,
        subject=issue.subject,
        html=issue.html,
        text=issue.text,
        settings=settings,
        date=issue.started_at or utcnow(),
        test=test,
    )
