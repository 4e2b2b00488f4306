"""Run the weekly digest on a schedule: ``.venv/bin/python scheduler.py``.

A thin APScheduler entry point with two jobs:

- a cron trigger from ``DIGEST_SEND_CRON`` (default Monday 09:00) in
  ``DIGEST_TIMEZONE`` calls :func:`digest.jobs.weekly.weekly_job` (``scheduled=True``), the
  same function ``digest send`` uses, so a repeated tick sends nobody anything twice;
- every minute :func:`digest.jobs.schedule.scheduler_tick` opens the review window
  (``DIGEST_REVIEW_HOURS`` before a slot) and sends a draft that was approved or
  released after its slot;
- with ``DIGEST_BOUNCE_MAILBOX`` set, every ``DIGEST_BOUNCE_MAILBOX_INTERVAL`` seconds
  :func:`digest.webhooks.mailbox.poll_once` reads the bounce mailbox (the same pass as
  ``digest mailbox``).
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from digest.core.settings import Settings, get_settings
from digest.exceptions import DigestError
from digest.jobs.schedule import RUN_LOCK, cron_trigger, next_send, scheduler_tick
from digest.jobs.weekly import open_store, weekly_job
from digest.ops.logging_setup import configure_logging
from digest.store.outage import describe, ride_out

# Named, not __name__: run as a script this module is "__main__", which says nothing in a log.
logger = logging.getLogger("digest.scheduler")

JOB_ID = "weekly-digest"
TICK_ID = "review-tick"
TICK_SECONDS = 60
MAILBOX_ID = "bounce-mailbox"

__all__ = [
    "build_scheduler",
    "cron_trigger",
    "next_fire_time",
    "run_mailbox_poll",
    "run_tick",
    "run_weekly_job",
]


def run_weekly_job(settings: Settings | None = None) -> None:
    """The scheduled send; errors are logged in one line, never allowed to kill the
    scheduler. A database that is away when the job fires (a restart, a failover) is
    waited for, up to DIGEST_DB_OUTAGE_GRACE_SECONDS: the job is safe to run again."""
    settings = settings or get_settings()
    with RUN_LOCK:
        try:
            result = ride_out(
                lambda: weekly_job(settings, scheduled=True, actor="scheduler"),
                settings.db_outage_grace_seconds,
                "weekly job",
            )
        except DigestError as exc:
            logger.error("weekly job failed: %s", exc)
            return
        except SQLAlchemyError as exc:
            logger.error("weekly job failed: database error: %s", describe(exc))
            return
    logger.info(result.summary())


_last_tick: list[str | None] = [None]


def run_tick(settings: Settings | None = None) -> None:
    """The minute's look at the schedule; skipped while the send job runs."""
    if not RUN_LOCK.acquire(blocking=False):
        return
    try:
        settings = settings or get_settings()
        said = scheduler_tick(settings, engine=open_store(settings))
    except DigestError as exc:
        said = f"scheduler tick failed: {exc}"
        logger.error("%s", said)
    except SQLAlchemyError as exc:
        # The database went away mid-tick: the next tick looks again (no traceback).
        said = f"scheduler tick failed: database error: {describe(exc)}"
        logger.error("%s", said)
    finally:
        RUN_LOCK.release()
    # A draft waiting for approval is looked at every minute: say so once.
    if said and said != _last_tick[0]:
        logger.info("%s", said)
    _last_tick[0] = said


def run_mailbox_poll(settings: Settings | None = None) -> None:
    """One pass over the bounce mailbox; errors are logged, the next poll tries again."""
    from digest.webhooks.mailbox import poll_once
    from digest.webhooks.replies import smtp_forwarder

    settings = settings or get_settings()
    try:
        report = poll_once(open_store(settings), settings, smtp_forwarder(settings))
    except DigestError as exc:
        logger.error("bounce mailbox poll failed: %s", exc)
        return
    logger.info(report.summary())


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
    scheduler.add_job(
        run_tick,
        trigger=IntervalTrigger(seconds=TICK_SECONDS, timezone=settings.tz),
        args=[settings],
        id=TICK_ID,
        name="review window and late approvals",
        coalesce=True,
        max_instances=1,
        replace_existing=True,
    )
    if settings.bounce_mailbox:
        scheduler.add_job(
            run_mailbox_poll,
            trigger=IntervalTrigger(seconds=settings.bounce_mailbox_interval, timezone=settings.tz),
            args=[settings],
            id=MAILBOX_ID,
            name="bounce mailbox",
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
    return scheduler


def next_fire_time(settings: Settings, now: datetime | None = None) -> datetime | None:
    """When the weekly job fires next after ``now``."""
    return next_send(settings, now)


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
