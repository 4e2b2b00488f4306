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
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digest.core.clock import local_text, utcnow, week_bounds, week_of
from digest.core.settings import Settings
from digest.core.wording import plural
from digest.delivery.queue import next_wakeup
from digest.exceptions import ConfigError, IssueStateError
from digest.issue.freeze import Frozen, find_issue, freeze_next, open_issue, started_in_week
from digest.issue.history import record
from digest.jobs.weekly import weekly_job
from digest.notices.reviewers import notify_reviewers
from digest.store.engine import session_scope
from digest.store.models import Issue, IssueState, ReviewState
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


# ---------------------------------------------------------------- the send plan

#: ``SendPlan.why_not``: why the scheduler will not send an issue at its own time.
WHY_SENT, WHY_SENDING, WHY_PAUSED, WHY_CANCELLED = "sent", "sending", "paused", "cancelled"
WHY_HELD, WHY_AWAITING = "held", "awaiting-approval"
WHY_ALREADY, WHY_NO_SLOT = "already-sent-this-week", "no-slot"
#: Weeks looked ahead for one with no issue yet (more would mean a cron line that
#: fires in no free week, which ``no-slot`` then says).
_WEEKS_AHEAD = 8


@dataclass(frozen=True)
class SendPlan:
    """When an issue goes out and, if the scheduler will not send it at its time, why.

    ``review`` is ``pending``, ``approved`` or ``held`` for a draft, and once the send
    started ``approved`` or ``unreviewed`` (it went out without an editor's approval).
    ``next_send`` is set only when the scheduler will really send the issue then;
    ``why_not`` names why it is not sent at its own time (one of the ``WHY_*`` codes);
    ``text`` says both in one line, in ``DIGEST_TIMEZONE``.
    """

    state: str
    review: str
    next_send: datetime | None
    why_not: str | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "review": self.review,
            "next_send": self.next_send.isoformat() if self.next_send else None,
            "why_not": self.why_not,
            "text": self.text,
        }


def shown_review(issue: Issue) -> str:
    """The review as it stands: a started issue that no editor approved is
    ``unreviewed``, never ``pending`` (nothing is waiting any more)."""
    if issue.state == IssueState.DRAFT or issue.review == ReviewState.APPROVED:
        return str(issue.review)
    return "unreviewed"


def send_plan(
    session: Session, settings: Settings, issue: Issue, now: datetime | None = None
) -> SendPlan:
    """When does ``issue`` go out, and if not at its time, why not.

    The one place that answers it: the console's issue list and issue page,
    ``digest status --json``, ``digest history`` and :func:`scheduler_tick` (which sends a
    draft once its ``next_send`` has come) all ask here, so what they show is what the
    scheduler does. A draft goes at its ``scheduled_for`` (the slot it was frozen for; a
    per-issue time set by an editor lands there too), else at the next
    ``DIGEST_SEND_CRON`` slot; a time that passed while it waited for approval means the
    next minute. Not when held, or awaiting approval under ``DIGEST_REQUIRE_APPROVAL``;
    and one issue a week: in a week that already had one it moves to the first slot of
    the next week that has none.
    """
    now = now or utcnow()
    tz = settings.tz
    review = shown_review(issue)

    def plan(next_send: datetime | None, why: str | None, text: str) -> SendPlan:
        return SendPlan(str(issue.state), review, next_send, why, text)

    if issue.state == IssueState.SENT:
        when = local_text(issue.started_at, tz) if issue.started_at else "at an unknown time"
        return plan(None, WHY_SENT, f"sent {when}")
    if issue.state == IssueState.SENDING:
        since = f" since {local_text(issue.started_at, tz)}" if issue.started_at else ""
        return plan(None, WHY_SENDING, f"sending{since}")
    if issue.state == IssueState.PAUSED:
        why = f" ({issue.state_reason})" if issue.state_reason else ""
        return plan(None, WHY_PAUSED, f"paused{why}; goes on when an operator resumes it")
    if issue.state == IssueState.CANCELLED:
        return plan(None, WHY_CANCELLED, "cancelled; nothing more goes out")
    if issue.review == ReviewState.HELD:
        who = f" by {issue.reviewed_by}" if issue.reviewed_by else ""
        note = f": {issue.review_note}" if issue.review_note else ""
        return plan(
            None,
            WHY_HELD,
            f"not sent: held{who}{note}; it goes once an editor approves it or releases the hold",
        )
    if settings.require_approval and issue.review != ReviewState.APPROVED:
        return plan(
            None,
            WHY_AWAITING,
            "not sent: awaiting an editor's approval (DIGEST_REQUIRE_APPROVAL=true)",
        )
    own = issue.scheduled_for or next_send(settings, now)
    slot, other = own, None
    for _ in range(_WEEKS_AHEAD):
        if slot is None:
            break
        # Its own week, and the week it actually goes in when its time passed: each
        # must have had no other issue, or it waits for the first slot after that week.
        taken = [
            (found, moment)
            for moment in (slot, max(slot, now))
            if (found := started_in_week(session, settings, moment)) is not None
            and found.id != issue.id
        ]
        if not taken:
            break
        other, moment = taken[0]
        slot = next_send(settings, week_bounds(week_of(moment, tz), tz)[1])
    else:
        slot = None
    if slot is None:
        return plan(
            None,
            WHY_NO_SLOT,
            "not scheduled: DIGEST_SEND_CRON names no send time ahead; an operator sends it",
        )
    at = max(slot, now)
    if slot <= now:
        when = f"within a minute (its time, {local_text(slot, tz)}, has passed)"
    else:
        when = local_text(slot, tz)
    if other is not None and own is not None:
        return plan(
            at,
            WHY_ALREADY,
            f"goes out {when}, not {local_text(own, tz)}: issue "
            f"#{other.number} already went out that week (one issue a week)",
        )
    return plan(at, None, f"goes out {when}")


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
            # A draft goes when its plan says so, and only then: the console and
            # `digest status` show that same plan. A draft frozen without a slot is the
            # cron job's (it sends the open issue at the slot).
            due = False
            if current.state == IssueState.DRAFT and current.scheduled_for is not None:
                upcoming = send_plan(session, settings, current, now).next_send
                due = upcoming is not None and upcoming <= now
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
        f"{plural(len(report.notified), 'reviewer')}"
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
