"""When issues go out, and what the scheduler does about it.

``DIGEST_SEND_CRON`` (a crontab line in ``DIGEST_TIMEZONE``) names the send slots.
:func:`scheduler_tick`, run every minute by ``scheduler.py``, opens the review window
``DIGEST_REVIEW_HOURS`` before a slot — it freezes the next issue as a draft scheduled
for that slot and mails the reviewers — and sends a draft whose slot has passed once it
may go (an editor approved it late, or released a hold). The slot itself is the cron
job's: :func:`digest.jobs.weekly.weekly_job` with ``scheduled=True``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.core.clock import local_text, utcnow
from digest.core.settings import Settings
from digest.delivery.queue import next_wakeup
from digest.editorial.review import blocked_reason
from digest.exceptions import ConfigError, IssueStateError
from digest.issue.freeze import Frozen, find_issue, freeze_next, open_issue, started_in_week
from digest.issue.history import record
from digest.jobs.weekly import weekly_job
from digest.notices.reviewers import notify_reviewers
from digest.store.engine import session_scope
from digest.store.models import Issue, IssueState
from digest.transports import Transport

logger = logging.getLogger(__name__)

_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: The cron job and the tick never run at once in one scheduler process.
RUN_LOCK = threading.Lock()


def _crontab_dow(field: str) -> str:
    """A crontab day-of-week field in APScheduler's terms.

    Crontab counts 0 (and 7) as Sunday, but APScheduler 3's ``CronTrigger`` counts 0 as
    Monday even in ``from_crontab``: ``0 9 * * 1`` would fire on Tuesdays. Numeric days
    and stepped ranges are therefore spelled out as names, which both agree on.
    """
    parts: list[str] = []
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        numeric_span = span == "*" or all(p.isdigit() for p in span.split("-"))
        if not numeric_span or (span == "*" and not step_text):
            parts.append(part)  # names ("mon-fri") and a bare "*" mean the same in both
            continue
        if span == "*":
            first, last = 0, 6
        else:
            bounds = [int(p) for p in span.split("-")]
            first, last = bounds[0], bounds[-1]
            if step_text and len(bounds) == 1:
                last = 6  # crontab "1/2" = from Monday to the end of the week
        step = int(step_text) if step_text.isdigit() else 1
        if not (0 <= first <= last <= 7) or step < 1:
            raise ValueError(f"day of week {part!r} is out of range 0-7")
        parts.extend(_DOW_NAMES[day] for day in range(first, last + 1, step))
    return ",".join(dict.fromkeys(parts))


def cron_trigger(settings: Settings) -> CronTrigger:
    """The trigger ``DIGEST_SEND_CRON`` describes, in ``DIGEST_TIMEZONE``."""
    fields = settings.send_cron.split()
    try:
        if len(fields) != 5:
            raise ValueError(
                f"expected 5 fields (minute hour day month weekday), got {len(fields)}"
            )
        minute, hour, day, month, dow = fields
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_crontab_dow(dow),
            timezone=settings.tz,
        )
    except ValueError as exc:
        raise ConfigError(
            f"DIGEST_SEND_CRON {settings.send_cron!r} is not a cron line: {exc}"
        ) from exc


def next_send(settings: Settings, now: datetime | None = None) -> datetime | None:
    """The first send slot after ``now``."""
    now = now or utcnow()
    fire = cron_trigger(settings).get_next_fire_time(None, now.astimezone(settings.tz))
    return fire


def scheduler_tick(
    settings: Settings,
    *,
    engine: Engine,
    now: datetime | None = None,
    transport: Transport | None = None,
) -> str | None:
    """One look at the schedule (see the module doc); returns what it did, if anything."""
    now = now or utcnow()
    with Session(engine) as session:
        current = open_issue(session)
        if current is not None:
            due = (
                current.state == IssueState.DRAFT
                and current.scheduled_for is not None
                and current.scheduled_for <= now
            )
            if current.state == IssueState.SENDING and current.id is not None:
                # A send still in progress with deliveries due now (the next local-time
                # wave, retries after a restart): carry it on.
                wait = next_wakeup(engine, current.id, now)
                due = wait is not None and wait <= 0
            if not due:
                return None
            slot = None
        else:
            if settings.review_hours <= 0:
                return None
            slot = next_send(settings, now)
            if slot is None or now < slot - timedelta(hours=settings.review_hours):
                return None
            if started_in_week(session, settings, slot) is not None:
                return None  # that slot's week had its issue already
    if slot is None:
        result = weekly_job(
            settings,
            engine=engine,
            transport=transport,
            now=now,
            scheduled=True,
            actor="scheduler",
        )
        return result.summary()
    with session_scope(engine) as session:
        frozen = freeze_next(session, settings, now=now, scheduled_for=slot, actor="scheduler")
        issue_id = frozen.issue.id if frozen.issue is not None else None
        created = frozen.created
    if issue_id is None or not created:
        return None
    report = notify_reviewers(engine, settings, issue_id, transport)
    return (
        f"froze issue for review (slot {slot:%Y-%m-%d %H:%M %Z}); notified "
        f"{len(report.notified)} reviewers"
        + (f", {len(report.failed)} failed" if report.failed else "")
    )


def prepare_draft(
    session: Session,
    settings: Settings,
    *,
    number: int | None = None,
    week: str | None = None,
    now: datetime | None = None,
    actor: str = "cli",
) -> Frozen:
    """The issue an editor works on: issue ``number`` or the newest labelled ``week``,
    else the open issue, else the next issue frozen now as a draft for the next slot."""
    now = now or utcnow()
    if number is not None or week is not None:
        issue = find_issue(session, number=number, week=week)
        if issue is not None:
            return Frozen(issue)
        if number is not None:
            raise IssueStateError(f"there is no issue #{number}")
    else:
        issue = open_issue(session)
        if issue is not None:
            return Frozen(issue)
    slot = None if week is not None else next_send(settings, now)
    return freeze_next(session, settings, now=now, week=week, scheduled_for=slot, actor=actor)


# ---------------------------------------------------------------- an editor's time


def local_moment(text: str, tz: ZoneInfo) -> datetime:
    """A date and time as a person in ``tz`` writes it (``2026-12-10T09:30``, what a
    datetime-local field sends) as an instant; ValueError for anything else, or a time
    the clocks skip that day."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is not None:
        raise ValueError("give the local date and time without a zone")
    aware = moment.replace(tzinfo=tz)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != moment:
        raise ValueError(f"{moment:%Y-%m-%d %H:%M} does not exist in {tz.key} (the clocks skip it)")
    return aware.astimezone(UTC)


