"""Run the weekly digest on a schedule: ``python scheduler.py`` (or ``make schedule``).

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
from digest.exceptions import DigestError
from digest.jobs import weekly_job

logger = logging.getLogger("digest.scheduler")

JOB_ID = "weekly-digest"


def run_weekly_job() -> None:
    """The scheduled call; errors are logged, never allowed to kill the scheduler."""
    try:
        result = weekly_job(get_settings())
    except DigestError as exc:
        logger.error("weekly job failed: %s", exc)
        return
    logger.info(result.summary())


def build_scheduler(settings: Settings) -> BlockingScheduler:
    """A scheduler with the weekly job: coalesced, one instance, with a misfire grace."""
    scheduler = BlockingScheduler(timezone=settings.tz)
    try:
        trigger = CronTrigger.from_crontab(settings.send_cron, timezone=settings.tz)
    except ValueError as exc:
        raise DigestError(f"DIGEST_SEND_CRON {settings.send_cron!r} is not a cron line: {exc}") from exc
    scheduler.add_job(
        run_weekly_job,
        trigger=trigger,
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
    trigger = CronTrigger.from_crontab(settings.send_cron, timezone=settings.tz)
    now = now or datetime.now(settings.tz)
    return trigger.get_next_fire_time(None, now)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
