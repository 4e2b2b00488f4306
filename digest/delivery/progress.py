"""How far a send is, the same for the console, ``digest status --json`` and ``/metrics``.

Every figure is counted in the store at the moment it is asked for, so all three agree
whoever is sending (this process, ``--workers``, another machine):

- the rows by state from the moment they are queued (the console queues them before
  its send starts: Send shows "N queued" at once, never "0 remaining");
- ``waiting``: held back by a send limit or waiting for the reader's local time;
- ``rate``: messages accepted over the last minute, divided by the part of that minute
  the send was running (since it started or was last resumed): a send 5 s old at 3/s
  shows 3/s, not 5 in 60 s, and a send resumed after a long pause is not averaged
  over its pause;
- ``eta_seconds``: the deliveries that can go now (not those waiting for a later time)
  at that rate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from digest.core.clock import utcnow
from digest.delivery.queue import OPEN_STATES, D, counts
from digest.store.models import DeliveryState, IssueEvent, IssueState

logger = logging.getLogger(__name__)

#: The rate is measured over this many seconds before now (or since the send was last
#: started or resumed, if that is later).
RATE_WINDOW_SECONDS = 60
OPEN = tuple(state.value for state in OPEN_STATES)
E = IssueEvent.__table__  # type: ignore[attr-defined]
#: History entries after which the issue is sending again.
STARTS = ("send", "resumed", "retry-failed")


@dataclass(frozen=True)
class SendProgress:
    counts: dict[str, int]
    total: int
    remaining: int
    rate: float | None
    eta_seconds: float | None

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "counts": self.counts,
            "remaining": self.remaining,
            "rate": self.rate,
            "eta_seconds": self.eta_seconds,
        }


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def running_since(conn: Connection, issue_id: int, started_at: datetime | None) -> datetime | None:
    """When the send last started or resumed (the issue's history), else ``started_at``."""
    last = conn.execute(
        select(func.max(E.c.at)).where(E.c.issue_id == issue_id, E.c.action.in_(STARTS))
    ).scalar()
    moments = [m for m in (_aware(last), _aware(started_at)) if m is not None]
    return max(moments) if moments else None


def send_rate(conn: Connection, issue_id: int, since: datetime | None, now: datetime) -> float:
    """Messages per second accepted for ``issue_id`` over the last minute, or over the
    part of it since ``since``."""
    start = now - timedelta(seconds=RATE_WINDOW_SECONDS)
    if since is not None:
        start = max(start, since)
    window = (now - start).total_seconds()
    if window <= 0:
        return 0.0
    sent = conn.execute(
        select(func.count()).where(
            D.c.issue_id == issue_id,
            D.c.state == DeliveryState.SENT.value,
            D.c.sent_at >= start,
        )
    ).scalar_one()
    return float(sent) / window


def send_progress(
    conn: Connection,
    issue_id: int,
    state: str,
    started_at: datetime | None,
    now: datetime | None = None,
) -> SendProgress:
    """The figures of issue ``issue_id`` (in ``state``) now; rate and ETA only while it
    is sending."""
    now = now or utcnow()
    by_state = counts(conn, issue_id)
    remaining = sum(by_state.get(s, 0) for s in OPEN)
    later = conn.execute(
        select(func.count()).where(
            D.c.issue_id == issue_id,
            D.c.state.in_([DeliveryState.WAITING.value, DeliveryState.RETRY.value]),
            D.c.next_attempt_at > now,
        )
    ).scalar_one()
    rate: float | None = None
    eta: float | None = None
    if state == IssueState.SENDING:
        since = running_since(conn, issue_id, started_at)
        exact = send_rate(conn, issue_id, since, now)
        rate = round(exact, 2)
        due = remaining - int(later)
        eta = round(due / exact, 1) if exact > 0 else None
    return SendProgress(
        counts=by_state,
        total=sum(by_state.values()),
        remaining=remaining,
        rate=rate,
        eta_seconds=eta,
    )
