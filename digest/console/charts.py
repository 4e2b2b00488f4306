"""Charts where people would rather look than read: subscribers over time (active,
new, unsubscribed, bounced — from subscriber timestamps and the consent log) and each
issue's delivered / bounced / complained rates (deliveries and provider events).
Aggregates only, so editors see them too."""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

import digest.console.reading as reading
from digest.console.auth import Editor
from digest.console.pages import render
from digest.console.svg import Series, bar_chart, line_chart
from digest.core.clock import utcnow
from digest.store.models import Delivery, Issue, IssueState, MailEventRecord
from digest.store.subscriber_models import ConsentAction, ConsentEvent, Subscriber
from digest.webhooks.events import EventKind

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)

S = Subscriber.__table__  # type: ignore[attr-defined]
C = ConsentEvent.__table__  # type: ignore[attr-defined]
D = Delivery.__table__  # type: ignore[attr-defined]
E = MailEventRecord.__table__  # type: ignore[attr-defined]
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741

WEEKS = 12
ISSUES = 12
LEFT_ACTIONS = {
    ConsentAction.UNSUBSCRIBE.value: "unsubscribed",
    ConsentAction.BOUNCE.value: "bounced",
    ConsentAction.COMPLAINT.value: "bounced",
}
BLUE, GREEN, ORANGE, RED, PURPLE = "#1d4ed8", "#15803d", "#b45309", "#b91c1c", "#7e22ce"


@dataclass(frozen=True)
class Week:
    label: str
    active: int
    joined: int
    unsubscribed: int
    bounced: int


def week_starts(now: datetime, tz: ZoneInfo, weeks: int) -> list[datetime]:
    """The local Mondays 00:00 that begin the last ``weeks`` weeks (the current one
    last), plus the end of the current week."""
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    days = [monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks + 1)]
    return [datetime.combine(d, time(0), tzinfo=tz) for d in days]


def subscribers_by_week(conn: Connection, tz: ZoneInfo, now: datetime, weeks: int) -> list[Week]:
    bounds = week_starts(now, tz, weeks)
    left = (
        select(C.c.subscriber_id, func.min(C.c.created_at).label("at"))
        .where(C.c.action.in_(list(LEFT_ACTIONS)))
        .group_by(C.c.subscriber_id)
        .subquery()
    )
    base = 0
    delta = [0] * weeks
    joined = [0] * weeks
    rows = conn.execution_options(yield_per=2000).execute(
        select(S.c.confirmed_at, left.c.at)
        .select_from(S.outerjoin(left, left.c.subscriber_id == S.c.id))
        .where(S.c.confirmed_at.is_not(None))
    )
    for confirmed, gone in rows:
        i = bisect.bisect_right(bounds, _aware(confirmed)) - 1
        if i >= weeks:
            continue
        if i < 0:
            base += 1
        else:
            delta[i] += 1
            joined[i] += 1
        if gone is not None:
            j = bisect.bisect_right(bounds, _aware(gone)) - 1
            if j < 0:
                base -= 1
            elif j < weeks:
                delta[j] -= 1
    leavers = {"unsubscribed": [0] * weeks, "bounced": [0] * weeks}
    events = conn.execute(
        select(C.c.action, C.c.created_at).where(
            C.c.action.in_(list(LEFT_ACTIONS)), C.c.created_at >= bounds[0]
        )
    )
    for action, at in events:
        j = bisect.bisect_right(bounds, _aware(at)) - 1
        if 0 <= j < weeks:
            leavers[LEFT_ACTIONS[action]][j] += 1
    out = []
    active = base
    for i in range(weeks):
        active += delta[i]
        label = bounds[i].strftime("%b %d").replace(" 0", " ")
        out.append(
            Week(label, active, joined[i], leavers["unsubscribed"][i], leavers["bounced"][i])
        )
    return out


def _aware(moment: datetime) -> datetime:
    # The store keeps UTC; a naive value (SQLite without the column type) is UTC too.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class IssueRates:
    number: int
    week: str
    recipients: int
    delivered: int
    bounced: int
    complained: int

    def pct(self, n: int) -> float:
        return round(100 * n / self.recipients, 1) if self.recipients else 0.0


