"""Delivery at each reader's own breakfast time: ``DIGEST_SEND_LOCAL_TIME=09:00``.

When an issue starts, every reader's row waits (``waiting``) until the first 09:00 in
the reader's time zone (``subscriber.timezone``, else ``DIGEST_TIMEZONE``) at or after
the start: one wave per time zone, planned with one INSERT … SELECT per zone. The send
loop (or any worker, or the scheduler's minute) sends each wave when it is due, so a
crash loses nothing and a restart resumes; pause holds the waves still to come and
cancel skips them. Start the issue early enough for the easternmost readers — e.g.
``DIGEST_SEND_CRON="0 19 * * sun"`` in UTC reaches Auckland at 09:00 on Monday.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from digest.core.settings import Settings, parse_local_time
from digest.delivery.queue import Audience
from digest.store.models import Delivery, DeliveryState
from digest.store.subscriber_models import Subscriber, SubscriberStatus

logger = logging.getLogger(__name__)

S = Subscriber.__table__  # type: ignore[attr-defined]


def wave_time(start: datetime, zone: ZoneInfo, at: time) -> datetime:
    """The first moment at or after ``start`` when clocks in ``zone`` show ``at``."""
    local = start.astimezone(zone)
    day = local.date()
    for _ in range(3):
        candidate = datetime.combine(day, at, tzinfo=zone)
        # A time skipped by a DST jump: zoneinfo gives the moment an hour later.
        if candidate.astimezone(UTC) >= start.astimezone(UTC):
            return candidate.astimezone(UTC)
        day += timedelta(days=1)
    raise AssertionError("unreachable: a later day always has the time")


def zones(conn: Connection) -> list[str | None]:
    """The time zones active readers set (None: those who set none)."""
    rows = conn.execute(
        select(S.c.timezone).where(S.c.status == SubscriberStatus.ACTIVE.value).distinct()
    ).scalars()
    return sorted(set(rows), key=lambda z: z or "")


def in_waves(
    audience: list[Audience], settings: Settings, start: datetime, conn: Connection
) -> list[Audience]:
    """``audience`` split by reader time zone, each part waiting for its local time;
    unchanged without ``DIGEST_SEND_LOCAL_TIME``."""
    if not settings.send_local_time:
        return audience
    at = parse_local_time(settings.send_local_time)
    found = zones(conn)
    out: list[Audience] = []
    for part in audience:
        if part.state is DeliveryState.SKIPPED:
            out.append(part)
            continue
        for zone in found:
            tz = ZoneInfo(zone) if zone else settings.tz
            condition = S.c.timezone.is_(None) if zone is None else S.c.timezone == zone
            wave = wave_time(start, tz, at)
            out.append(
                replace(
                    part,
                    where=(*part.where, condition),
                    state=DeliveryState.WAITING,
                    next_attempt_at=wave,
                    wave_at=wave,
                    note=f"waiting for {settings.send_local_time} in {tz.key}",
                )
            )
    return out


def waves(conn: Connection, issue_id: int) -> list[dict[str, Any]]:
    """An issue's local-time waves: when each is due, the readers' time zones in it
    (None: the default zone) and its deliveries by state."""
    D = Delivery.__table__  # type: ignore[attr-defined]
    rows = conn.execute(
        select(D.c.wave_at, S.c.timezone, D.c.state, func.count())
        .select_from(D.join(S, S.c.id == D.c.subscriber_id))
        .where(D.c.issue_id == issue_id, D.c.wave_at.is_not(None))
        .group_by(D.c.wave_at, S.c.timezone, D.c.state)
        .order_by(D.c.wave_at)
    ).all()
    out: dict[datetime, dict[str, int]] = {}
    tzs: dict[datetime, set[str | None]] = {}
    for at, zone, state, n in rows:
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        counts = out.setdefault(at, {})
        counts[state] = counts.get(state, 0) + int(n)
        tzs.setdefault(at, set()).add(zone)
    return [
        {
            "at": at.isoformat(),
            "zones": sorted(tzs[at], key=lambda z: z or ""),
            "counts": counts,
        }
        for at, counts in out.items()
    ]
