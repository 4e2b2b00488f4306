"""UTC timestamps that survive every database, and ISO-week arithmetic."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator

_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns them aware.

    SQLite has no time zone type and returns naive values; PostgreSQL converts to the
    session zone. Normalising here keeps comparisons honest on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def parse_week(week: str) -> tuple[int, int]:
    """``"2026-W47"`` → ``(2026, 47)``; raises ValueError on anything else."""
    match = _WEEK_RE.match(week.strip())
    if not match:
        raise ValueError(f"week must look like 2026-W47, got {week!r}")
    year, num = int(match.group(1)), int(match.group(2))
    date.fromisocalendar(year, num, 1)  # validates W53 in short years
    return year, num


def week_of(moment: datetime, tz: ZoneInfo) -> str:
    """The ISO week label of ``moment`` as seen in ``tz``."""
    year, num, _ = moment.astimezone(tz).isocalendar()
    return f"{year}-W{num:02d}"


def week_cutoff(week: str, tz: ZoneInfo, send_time: time = time(0, 0)) -> datetime:
    """The issue's cutoff: Monday of ``week`` at ``send_time`` local time, in UTC.

    The issue for a week features what was published in the seven days before it.
    """
    year, num = parse_week(week)
    monday = date.fromisocalendar(year, num, 1)
    return datetime.combine(monday, send_time, tzinfo=tz).astimezone(UTC)


def week_bounds(week: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[Monday 00:00, next Monday 00:00)`` of ``week`` in ``tz``, as UTC instants."""
    start = week_cutoff(week, tz)
    end = datetime.combine(start.astimezone(tz).date() + timedelta(days=7), time(0), tzinfo=tz)
    return start, end.astimezone(UTC)


def local_text(moment: datetime, tz: ZoneInfo) -> str:
    """``2026-11-16 09:00 Europe/Berlin``: an instant as people in ``tz`` read it."""
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M} {tz.key}"


def window(week: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC of the seven local days before ``week`` begins (the demo
    and the tests date sample comparisons into it: the week before an issue's)."""
    end = week_cutoff(week, tz)
    start = datetime.combine(end.astimezone(tz).date() - timedelta(days=7), time(0), tzinfo=tz)
    return start.astimezone(UTC), end