def schedule_issue(
    session: Session,
    settings: Settings,
    issue: Issue,
    at: datetime | None,
    *,
    now: datetime | None = None,
    actor: str = "cli",
) -> bool:
    """Send draft ``issue`` at ``at`` (None: with the next regular send slot). Refused
    for a time past, or in a week another issue went out in (one issue a week: an
    operator sends a second one by hand, ``digest send --again``). Recorded in the
    issue's history; returns whether anything changed."""
    now = now or utcnow()
    if issue.state != IssueState.DRAFT:
        raise IssueStateError(f"issue {issue.label} is {issue.state}; only a draft is scheduled")
    assert issue.id is not None
    tz = settings.tz
    if at is not None:
        if at <= now:
            raise IssueStateError(f"{local_text(at, tz)} has passed; pick a time to come")
        other = started_in_week(session, settings, at)
        if other is not None and other.id != issue.id:
            raise IssueStateError(
                f"issue #{other.number} went out in the week of {local_text(at, tz)}: one "
                "issue a week. Pick a time in a later week, or an operator sends this one "
                "by hand (`digest send --again`)"
            )
    if at == issue.scheduled_for:
        return False
    before = local_text(issue.scheduled_for, tz) if issue.scheduled_for else None
    issue.scheduled_for = at
    issue.updated_at = now
    session.add(issue)
    if at is None:
        slot = next_send(settings, now)
        record(
            session,
            issue.id,
            actor,
            "unscheduled",
            before=before,
            then=f"with the next regular send, {local_text(slot, tz)}" if slot else None,
        )
    else:
        record(session, issue.id, actor, "scheduled", time=local_text(at, tz), before=before)
    return True


def _is_slot(settings: Settings, moment: datetime) -> bool:
    return next_send(settings, moment - timedelta(seconds=1)) == moment


@dataclass(frozen=True)
class NextSend:
    """When a draft goes out (None: it does not by itself) and what stands in the way."""

    at: datetime | None
    why: str


def when_it_goes(
    session: Session, settings: Settings, issue: Issue, now: datetime | None = None
) -> NextSend | None:
    """The real next send of a draft: its own time, else the next send slot; a week
    that had its issue pushes a scheduled send to the next week's slot; a draft that
    waits for approval (or is held) goes only once it may. None for other states."""
    if issue.state != IssueState.DRAFT:
        return None
    now = now or utcnow()
    at: datetime | None = issue.scheduled_for or next_send(settings, now)
    own = at is not None and issue.scheduled_for is not None and not _is_slot(settings, at)
    why = "its own time" if own else "the next regular send"
    if at is not None and at < now:
        at, why = now, "due now: goes within the minute"
    if at is not None:
        other = started_in_week(session, settings, at)
        if other is not None and other.id != issue.id:
            slot: datetime | None = at
            while slot is not None and started_in_week(session, settings, slot) is not None:
                slot = next_send(settings, slot + timedelta(minutes=1))
            at, why = slot, f"issue #{other.number} went out that week: the next week's send"
    blocked = blocked_reason(issue, settings)
    if blocked is not None:
        why = f"{why}, once it may go: {blocked.split(';')[0]}"
    return NextSend(at, why)
