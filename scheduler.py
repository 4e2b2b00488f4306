"""Run the weekly digest on a schedule: ``.venv/bin/python scheduler.py``.

A thin APScheduler entry point: a cron trigger from ``DIGEST_SEND_CRON`` (default
Monday 09:00) in ``DIGEST_TIMEZONE`` calls :func:`digest.jobs.weekly_job`, the same
function ``digest send`` uses, so a tick that repeats a week sends nobody anything twice.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from digest.config import Settings, get_settings
from digest.exceptions import ConfigError, DigestError
from digest.jobs import weekly_job
from digest.ops.logging_setup import configure_logging

# Named, not __name__: run as a script this module is "__main__", which says nothing in a log.
logger = logging.getLogger("digest.scheduler")

JOB_ID = "weekly-digest"


_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


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


def run_weekly_job(settings: Settings | None = None) -> None:
    """The scheduled call; errors are logged, never allowed to kill the scheduler."""
    try:
        result = weekly_job(settings or get_settings())
    except DigestError as exc:
        logger.error("weekly job failed: %s", exc)
        return
    logger.info(result.summary())


def build_scheduler(settings: Settings) -> BlockingScheduler:
    """A scheduler with the weekly job: coalesced, one instance, with a misfire grace."""
    trigger = cron_trigger(settings)
    scheduler = BlockingScheduler(timezone=settings.tz)
    scheduler.add_job(
        run_weekly_job,
        trigger=trigger,
        args=[settings],
        id=JOB_ID,
        name="weekly digest",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=settings.misfire_grace_seconds,
        replace_existing=True,
    )
    return scheduler


def next_fire_time(settings: Settings, now: datetime | None = None) -> datetime | None:
    """When the weekly job fires next after ``now``."""
    now = now or datetime.now(settings.tz)
    return cron_trigger(settings).get_next_fire_time(None, now)


def main() -> int:
    configure_logging(logging.INFO)  # DIGEST_LOG_FORMAT / DIGEST_LOG_LEVEL
    try:
        settings = get_settings()
        scheduler = build_scheduler(settings)
    except DigestError as exc:
        logger.error("%s", exc)
        return 1
    logger.info(
        "weekly digest scheduled (%s, %s); next run %s",
        settings.send_cron,
        settings.timezone,
        next_fire_time(settings),
    )
    try:
        scheduler.start()  # blocks until SIGINT/SIGTERM
    except (KeyboardInterrupt, SystemExit):
        logger.info("scheduler stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