def issue_rates(conn: Connection, limit: int) -> list[IssueRates]:
    """Recipients, accepted, bounced (refused for good, or a provider bounce) and
    complained deliveries of the newest issues that went out, oldest first."""

    def event(kinds: tuple[str, ...]) -> object:
        return exists().where(
            E.c.issue_id == D.c.issue_id,
            or_(E.c.delivery_id == D.c.id, E.c.subscriber_id == D.c.subscriber_id),
            E.c.kind.in_(kinds),
        )

    bounce = or_(
        D.c.state == "failed",
        event((EventKind.BOUNCED_HARD.value, EventKind.BOUNCED_SOFT.value)),  # type: ignore[arg-type]
    )
    complaint = event((EventKind.COMPLAINED.value,))
    numbers = (
        select(I.c.id)
        .where(I.c.started_at.is_not(None), I.c.state != IssueState.DRAFT.value)
        .order_by(I.c.number.desc())
        .limit(limit)
        .subquery()
    )
    rows = conn.execute(
        select(
            I.c.number,
            I.c.week,
            func.count(D.c.id),
            func.sum(case((D.c.state == "sent", 1), else_=0)),
            func.sum(case((bounce, 1), else_=0)),
            func.sum(case((complaint, 1), else_=0)),  # type: ignore[arg-type]
        )
        .select_from(I.join(D, and_(D.c.issue_id == I.c.id)))
        .where(I.c.id.in_(select(numbers.c.id)))
        .group_by(I.c.number, I.c.week)
        .order_by(I.c.number)
    ).all()
    return [
        IssueRates(int(n), str(w), int(t), int(s or 0), int(b or 0), int(c or 0))
        for n, w, t, s, b, c in rows
    ]


def chart_data(engine: Engine, tz: ZoneInfo) -> tuple[list[Week], list[IssueRates]]:
    with engine.connect() as conn:
        return subscribers_by_week(conn, tz, utcnow(), WEEKS), issue_rates(conn, ISSUES)


@router.get("/charts", response_class=HTMLResponse)
def charts(request: Request, viewer: Editor) -> Response:
    weeks, rates = chart_data(request.app.state.engine, request.app.state.settings.tz)
    labels = [w.label for w in weeks]
    first, last = weeks[0], weeks[-1]
    active = line_chart(
        "active",
        "Active subscribers, week by week",
        f"Active subscribers at the end of each of the last {len(weeks)} weeks: "
        f"{first.active:,} in the week of {first.label}, {last.active:,} now.",
        labels,
        [Series("Active", BLUE, [w.active for w in weeks])],
    )
    flow = bar_chart(
        "flow",
        "Joined and left, week by week",
        f"New, unsubscribed and bounced subscribers per week over the last {len(weeks)} "
        f"weeks: {sum(w.joined for w in weeks):,} joined, "
        f"{sum(w.unsubscribed for w in weeks):,} unsubscribed, "
        f"{sum(w.bounced for w in weeks):,} bounced or complained.",
        labels,
        [
            Series("New", GREEN, [w.joined for w in weeks]),
            Series("Unsubscribed", ORANGE, [w.unsubscribed for w in weeks]),
            Series("Bounced", RED, [w.bounced for w in weeks]),
        ],
    )
    issue_labels = [f"#{r.number}" for r in rates]
    delivered = bar_chart(
        "delivered",
        "Delivered per issue",
        "Share of each issue's recipients whose mail server accepted it.",
        issue_labels,
        [Series("Delivered", GREEN, [r.pct(r.delivered) for r in rates])],
        unit="%",
        top=100,
    )
    trouble = bar_chart(
        "trouble",
        "Bounced and complained per issue",
        "Share of each issue's recipients that bounced (refused, or reported by the "
        "provider) and that marked it as spam.",
        issue_labels,
        [
            Series("Bounced", RED, [r.pct(r.bounced) for r in rates]),
            Series("Complained", PURPLE, [r.pct(r.complained) for r in rates]),
        ],
        unit="%",
    )
    with Session(request.app.state.engine) as session:
        most_read, most_read_chart = reading.most_read_chart(session)
    return render(
        request,
        "charts.html",
        viewer,
        weeks=weeks,
        rates=rates,
        active_chart=active,
        flow_chart=flow,
        delivered_chart=delivered,
        trouble_chart=trouble,
        most_read=most_read,
        most_read_chart=most_read_chart,
        recent_issues=reading.RECENT_ISSUES,
        click_counts=request.app.state.settings.click_counts,
    )
